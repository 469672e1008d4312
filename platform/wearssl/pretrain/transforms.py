"""Batched pretext transforms and orientation augmentation for tri-axial windows.

Every function takes a ``(B, C, L)`` floating tensor (``C = 3`` for the orientation
transforms) on any device and works on the whole batch with torch ops on that
device: there is no per-window Python loop.

Randomness comes from a ``torch.Generator`` that must live on the same device as the
input (a CPU generator for CPU tensors, a CUDA generator for CUDA tensors). Each
function draws its random parameters for *every* window, whether or not the window is
selected by ``mask``, so the amount drawn never depends on the data: a seeded
generator gives the same output on every run, and no device-to-host sync is needed.

Inputs are never modified in place. Half-precision inputs are interpolated and
rotated in float32 and returned in their own dtype. Shapes: ``mask`` is bool
``(B,)``; L may be anything the task allows (permutation needs L >= 40).

``pretext_step`` composes the pretext tasks into a single time-index map plus one
linear interpolation, and the orientation augmentation (and scaling) into a single
3x3 matrix per window, so the whole chain reads the batch only a few times. It draws
exactly the same random numbers, in the same order, as calling ``draw_labels``,
``reverse_time``, ``permute_segments``, ``time_warp``, ``scale`` and ``augment`` in
sequence with the same generator, and gives the same result up to float rounding.
On the CPU it applies the drawn chain block by block (see ``CPU_BLOCK_SAMPLES``);
every block is still a batch of hundreds of windows.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import torch
from torch import Tensor

PRETEXT_TASKS: tuple[str, ...] = ("aot", "permute", "time_warp", "scale")
PAPER_TASKS: tuple[str, ...] = ("aot", "permute", "time_warp")

N_SEGMENTS = 4
MIN_SEGMENT = 10
WARP_SIGMA = 0.2
N_KNOTS = 4
SCALE_SIGMA = 0.2
"""Task parameters from the paper; ``pretext_step`` applies the tasks with these."""

MIN_FACTOR = 0.05
"""Floor for a local warp speed and a scale factor: keeps warped time strictly
increasing and never lets a scale flip or zero the signal (only reached in the
far tail of N(1, 0.2))."""


def _check_batch(x: Tensor, channels: int | None = None) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        dtype = x.dtype if isinstance(x, Tensor) else None
        raise ValueError(f"x must be a (B, C, L) floating tensor, got {shape} of dtype {dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"x must have {channels} channels (B, {channels}, L), got {tuple(x.shape)}"
        )


def _check_mask(mask: Tensor, x: Tensor) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != x.shape[:1]:
        got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else type(mask)
        raise ValueError(f"mask must be a bool tensor of shape ({x.shape[0]},), got {got}")
    if mask.device != x.device:
        raise ValueError(f"mask is on {mask.device} but x is on {x.device}")


def _check_generator(generator: torch.Generator, x: Tensor) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    same_index = None in (generator.device.index, x.device.index) or (
        generator.device.index == x.device.index
    )
    if generator.device.type != x.device.type or not same_index:
        raise ValueError(
            f"generator is on {generator.device} but x is on {x.device}; "
            "use a generator on the input's device"
        )


@functools.lru_cache(maxsize=32)
def _permutation_table(n: int, device: torch.device) -> Tensor:
    """All n! orders of ``range(n)`` as rows, the identity first."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long, device=device)


def _gather_time(x: Tensor, index: Tensor) -> Tensor:
    """``out[b, c, t] = x[b, c, index[b, t]]``."""
    return x.gather(-1, index.unsqueeze(1).expand_as(x))


def _resample(x: Tensor, position: Tensor, source_index: Tensor | None = None) -> Tensor:
    """Linear interpolation of ``y[b, c, s] = x[b, c, source_index[b, s]]`` (``y = x``
    without ``source_index``) at the fractional times ``s = position``.

    ``position`` (B, L) lies in ``[0, L-1]``; an integer position returns its sample
    exactly (``torch.lerp`` is exact at weight 0), so the first and last samples
    survive a warp bit for bit. The result is float32.
    """
    lower = position.long()
    fraction = position.frac().unsqueeze(1)
    upper = (lower + 1).clamp_(max=x.shape[-1] - 1)
    if source_index is not None:
        lower, upper = source_index.gather(1, lower), source_index.gather(1, upper)
    below = _gather_time(x, lower).float()
    above = _gather_time(x, upper).float()
    return below.lerp_(above, fraction)


def _time_index(
    reversed_: Tensor, length: int, segments: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """Gather index ``(B, L)`` of the arrow of time (where ``reversed_``) followed by the
    segment permutation ``segments = (output_start, shift)`` (see ``_segment_shifts``).

    Reversal maps t to ``L-1-t`` and the permutation maps t to ``t + shift[j]`` on
    output segment j, so together t goes to ``L-1-t - shift[j]`` in reversed windows.
    The index therefore moves by +1 or -1 per step except at segment starts, where it
    jumps: it is the cumulative sum of those steps.
    """
    sign = 1 - 2 * reversed_.long()
    steps = sign.unsqueeze(1).expand(-1, length).contiguous()
    first = (length - 1) * reversed_.long()
    if segments is not None:
        output_start, shift = segments
        signed_shift = shift * sign.unsqueeze(1)
        first = first + signed_shift[:, 0]
        steps.scatter_add_(1, output_start[:, 1:], signed_shift.diff(dim=1))
    steps[:, 0] = first
    return steps.cumsum_(1)


def reverse_time(x: Tensor, mask: Tensor) -> Tensor:
    """Arrow of time: reverse the time axis of the windows where ``mask`` is True."""
    _check_batch(x)
    _check_mask(mask, x)
    return _gather_time(x, _time_index(mask, x.shape[-1]))


def draw_segment_lengths(
    batch_size: int,
    length: int,
    generator: torch.Generator,
    n_segments: int = N_SEGMENTS,
    min_segment: int = MIN_SEGMENT,
) -> Tensor:
    """Random lengths ``(B, n_segments)`` of consecutive segments covering ``length`` samples.

    Each segment gets ``min_segment`` samples plus a share of the spare samples; the
    shares come from ``n_segments - 1`` uniform random cut points in the spare range.
    """
    spare = length - n_segments * min_segment
    if n_segments < 2 or min_segment < 1 or spare < 0:
        raise ValueError(
            f"cannot split a window of {length} samples into n_segments={n_segments} "
            f"segments of at least min_segment={min_segment} samples"
        )
    device = generator.device
    uniform = torch.rand(batch_size, n_segments - 1, generator=generator, device=device)
    cuts = (uniform * (spare + 1)).long().clamp_(max=spare).sort(dim=1).values
    bounds = torch.nn.functional.pad(cuts, (1, 0), value=0)
    bounds = torch.nn.functional.pad(bounds, (0, 1), value=spare)
    return min_segment + bounds.diff(dim=1)


def draw_segment_orders(batch_size: int, n_segments: int, generator: torch.Generator) -> Tensor:
    """A uniformly random non-identity order ``(B, n_segments)`` of the segments per window.

    Orders are drawn from the table of all ``n_segments!`` permutations, so
    ``n_segments`` is limited to 8.
    """
    if not 2 <= n_segments <= 8:
        raise ValueError(f"n_segments must be between 2 and 8, got {n_segments}")
    table = _permutation_table(n_segments, generator.device)
    choice = torch.randint(
        1, table.shape[0], (batch_size,), generator=generator, device=generator.device
    )
    return table[choice]


def _segment_shifts(lengths: Tensor, order: Tensor) -> tuple[Tensor, Tensor]:
    """Where each output segment starts ``(B, n)`` and how far its source lies ahead of it.

    The j-th output segment is source segment ``order[j]``: its sample t comes from
    ``t + shift[j]``, with ``shift[j] = source_start[order[j]] - output_start[j]``.
    """
    source_start = lengths.cumsum(1) - lengths
    output_lengths = lengths.gather(1, order)
    output_start = output_lengths.cumsum(1) - output_lengths
    return output_start, source_start.gather(1, order) - output_start


def segment_permutation_index(lengths: Tensor, order: Tensor, length: int) -> Tensor:
    """Gather index ``(B, length)`` that lays out source segment ``order[b, j]`` as the
    j-th output segment; ``lengths[b, i]`` is the length of source segment i (each row
    sums to ``length``)."""
    not_reversed = torch.zeros(lengths.shape[0], dtype=torch.bool, device=lengths.device)
    return _time_index(not_reversed, length, _segment_shifts(lengths, order))


def _permutation_shifts(
    mask: Tensor, length: int, generator: torch.Generator, n_segments: int, min_segment: int
) -> tuple[Tensor, Tensor]:
    """Random segment shifts (see ``_segment_shifts``), all zero where ``mask`` is False."""
    batch_size = mask.shape[0]
    lengths = draw_segment_lengths(batch_size, length, generator, n_segments, min_segment)
    order = draw_segment_orders(batch_size, n_segments, generator)
    output_start, shift = _segment_shifts(lengths, order)
    return output_start, shift * mask.unsqueeze(1)


def permute_segments(
    x: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    n_segments: int = N_SEGMENTS,
    min_segment: int = MIN_SEGMENT,
) -> Tensor:
    """Permutation: cut each selected window into ``n_segments`` segments of at least
    ``min_segment`` samples at random points and reorder them by a random non-identity
    permutation (different cuts and order per window)."""
    _check_batch(x)
    _check_mask(mask, x)
    _check_generator(generator, x)
    length = x.shape[-1]
    segments = _permutation_shifts(mask, length, generator, n_segments, min_segment)
    return _gather_time(x, _time_index(torch.zeros_like(mask), length, segments))


def natural_cubic_spline(values: Tensor, knots: Tensor, query: Tensor) -> Tensor:
    """Evaluate natural cubic splines through ``(knots, values[..., k])`` at ``query``.

    ``values`` is ``(..., K)`` (one spline per leading index), ``knots`` ``(K,)``
    strictly increasing, ``query`` ``(Q,)``; returns ``(..., Q)``. The second
    derivatives at the interior knots solve the usual tridiagonal system (one small
    matrix shared by the whole batch); they are zero at both ends (natural spline).
    """
    n_knots = knots.shape[0]
    if n_knots < 3:
        raise ValueError(f"a cubic spline needs at least 3 knots, got {n_knots}")
    width = knots.diff()
    system = (
        torch.diag((width[:-1] + width[1:]) / 3)
        + torch.diag(width[1:-1] / 6, 1)
        + torch.diag(width[1:-1] / 6, -1)
    )
    slope = values.diff(dim=-1) / width
    rhs = slope[..., 1:] - slope[..., :-1]
    interior = torch.linalg.solve(system, rhs.unsqueeze(-1)).squeeze(-1)
    curvature = torch.nn.functional.pad(interior, (1, 1))
    segment = (torch.searchsorted(knots, query, right=True) - 1).clamp(0, n_knots - 2)
    h = width[segment]
    a = (knots[segment + 1] - query) / h
    b = (query - knots[segment]) / h
    return (
        a * values[..., segment]
        + b * values[..., segment + 1]
        + ((a**3 - a) * curvature[..., segment] + (b**3 - b) * curvature[..., segment + 1])
        * h**2
        / 6
    )


@functools.lru_cache(maxsize=32)
def _speed_basis(length: int, n_knots: int, device: torch.device) -> Tensor:
    """Natural cubic splines ``(n_knots + 2, length)`` through the unit vectors on
    ``n_knots + 2`` equally spaced knots from 0 to length-1, at every sample time."""
    knots = torch.linspace(0, length - 1, n_knots + 2, device=device)
    grid = torch.arange(length, device=device, dtype=torch.float32)
    return natural_cubic_spline(torch.eye(n_knots + 2, device=device), knots, grid)


def _draw_knot_deviations(
    mask: Tensor, generator: torch.Generator, sigma: float, n_knots: int
) -> Tensor:
    """Deviations from the nominal speed 1 ``(B, n_knots + 2)`` at equally spaced knots:
    ~ N(0, sigma) at the interior knots, 0 at the two endpoints (our choice: it anchors
    the warp at the window's ends and makes sigma = 0 the identity), and 0 throughout
    where ``mask`` is False."""
    if sigma < 0 or n_knots < 1:
        raise ValueError(f"need sigma >= 0 and n_knots >= 1, got sigma={sigma}, n_knots={n_knots}")
    device = generator.device
    interior = sigma * torch.randn(mask.shape[0], n_knots, generator=generator, device=device)
    return torch.nn.functional.pad(interior * mask.unsqueeze(1), (1, 1))


def _warp_positions(knot_deviations: Tensor, length: int) -> Tensor:
    """Warped sample times ``(B, L)``, strictly increasing from 0 to exactly L-1.

    The local speed is the natural cubic spline through ``1 + knot_deviations``. The
    spline is linear in the knot values and 1 where they all are, so it is evaluated as
    ``1 + knot_deviations @ basis`` with the basis splines of the unit knot vectors;
    all-zero deviations give exactly the identity. Speeds are floored at
    ``MIN_FACTOR``, integrated with the trapezoid rule and rescaled to end at L-1.
    """
    basis = _speed_basis(length, knot_deviations.shape[1] - 2, knot_deviations.device)
    speed = (knot_deviations @ basis).add_(1).clamp_min_(MIN_FACTOR)
    warped = speed.cumsum(1).sub_(speed, alpha=0.5).sub_(speed[:, :1], alpha=0.5)
    warped.mul_((length - 1) / warped[:, -1:])
    warped[:, -1] = length - 1
    return warped


def time_warp(
    x: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    sigma: float = WARP_SIGMA,
    n_knots: int = N_KNOTS,
) -> Tensor:
    """Time warp: re-read each selected window by linear interpolation at smoothly
    stretched/compressed times (see ``_draw_knot_deviations`` and ``_warp_positions``).
    Length, first and last samples are kept; at ``sigma = 0`` the output equals the
    input."""
    _check_batch(x)
    _check_mask(mask, x)
    _check_generator(generator, x)
    deviations = _draw_knot_deviations(mask, generator, sigma, n_knots)
    return _resample(x, _warp_positions(deviations, x.shape[-1])).to(x.dtype)


def _scale_factors(mask: Tensor, generator: torch.Generator, sigma: float) -> Tensor:
    """One factor per window (all axes alike, so the direction of every sample is kept),
    ~ N(1, sigma) floored at ``MIN_FACTOR``, and 1 where ``mask`` is False."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    draw = 1 + sigma * torch.randn(mask.shape[0], generator=generator, device=mask.device)
    return torch.where(mask, draw.clamp_min(MIN_FACTOR), torch.ones_like(draw))


def scale(
    x: Tensor, mask: Tensor, generator: torch.Generator, sigma: float = SCALE_SIGMA
) -> Tensor:
    """Scaling: multiply each selected window by a random factor (see ``_scale_factors``)."""
    _check_batch(x)
    _check_mask(mask, x)
    _check_generator(generator, x)
    factors = _scale_factors(mask, generator, sigma)
    return (x.float() * factors[:, None, None]).to(x.dtype)


def _axis_orders(batch_size: int, generator: torch.Generator) -> Tensor:
    table = _permutation_table(3, generator.device)
    choice = torch.randint(
        0, table.shape[0], (batch_size,), generator=generator, device=generator.device
    )
    return table[choice]


def swap_axes(x: Tensor, generator: torch.Generator) -> Tensor:
    """Axis swap: reorder each window's channels by one of the 6 orders, drawn uniformly."""
    _check_batch(x, channels=3)
    _check_generator(generator, x)
    order = _axis_orders(x.shape[0], generator)
    return x.gather(1, order.unsqueeze(-1).expand_as(x))


def random_rotations(batch_size: int, generator: torch.Generator) -> Tensor:
    """Uniformly distributed rotation matrices ``(B, 3, 3)`` (det = +1).

    A normalised 4-D Gaussian is a uniform unit quaternion, and its rotation matrix is
    uniform on SO(3).
    """
    q = torch.randn(batch_size, 4, generator=generator, device=generator.device)
    w, i, j, k = (q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)).unbind(1)
    rows = (
        (1 - 2 * (j * j + k * k), 2 * (i * j - k * w), 2 * (i * k + j * w)),
        (2 * (i * j + k * w), 1 - 2 * (i * i + k * k), 2 * (j * k - i * w)),
        (2 * (i * k - j * w), 2 * (j * k + i * w), 1 - 2 * (i * i + j * j)),
    )
    return torch.stack([torch.stack(row, dim=1) for row in rows], dim=1)


def rotate(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random 3-D rotation of every window (one uniform rotation per window)."""
    _check_batch(x, channels=3)
    _check_generator(generator, x)
    return torch.bmm(random_rotations(x.shape[0], generator), x.float()).to(x.dtype)


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Orientation augmentation: ``swap_axes`` then ``rotate``."""
    return rotate(swap_axes(x, generator), generator)


def draw_labels(
    batch_size: int,
    generator: torch.Generator,
    tasks: tuple[str, ...] = PAPER_TASKS,
    p: float = 0.5,
) -> dict[str, Tensor]:
    """Independent Bernoulli(p) int64 labels ``(B,)`` for each enabled task, drawn in
    ``PRETEXT_TASKS`` order."""
    unknown = [task for task in tasks if task not in PRETEXT_TASKS]
    if unknown:
        raise ValueError(f"unknown pretext task {unknown[0]!r}; known tasks: {PRETEXT_TASKS}")
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    return {
        task: (torch.rand(batch_size, generator=generator, device=generator.device) < p).long()
        for task in PRETEXT_TASKS
        if task in tasks
    }


class _PretextDraw(NamedTuple):
    """Every random parameter of one ``pretext_step``, one row per window; None for a
    disabled step."""

    reversed: Tensor | None  # bool (B,)
    segment_starts: Tensor | None  # (B, N_SEGMENTS) where each output segment starts
    segment_shifts: Tensor | None  # (B, N_SEGMENTS), see _segment_shifts; 0 = not permuted
    knot_deviations: Tensor | None  # (B, N_KNOTS + 2), see _draw_knot_deviations
    matrices: Tensor | None  # (B, 3, 3): scale, then axis swap, then rotation

    def rows(self, block: slice) -> _PretextDraw:
        return _PretextDraw._make(None if field is None else field[block] for field in self)


def _draw_pretext(
    labels: dict[str, Tensor],
    batch_size: int,
    length: int,
    generator: torch.Generator,
    augment_orientation: bool,
) -> _PretextDraw:
    """Draw in the order the separate transforms do, so both give the same result."""
    selected = {task: label.bool() for task, label in labels.items()}
    starts = shifts = deviations = matrices = None
    if "permute" in selected:
        starts, shifts = _permutation_shifts(
            selected["permute"], length, generator, N_SEGMENTS, MIN_SEGMENT
        )
    if "time_warp" in selected:
        deviations = _draw_knot_deviations(selected["time_warp"], generator, WARP_SIGMA, N_KNOTS)
    if "scale" in selected:
        factors = _scale_factors(selected["scale"], generator, SCALE_SIGMA)
        matrices = factors[:, None, None] * torch.eye(3, device=generator.device)
    if augment_orientation:
        swaps = torch.nn.functional.one_hot(_axis_orders(batch_size, generator), 3).float()
        orientation = random_rotations(batch_size, generator) @ swaps
        matrices = orientation if matrices is None else orientation @ matrices
    return _PretextDraw(selected.get("aot"), starts, shifts, deviations, matrices)


def _apply_pretext(x: Tensor, draw: _PretextDraw) -> Tensor:
    """The drawn chain on a block of windows, as one gather index (reversal and
    permutation), one interpolation (warp) and one 3x3 matrix per window; float32."""
    length = x.shape[-1]
    index = None
    if draw.reversed is not None or draw.segment_shifts is not None:
        no_reversal = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        reversed_ = no_reversal if draw.reversed is None else draw.reversed
        permuted = draw.segment_shifts is not None
        segments = (draw.segment_starts, draw.segment_shifts) if permuted else None
        index = _time_index(reversed_, length, segments)
    if draw.knot_deviations is not None:
        out = _resample(x, _warp_positions(draw.knot_deviations, length), index)
    elif index is not None:
        out = _gather_time(x, index).float()
    else:
        out = x.float()
    return out if draw.matrices is None else torch.bmm(draw.matrices, out)


CPU_BLOCK_SAMPLES = 2**18
"""On the CPU ``pretext_step`` works through the batch in blocks of about this many
time steps (873 windows of 300 samples). A block's temporaries are a few MB, which
the allocator recycles from block to block; one pass over a 6,000-window batch
instead allocates ~20 MB temporaries that are first touched page by page, and on
one core measured at about half the speed. Other devices take the batch in one
block."""


def _row_blocks(x: Tensor) -> list[slice]:
    batch_size = x.shape[0]
    if x.device.type != "cpu":
        return [slice(0, batch_size)]
    rows = max(1, CPU_BLOCK_SAMPLES // x.shape[-1])
    return [slice(start, start + rows) for start in range(0, batch_size, rows)]


def pretext_step(
    x: Tensor,
    generator: torch.Generator,
    tasks: tuple[str, ...] = PAPER_TASKS,
    augment_orientation: bool = True,
    p: float = 0.5,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Draw pretext labels, apply the labelled tasks, then the orientation augmentation.

    Each enabled task gets a Bernoulli(p) label per window; tasks are applied in
    ``PRETEXT_TASKS`` order to the windows labelled 1 (with each task's default
    parameters), then, if ``augment_orientation``, every window gets a random axis
    swap and rotation. Returns the transformed batch (input dtype) and
    ``{task: int64 labels (B,)}`` for the enabled tasks. ``generator`` must be on
    ``x``'s device (a CPU generator for CPU tensors).
    """
    _check_batch(x, channels=3 if augment_orientation else None)
    _check_generator(generator, x)
    batch_size, length = x.shape[0], x.shape[-1]
    labels = draw_labels(batch_size, generator, tasks, p)
    draw = _draw_pretext(labels, batch_size, length, generator, augment_orientation)
    out = torch.empty_like(x)
    for block in _row_blocks(x):
        out[block] = _apply_pretext(x[block], draw.rows(block))
    return out, labels
