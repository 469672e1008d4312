"""Invariants of the batched pretext transforms and orientation augmentation."""

import numpy as np
import pytest
import torch
from scipy.integrate import cumulative_trapezoid
from scipy.interpolate import CubicSpline

from wearssl.pretrain import transforms
from wearssl.pretrain.transforms import (
    MIN_FACTOR,
    MIN_SEGMENT,
    N_SEGMENTS,
    PAPER_TASKS,
    PRETEXT_TASKS,
    augment,
    draw_labels,
    draw_segment_lengths,
    draw_segment_orders,
    natural_cubic_spline,
    permute_segments,
    pretext_step,
    random_rotations,
    reverse_time,
    rotate,
    scale,
    segment_permutation_index,
    swap_axes,
    time_warp,
)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def signal(batch: int = 64, length: int = 300, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, length, generator=generator(seed))


def random_mask(batch: int, seed: int = 2) -> torch.Tensor:
    return torch.rand(batch, generator=generator(seed)) < 0.5


def time_index_signal(batch: int, length: int) -> torch.Tensor:
    """Channel c of every window holds ``1000 * c + t``: every sample names its origin."""
    time = torch.arange(length, dtype=torch.float32)
    return (time + 1000 * torch.arange(3.0)[:, None]).expand(batch, 3, length).clone()


def consecutive_runs(values: np.ndarray) -> list[int]:
    """Lengths of the maximal runs of consecutive integers in ``values``."""
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    return np.diff(np.concatenate(([0], breaks, [len(values)]))).tolist()


def test_reversing_twice_is_identity_and_only_touches_masked_windows():
    x, mask = signal(), random_mask(64)
    once = reverse_time(x, mask)
    assert torch.equal(once[mask], x[mask].flip(-1))
    assert torch.equal(once[~mask], x[~mask])
    assert torch.equal(reverse_time(once, mask), x)


def test_segment_permutation_index_known_answer():
    lengths = torch.tensor([[1, 2, 3], [3, 2, 1]])
    order = torch.tensor([[2, 0, 1], [1, 2, 0]])
    expected = torch.tensor([[3, 4, 5, 0, 1, 2], [3, 4, 5, 0, 1, 2]])
    assert torch.equal(segment_permutation_index(lengths, order, 6), expected)


@pytest.mark.parametrize("length", [40, 150, 300, 900])
def test_segment_lengths_cover_the_window_and_respect_the_minimum(length):
    lengths = draw_segment_lengths(5000, length, generator())
    assert lengths.shape == (5000, N_SEGMENTS)
    assert (lengths >= MIN_SEGMENT).all()
    assert (lengths.sum(1) == length).all()


def test_segment_lengths_reject_a_window_too_short():
    with pytest.raises(ValueError, match="39 samples"):
        draw_segment_lengths(4, 39, generator())


def test_segment_orders_are_never_the_identity_and_cover_all_others():
    orders = draw_segment_orders(20_000, N_SEGMENTS, generator())
    assert not (orders == torch.arange(N_SEGMENTS)).all(1).any()
    assert len(torch.unique(orders, dim=0)) == 23


@pytest.mark.parametrize("length", [150, 300, 900])
def test_permuted_windows_are_reordered_runs_of_at_least_min_segment(length):
    x = time_index_signal(200, length)
    mask = torch.ones(200, dtype=torch.bool)
    out = permute_segments(x, mask, generator()).numpy()
    for window in out:
        assert np.array_equal(np.sort(window, axis=1), x[0].numpy())
        assert (window - window[0] == 1000 * np.arange(3)[:, None]).all()
        runs = consecutive_runs(window[0])
        assert 2 <= len(runs) <= N_SEGMENTS
        assert min(runs) >= MIN_SEGMENT


def test_permutation_leaves_unselected_windows_alone():
    x, mask = signal(), random_mask(64)
    out = permute_segments(x, mask, generator())
    assert torch.equal(out[~mask], x[~mask])
    assert not torch.equal(out[mask], x[mask])


def test_natural_cubic_spline_matches_scipy():
    knots = torch.tensor([0.0, 1.0, 2.5, 3.0, 5.0, 7.0])
    values = torch.randn(10, 6, generator=generator(), dtype=torch.float64)
    query = torch.linspace(0, 7, 101)
    ours = natural_cubic_spline(values, knots.double(), query.double())
    scipy = np.stack(
        [CubicSpline(knots.numpy(), row, bc_type="natural")(query.numpy()) for row in values]
    )
    np.testing.assert_allclose(ours.numpy(), scipy, atol=1e-12)


@pytest.mark.parametrize("length", [150, 300, 900])
def test_time_warp_keeps_length_and_endpoints_and_changes_the_interior(length):
    x = signal(length=length)
    mask = torch.ones(64, dtype=torch.bool)
    out = time_warp(x, mask, generator())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[..., 0], x[..., 0])
    assert torch.equal(out[..., -1], x[..., -1])
    assert ((out - x).abs().amax(dim=(1, 2)) > 1e-3).all()


def test_time_warp_with_zero_sigma_is_the_identity():
    x = signal()
    out = time_warp(x, torch.ones(64, dtype=torch.bool), generator(), sigma=0.0)
    assert torch.equal(out, x)


def test_time_warp_of_a_ramp_is_increasing_from_start_to_end():
    length = 300
    ramp = torch.arange(length, dtype=torch.float32).expand(2000, 3, length).clone()
    out = time_warp(ramp, torch.ones(2000, dtype=torch.bool), generator(), sigma=0.5)
    assert (out.diff(dim=-1) > 0).all()
    assert (out[..., 0] == 0).all() and (out[..., -1] == length - 1).all()


def test_time_warp_follows_the_spline_speed_recipe():
    """A ramp's warp is the warped time itself; rebuild it with scipy from the same
    knot speeds (interior ~ N(1, 0.2) from one draw, endpoints 1)."""
    batch, length = 50, 300
    ramp = torch.arange(length, dtype=torch.float32).expand(batch, 3, length).clone()
    out = time_warp(ramp, torch.ones(batch, dtype=torch.bool), generator(4))[:, 0].numpy()
    interior = 1 + 0.2 * torch.randn(batch, 4, generator=generator(4), dtype=torch.float32)
    knots, times = np.linspace(0, length - 1, 6), np.arange(length)
    for warped, speeds in zip(out, interior.double().numpy(), strict=True):
        spline = CubicSpline(knots, np.concatenate(([1.0], speeds, [1.0])), bc_type="natural")
        elapsed = cumulative_trapezoid(np.maximum(spline(times), MIN_FACTOR), initial=0.0)
        np.testing.assert_allclose(warped, elapsed * (length - 1) / elapsed[-1], atol=1e-3)


def test_time_warp_leaves_unselected_windows_alone():
    x, mask = signal(), random_mask(64)
    out = time_warp(x, mask, generator())
    assert torch.equal(out[~mask], x[~mask])


def test_scale_multiplies_each_selected_window_by_one_factor():
    x, mask = signal(), random_mask(64)
    out = scale(x, mask, generator())
    assert torch.equal(out[~mask], x[~mask])
    ratio = out[mask] / x[mask]
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio))
    assert (ratio[:, 0, 0] > 0).all() and (ratio[:, 0, 0] != 1).all()


def test_rotation_matrices_are_proper_rotations():
    rotations = random_rotations(1000, generator())
    identity = torch.eye(3).expand(1000, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(1, 2), identity, atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(1000), atol=1e-5, rtol=0)


def test_rotate_applies_a_rotation_to_every_sample():
    basis = torch.eye(3).expand(500, 3, 3).clone()
    implied = rotate(basis, generator())
    assert torch.allclose(torch.linalg.det(implied), torch.ones(500), atol=1e-5, rtol=0)
    x = signal()
    out = rotate(x, generator())
    assert torch.allclose(out.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, x)


def test_swap_axes_permutes_each_windows_channels_using_all_six_orders():
    x = signal(batch=600)
    out = swap_axes(x, generator())
    matches = (out[:, :, None, :] == x[:, None, :, :]).all(-1)
    assert (matches.sum(2) == 1).all() and (matches.sum(1) == 1).all()
    orders = matches.float().argmax(2)
    assert len(torch.unique(orders, dim=0)) == 6


def test_augment_keeps_every_samples_magnitude():
    x = signal()
    out = augment(x, generator())
    assert torch.allclose(out.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)


def test_labels_are_fair_coins_and_independent():
    _, labels = pretext_step(signal(batch=20_000, length=40), generator(), tasks=PRETEXT_TASKS)
    assert set(labels) == set(PRETEXT_TASKS)
    for task, label in labels.items():
        assert label.dtype == torch.int64 and label.shape == (20_000,)
        assert abs(label.float().mean().item() - 0.5) < 0.02, task
    for first in PRETEXT_TASKS:
        for second in PRETEXT_TASKS:
            if first < second:
                joint = (labels[first] & labels[second]).float().mean().item()
                assert abs(joint - 0.25) < 0.02, (first, second)


@pytest.mark.parametrize(
    "tasks", [PAPER_TASKS, PRETEXT_TASKS, ("aot",), ("permute",), ("time_warp",), ()]
)
@pytest.mark.parametrize("augment_orientation", [True, False])
def test_pretext_step_equals_the_transforms_applied_in_turn(
    tasks, augment_orientation, monkeypatch
):
    monkeypatch.setattr(transforms, "CPU_BLOCK_SAMPLES", 128 * 300)
    x = signal(batch=300)
    out, labels = pretext_step(x, generator(5), tasks, augment_orientation)
    replay = generator(5)
    masks = {task: label.bool() for task, label in draw_labels(300, replay, tasks).items()}
    expected = x
    if "aot" in masks:
        expected = reverse_time(expected, masks["aot"])
    if "permute" in masks:
        expected = permute_segments(expected, masks["permute"], replay)
    if "time_warp" in masks:
        expected = time_warp(expected, masks["time_warp"], replay)
    if "scale" in masks:
        expected = scale(expected, masks["scale"], replay)
    if augment_orientation:
        expected = augment(expected, replay)
    assert all(torch.equal(labels[task], masks[task].long()) for task in tasks)
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_pretext_step_only_transforms_labelled_windows():
    x = signal(batch=500)
    out, labels = pretext_step(x, generator(), augment_orientation=False)
    untouched = sum(labels.values()) == 0
    assert untouched.any()
    assert torch.equal(out[untouched], x[untouched])
    assert ((out - x).abs().amax(dim=(1, 2))[~untouched] > 0).all()


def test_pretext_step_is_reproducible_per_seed_and_keeps_its_input():
    x = signal()
    before = x.clone()
    first, first_labels = pretext_step(x, generator(7))
    again, again_labels = pretext_step(x, generator(7))
    other, _ = pretext_step(x, generator(8))
    assert torch.equal(x, before)
    assert torch.equal(first, again)
    assert all(torch.equal(first_labels[t], again_labels[t]) for t in PAPER_TASKS)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pretext_step_returns_half_precision_close_to_float32(dtype):
    x = signal().to(dtype)
    out, labels = pretext_step(x, generator(3))
    reference, reference_labels = pretext_step(x.float(), generator(3))
    assert out.dtype == dtype
    assert all(torch.equal(labels[t], reference_labels[t]) for t in PAPER_TASKS)
    assert torch.allclose(out.float(), reference, atol=0.05, rtol=0.02)


def test_pretext_step_rejects_unknown_tasks_and_bad_inputs():
    x = signal(batch=4)
    with pytest.raises(ValueError, match="'flip'"):
        pretext_step(x, generator(), tasks=("aot", "flip"))
    with pytest.raises(ValueError, match="p must be"):
        pretext_step(x, generator(), p=1.5)
    with pytest.raises(ValueError, match="3 channels"):
        pretext_step(torch.randn(4, 2, 300), generator())
    with pytest.raises(ValueError, match="floating"):
        pretext_step(torch.zeros(4, 3, 300, dtype=torch.int64), generator())
    with pytest.raises(ValueError, match="mask"):
        reverse_time(x, torch.ones(4))
    with pytest.raises(ValueError, match="generator must be"):
        pretext_step(x, 0)


@pytest.mark.parametrize(("batch", "length"), [(6000, 300), (1000, 150), (1000, 900)])
def test_full_chain_on_paper_sized_batches(batch, length):
    x = signal(batch=batch, length=length)
    out, labels = pretext_step(x, generator())
    assert out.shape == (batch, 3, length) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert set(labels) == set(PAPER_TASKS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pretext_step_on_cuda_matches_the_transforms_applied_in_turn():
    x = signal(batch=1000).cuda()
    out, labels = pretext_step(x, torch.Generator(device="cuda").manual_seed(1))
    replay = torch.Generator(device="cuda").manual_seed(1)
    masks = {task: label.bool() for task, label in draw_labels(1000, replay).items()}
    expected = reverse_time(x, masks["aot"])
    expected = permute_segments(expected, masks["permute"], replay)
    expected = augment(time_warp(expected, masks["time_warp"], replay), replay)
    assert out.is_cuda and all(label.is_cuda for label in labels.values())
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5)
