"""harnet: published layout, numeric compatibility with the published weights, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wearssl.config.vocabulary import WINDOW_LENGTHS
from wearssl.data.corpus import window_samples
from wearssl.models.harnet import (
    TASK_HEADS,
    CheckpointError,
    feature_extractor_state,
    harnet,
    load_checkpoint,
    save_checkpoint,
)

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "harnet"
FIXTURE_LOGITS = {
    "aot": "aot_logits",
    "scale": "scale_logits",
    "permute": "permute_logits",
    "time_warp": "time_warp_logits",
}
WINDOWS = list(WINDOW_LENGTHS)
TOLERANCE = 1e-4


def _reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"harnet reference fixture {path} is absent")
    return path


def _layout(window_seconds: int) -> list[tuple[str, list[int], str]]:
    path = _reference_file(f"harnet{window_seconds}_layout.json")
    return [tuple(entry) for entry in json.loads(path.read_text())["state_dict_order"]]


def _expected(window_seconds: int) -> dict[str, np.ndarray]:
    with np.load(_reference_file(f"harnet{window_seconds}_expected.npz")) as arrays:
        return dict(arrays)


def _fixture_weights(window_seconds: int) -> dict[str, torch.Tensor]:
    """The fixture's weights, rebuilt by the README's rule from the layout alone; the
    counters and downsample filters keep a fresh model's own values."""
    layout = _layout(window_seconds)
    own = harnet(window_seconds).state_dict()
    keys = {key for key, _, _ in layout}
    state: dict[str, torch.Tensor] = {}
    for j, (key, shape, _) in enumerate(layout):
        module, leaf = key.rsplit(".", 1)
        if leaf in ("num_batches_tracked", "kernel"):
            state[key] = own[key].clone()
            continue
        s = np.sin(0.37 * np.arange(math.prod(shape), dtype=np.float64) + 1.3 * j)
        is_batchnorm = f"{module}.running_mean" in keys
        if is_batchnorm:
            values = {
                "weight": 1 + 0.1 * s,
                "bias": 0.1 * s,
                "running_mean": 0.1 * s,
                "running_var": 1 + 0.25 * (1 + s),
            }[leaf]
        elif leaf == "weight":
            values = s * math.sqrt(2 / math.prod(shape[1:]))
        elif leaf == "bias":
            values = 0.01 * s
        else:
            raise AssertionError(f"unexpected layout key {key}")
        state[key] = torch.from_numpy(values.astype(np.float32).reshape(shape))
    return state


def _published_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Save ``state`` the way the published files are: keys under DistributedDataParallel."""
    torch.save({f"module.{key}": value for key, value in state.items()}, path)
    return path


def _relative_error(out: torch.Tensor, ref: np.ndarray) -> float:
    ref_tensor = torch.from_numpy(ref).to(torch.float64)
    return float(torch.linalg.norm(out.double() - ref_tensor) / torch.linalg.norm(ref_tensor))


@pytest.mark.parametrize("window_seconds", WINDOWS)
def test_state_dict_matches_published_layout(window_seconds: int) -> None:
    state = harnet(window_seconds).state_dict()
    layout = _layout(window_seconds)
    assert list(state) == [key for key, _, _ in layout]
    for key, shape, dtype in layout:
        assert list(state[key].shape) == shape, key
        assert state[key].dtype == getattr(torch, dtype), key


@pytest.mark.parametrize("window_seconds", WINDOWS)
def test_published_weights_reproduce_reference_numbers(window_seconds: int, tmp_path: Path) -> None:
    expected = _expected(window_seconds)
    state = _fixture_weights(window_seconds)
    path = _published_file(tmp_path / f"harnet{window_seconds}.mdl", state)
    x = torch.from_numpy(expected["x"]).float()

    model = harnet(window_seconds, pretrained=path).eval()
    with torch.no_grad():
        features = model.features(x)
    assert features.shape == (x.shape[0], model.feature_size)
    assert _relative_error(features, expected["features"]) < TOLERANCE

    model.load_state_dict(
        {key.removeprefix("module."): v for key, v in torch.load(path, weights_only=True).items()}
    )
    with torch.no_grad():
        logits = model(x)
    assert set(logits) == set(TASK_HEADS)
    for task, name in FIXTURE_LOGITS.items():
        assert _relative_error(logits[task], expected[name]) < TOLERANCE, task


def test_harnet10_feature_extractor_has_published_parameter_count() -> None:
    model = harnet(10)
    assert sum(p.numel() for p in model.feature_extractor.parameters()) == 10_457_408
    assert model.feature_size == 1024 and model.window_seconds == 10 and model.n_classes is None


def test_downsample_filter_is_a_normalised_box_convolution() -> None:
    state10 = harnet(10).state_dict()
    pair_smoothed_twice = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    triple_smoothed_once = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0]) / 9
    assert torch.allclose(state10["feature_extractor.layer1.5.kernel"][0, 0], pair_smoothed_twice)
    assert torch.allclose(state10["feature_extractor.layer5.3.kernel"][9, 0], triple_smoothed_once)
    plain_box = harnet(30).state_dict()["feature_extractor.layer5.3.kernel"]
    assert torch.equal(plain_box, torch.full((1024, 1, 4), 0.25))


@pytest.mark.parametrize("window_seconds", WINDOWS)
def test_wrong_window_length_is_rejected(window_seconds: int) -> None:
    model = harnet(window_seconds)
    other = window_samples(10 if window_seconds != 10 else 5)
    with pytest.raises(
        ValueError, match=rf"{window_samples(window_seconds)}.*got \(2, 3, {other}\)"
    ):
        model(torch.zeros(2, 3, other))


def test_published_10s_file_into_5s_model_names_the_window(tmp_path: Path) -> None:
    path = _published_file(tmp_path / "harnet10.mdl", harnet(10).state_dict())
    with pytest.raises(CheckpointError, match="10-s model") as error:
        harnet(5, pretrained=path)
    assert str(path) in str(error.value) and "shape" in str(error.value)


@pytest.mark.parametrize("content", [[torch.zeros(3)], {"weights": [1.0, 2.0]}, "not a model"])
def test_file_that_is_not_a_state_dict_is_rejected(content: object, tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="not a state dict") as error:
        harnet(10, pretrained=path)
    assert str(path) in str(error.value)


def test_file_that_is_not_a_torch_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("harnet10 weights go here\n")
    with pytest.raises(CheckpointError, match="cannot be read") as error:
        harnet(10, pretrained=path)
    assert str(path) in str(error.value)


def test_state_dict_missing_keys_names_them(tmp_path: Path) -> None:
    state = harnet(10).state_dict()
    del state["feature_extractor.layer3.2.conv1.weight"]
    del state["feature_extractor.layer5.1.running_var"]
    path = _published_file(tmp_path / "partial.mdl", state)
    with pytest.raises(CheckpointError, match="missing") as error:
        harnet(10, pretrained=path)
    message = str(error.value)
    assert str(path) in message
    assert "feature_extractor.layer3.2.conv1.weight" in message
    assert "feature_extractor.layer5.1.running_var" in message


def test_shape_mismatch_names_key_and_both_shapes(tmp_path: Path) -> None:
    state = harnet(10).state_dict()
    state["feature_extractor.layer2.1.conv2.weight"] = torch.zeros(128, 128, 3)
    path = _published_file(tmp_path / "odd_kernel.mdl", state)
    with pytest.raises(CheckpointError, match="layer2.1.conv2.weight") as error:
        harnet(10, pretrained=path)
    assert "(128, 128, 3)" in str(error.value) and "(128, 128, 5)" in str(error.value)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "harnet10.mdl"
    with pytest.raises(CheckpointError, match="no such checkpoint file") as error:
        harnet(10, pretrained=path)
    assert str(path) in str(error.value)


def _trained_like(model: torch.nn.Module, window_seconds: int) -> torch.nn.Module:
    """Move BatchNorm statistics off their defaults so that a lost buffer shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.train()(torch.randn(8, 3, window_samples(window_seconds), generator=generator))
    return model.eval()


def test_own_checkpoint_round_trip(tmp_path: Path) -> None:
    labels = ["sleep", "sedentary", "light", "mvpa"]
    model = _trained_like(harnet(10, n_classes=len(labels)), 10)
    path = tmp_path / "run" / "classifier.pt"
    save_checkpoint(path, model, window_seconds=10, labels=labels, extra={"epoch": 3})

    content = load_checkpoint(path)
    assert content["window_seconds"] == 10 and content["n_classes"] == len(labels)
    assert content["labels"] == labels and content["epoch"] == 3

    x = torch.randn(5, 3, 300, generator=torch.Generator().manual_seed(1))
    restored = harnet(10, n_classes=len(labels), pretrained=path).eval()
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))

    self_supervised = harnet(10, pretrained=path).eval()
    assert self_supervised.state_dict().keys() >= feature_extractor_state(model.state_dict()).keys()
    with torch.no_grad():
        assert torch.equal(self_supervised.features(x), model.features(x))


def test_own_checkpoint_of_another_window_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ssl30.pt"
    save_checkpoint(path, harnet(30), window_seconds=30)
    with pytest.raises(CheckpointError, match="30-s model") as error:
        harnet(10, pretrained=path)
    assert str(path) in str(error.value)


def test_load_checkpoint_rejects_a_published_file(tmp_path: Path) -> None:
    path = _published_file(tmp_path / "harnet5.mdl", harnet(5).state_dict())
    with pytest.raises(CheckpointError, match="not a wearssl-checkpoint"):
        load_checkpoint(path)


def test_published_file_with_a_classifier_loads_the_feature_extractor_only(
    tmp_path: Path,
) -> None:
    source = _trained_like(harnet(5, n_classes=7), 5)
    path = _published_file(tmp_path / "harnet5_finetuned.mdl", source.state_dict())

    model = harnet(5, n_classes=3, pretrained=path).eval()
    x = torch.randn(4, 3, 150, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model.features(x), source.features(x))
        assert model(x).shape == (4, 3)


def test_feature_extractor_state_strips_ddp_prefix_and_drops_heads() -> None:
    state = {f"module.{key}": value for key, value in harnet(5).state_dict().items()}
    kept = feature_extractor_state(state)
    expected = {f"feature_extractor.{key}" for key in harnet(5).feature_extractor.state_dict()}
    assert set(kept) == expected
    assert all(kept[key] is state[f"module.{key}"] for key in kept)


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"started": object()}, r"extra\['started'\]"), ({"labels": ["a"]}, "reserved")],
)
def test_save_checkpoint_rejects_extra_that_would_not_load(
    extra: dict, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.pt"
    with pytest.raises(ValueError, match=message):
        save_checkpoint(path, harnet(5), window_seconds=5, extra=extra)
    assert not path.exists()


@pytest.mark.parametrize("n_classes", [None, 5])
def test_fresh_heads_start_near_uniform_probabilities(n_classes: int | None) -> None:
    """Convolutions are Kaiming fan-out as published, but the heads must not be: a fan-out
    Kaiming head starts with a loss of ~10 and the pretext tasks never leave chance on CPU."""
    torch.manual_seed(0)
    model = harnet(5, n_classes=n_classes).eval()
    x = torch.randn(64, 3, 150) * 0.3
    with torch.no_grad():
        out = model(x)
    heads = {"classifier": out} if n_classes is not None else out
    for name, logits in heads.items():
        labels = torch.randint(0, logits.shape[1], (64,))
        loss = torch.nn.functional.cross_entropy(logits, labels).item()
        assert abs(loss - math.log(logits.shape[1])) < 0.25, (name, loss)
    conv = next(m for m in model.feature_extractor.modules() if isinstance(m, torch.nn.Conv1d))
    fan_out = conv.out_channels * conv.kernel_size[0]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.15)
