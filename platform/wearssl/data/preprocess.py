"""From raw samples to 30-Hz windows: calibration, non-wear, resampling, windowing, days.

Pure functions over numpy arrays (times as int64 wall-clock nanoseconds, samples as
``(n, 3)`` float32 in g, see ``wearssl.data.devices``); ingestion and prediction both use them.

Choices, and why:

- **Window grid.** Windows are ``window_seconds`` long and, by default (``align="clock"``),
  start on whole multiples of their length on the wall clock (00:00:00, 00:00:10, ...),
  so a 10-s window never straddles midnight and windows of different recordings of one
  subject line up. ``align="start"`` starts them at the first sample instead (used for
  short labelled sessions, where the clock grid would waste a window's worth at each
  end). A window is cut only where all of its samples lie between the first and the last
  sample of the recording: ``start >= t_first`` and
  ``start + (L - 1) / rate <= t_last + 1 ms`` (times are often stored to the millisecond,
  which would otherwise cost a full recording its last window).
- **Gaps.** Consecutive samples more than ``max_gap_seconds`` apart bound a gap. Windows
  with a sample inside a gap are kept (their samples are linearly interpolated across it,
  so they stay finite) but flagged ``wear=False``. A window's samples span
  ``(L - 1) / rate`` (9.967 s at 30 Hz), not its full length: a window whose last sample
  precedes the gap's first missing moment is fully recorded and keeps ``wear=True``.
- **Statistics.** One pass puts the raw samples in 10-s bins on the same clock grid and
  keeps per-bin counts, means and standard deviations; calibration and non-wear
  detection both read only these.
- **Calibration** (the gravity method of van Hees et al. 2014): the means of still bins
  (every axis' std < 15 mg) should lie on the unit sphere; an offset and a scale per
  axis are fitted by iteratively re-weighted least squares (weight 1 / max(residual,
  10 mg)). It is applied only when the still bins reach beyond +-0.3 g on both sides of
  every axis and the fit brings the mean residual under 10 mg. Being affine, it is
  applied to the 30-Hz windows (filtering and interpolation commute with it).
- **Non-wear**: a run of still bins (empty bins count as still) longer than
  ``nonwear_minutes`` (90) is non-wear; windows overlapping it get ``wear=False``. A bin
  is still when every axis' std is below ``still_std_g`` (15 mg, above an AX3's noise)
  or, for a device with coarser values, below one step of its resolution: a device lying
  still reads at most two neighbouring steps, so its std is at most half a step. (An
  Empatica E4 reads in 1/64 g, 15.6 mg steps: worn while seated, its wearers' 10-s bins
  have median stds of 10-146 mg and no still run longer than 6 minutes.)
- **Resampling** to 30 Hz: when the source rate is over 10 % higher, a zero-phase 4th-order
  Butterworth low-pass at 0.4 x the target rate (12 Hz) first removes what would alias;
  then each axis is linearly interpolated at the window sample times. Filtering runs on
  each stretch between gaps separately and, for memory, in chunks of about a day with a
  5-s margin on either side.
- **Days**: a window belongs to the wall-clock calendar day its start falls in.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import scipy.signal

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
TARGET_RATE_HZ = 30
STAT_BIN_SECONDS = 10
ANTIALIAS_FRACTION = 0.4
ANTIALIAS_ABOVE = 1.1
FILTER_ORDER = 4
FILTER_MARGIN_NS = 5 * NS_PER_SECOND
CHUNK_SECONDS = 86_400
TIME_TOLERANCE_NS = 1_000_000
_STATS_CHUNK = 4_000_000
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class PreprocessOptions:
    window_seconds: int = 10
    target_rate_hz: int = TARGET_RATE_HZ
    calibrate: bool = True
    detect_nonwear: bool = True
    nonwear_minutes: float = 90.0
    still_std_g: float = 0.015
    max_gap_seconds: float = 1.0
    antialias: bool = True
    align: str = "clock"

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {self.window_seconds}")
        if self.target_rate_hz <= 0:
            raise ValueError(f"target_rate_hz must be > 0, got {self.target_rate_hz}")
        if self.align not in ("clock", "start"):
            raise ValueError(f"align must be 'clock' or 'start', got {self.align!r}")
        if not self.max_gap_seconds > 0:
            raise ValueError(f"max_gap_seconds must be > 0, got {self.max_gap_seconds}")
        if not self.nonwear_minutes > 0:
            raise ValueError(f"nonwear_minutes must be > 0, got {self.nonwear_minutes}")

    @property
    def window_samples(self) -> int:
        return self.window_seconds * self.target_rate_hz


# ---------------------------------------------------------------- window grid and intervals


def sample_offsets_ns(window_samples: int, rate_hz: float) -> np.ndarray:
    """Times of a window's samples relative to its start, ``(L,)`` int64 ns."""
    return np.rint(np.arange(window_samples) * (NS_PER_SECOND / rate_hz)).astype(np.int64)


def samples_span_ns(window_samples: int, rate_hz: float) -> int:
    """Time from a window's first sample to its last, ``(L - 1) / rate``: a gap ``(a, b)``
    (no samples strictly between a and b) puts a sample of the window inside it only when
    ``a < start + span`` and ``b > start``."""
    return int(sample_offsets_ns(window_samples, rate_hz)[-1])


def window_starts(
    times_ns: np.ndarray,
    window_seconds: int,
    rate_hz: float = TARGET_RATE_HZ,
    align: str = "clock",
    step_seconds: float | None = None,
) -> np.ndarray:
    """Start times of every window that fits inside the recording (see module docstring),
    one every ``step_seconds`` (default: the window length, i.e. no overlap)."""
    if len(times_ns) == 0:
        return np.empty(0, np.int64)
    window_ns = window_seconds * NS_PER_SECOND
    step_ns = window_ns if step_seconds is None else round(step_seconds * NS_PER_SECOND)
    if step_ns <= 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
    first, last = int(times_ns[0]), int(times_ns[-1])
    if align == "clock":
        first = -(-first // step_ns) * step_ns
    span = samples_span_ns(round(window_seconds * rate_hz), rate_hz)
    last += TIME_TOLERANCE_NS
    if first + span > last:
        return np.empty(0, np.int64)
    count = (last - span - first) // step_ns + 1
    return first + np.arange(count, dtype=np.int64) * step_ns


def gap_intervals(times_ns: np.ndarray, max_gap_seconds: float) -> np.ndarray:
    """``(k, 2)`` int64: the (last sample before, first sample after) of each gap longer
    than ``max_gap_seconds``."""
    steps = np.diff(times_ns)
    at = np.flatnonzero(steps > max_gap_seconds * NS_PER_SECOND)
    return np.column_stack([times_ns[at], times_ns[at + 1]]).astype(np.int64).reshape(-1, 2)


def overlaps(starts_ns: np.ndarray, length_ns: int, intervals: np.ndarray) -> np.ndarray:
    """Which spans ``(start, start + length)`` overlap any of the sorted, disjoint
    intervals ``(a, b)``: ``a < start + length`` and ``b > start``."""
    if len(intervals) == 0:
        return np.zeros(len(starts_ns), bool)
    first_ending_after = np.searchsorted(intervals[:, 1], starts_ns, side="right")
    hit = first_ending_after < len(intervals)
    candidate = np.minimum(first_ending_after, len(intervals) - 1)
    return hit & (intervals[candidate, 0] < starts_ns + length_ns)


def interval_seconds(intervals: np.ndarray) -> float:
    return (
        float((intervals[:, 1] - intervals[:, 0]).sum()) / NS_PER_SECOND if len(intervals) else 0.0
    )


# ---------------------------------------------------------------- bin statistics


@dataclass(frozen=True)
class BinStats:
    """Per-bin sample count, mean and std of each axis over a clock-aligned bin grid."""

    origin_ns: int
    bin_ns: int
    counts: np.ndarray  # (m,) int64
    means: np.ndarray  # (m, 3) float64, NaN where empty
    stds: np.ndarray  # (m, 3) float64, NaN where fewer than 2 samples

    @property
    def starts_ns(self) -> np.ndarray:
        return self.origin_ns + np.arange(len(self.counts), dtype=np.int64) * self.bin_ns


def bin_statistics(
    times_ns: np.ndarray, xyz: np.ndarray, bin_seconds: int = STAT_BIN_SECONDS
) -> BinStats:
    """One pass of per-bin sums (in chunks, float64) over clock-aligned bins."""
    bin_ns = bin_seconds * NS_PER_SECOND
    origin = (int(times_ns[0]) // bin_ns) * bin_ns
    m = (int(times_ns[-1]) - origin) // bin_ns + 1
    counts = np.zeros(m, np.int64)
    sums = np.zeros((m, 3))
    squares = np.zeros((m, 3))
    for lo in range(0, len(times_ns), _STATS_CHUNK):
        index = (times_ns[lo : lo + _STATS_CHUNK] - origin) // bin_ns
        counts += np.bincount(index, minlength=m)
        for axis in range(3):
            values = xyz[lo : lo + _STATS_CHUNK, axis].astype(np.float64)
            sums[:, axis] += np.bincount(index, weights=values, minlength=m)
            squares[:, axis] += np.bincount(index, weights=values * values, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
        variance = (squares - sums * means) / (counts[:, None] - 1)
    stds = np.sqrt(np.maximum(variance, 0.0))
    stds[counts < 2] = np.nan
    return BinStats(origin, bin_ns, counts, means, stds)


def still_bins(stats: BinStats, still_std_g: float) -> np.ndarray:
    """Bins in which every axis' std is below ``still_std_g``."""
    with np.errstate(invalid="ignore"):
        return (stats.stds < still_std_g).all(axis=1)


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    applied: bool = False
    n_points: int = 0
    error_before_mg: float = float("nan")
    error_after_mg: float = float("nan")
    reason: str = "not attempted"


def finite_or_none(value: float) -> float | None:
    """A calibration error (NaN where none was measured) as a number or None, for JSON
    and Parquet reports."""
    return float(value) if math.isfinite(value) else None


def _sphere_error(points: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(points, axis=1) - 1.0)


def fit_calibration(
    stats: BinStats,
    still_std_g: float = 0.015,
    min_points: int = 50,
    cube_g: float = 0.3,
    max_error_mg: float = 10.0,
    max_iterations: int = 1000,
    tolerance: float = 1e-4,
) -> Calibration:
    """Fit per-axis offset and scale that put still bins' means on the unit sphere."""
    usable = still_bins(stats, still_std_g) & (stats.counts >= 2)
    points = stats.means[usable]
    points = points[np.isfinite(points).all(axis=1) & (np.linalg.norm(points, axis=1) > 1e-8)]
    n = len(points)
    if n < min_points:
        return Calibration(n_points=n, reason=f"only {n} still 10-s periods (< {min_points})")
    error_before = float(_sphere_error(points).mean()) * 1000
    if (points.max(axis=0) < cube_g).any() or (points.min(axis=0) > -cube_g).any():
        return Calibration(
            n_points=n,
            error_before_mg=error_before,
            reason=f"still periods do not reach beyond +-{cube_g} g on every axis",
        )
    offset, scale = np.zeros(3), np.ones(3)
    best = (error_before, offset, scale)
    for _ in range(max_iterations):
        current = offset + scale * points
        target = current / np.linalg.norm(current, axis=1, keepdims=True)
        weights = 1.0 / np.maximum(_sphere_error(current), 0.01)
        for axis in range(3):
            offset[axis], scale[axis] = _weighted_line(points[:, axis], target[:, axis], weights)
        error = float(_sphere_error(offset + scale * points).mean()) * 1000
        improved = (best[0] - error) / max(best[0], 1e-12)
        if error < best[0]:
            best = (error, offset.copy(), scale.copy())
        if improved < tolerance:
            break
    error_after, offset, scale = best
    if error_after >= max_error_mg:
        return Calibration(
            offset, scale, False, n, error_before, error_after,
            f"residual {error_after:.1f} mg after fitting is not below {max_error_mg} mg",
        )  # fmt: skip
    return Calibration(offset, scale, True, n, error_before, error_after, "")


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the weighted least-squares line y ~ a + b x."""
    mean_x = np.average(x, weights=w)
    mean_y = np.average(y, weights=w)
    slope = np.sum(w * (x - mean_x) * (y - mean_y)) / np.sum(w * (x - mean_x) ** 2)
    return float(mean_y - slope * mean_x), float(slope)


def apply_calibration(
    samples: np.ndarray, calibration: Calibration, channel_axis: int
) -> np.ndarray:
    """``offset + scale * samples`` with the 3 channels along ``channel_axis`` (float32)."""
    if not calibration.applied:
        return samples
    shape = [1] * samples.ndim
    shape[channel_axis] = 3
    scale = calibration.scale.astype(np.float32).reshape(shape)
    offset = calibration.offset.astype(np.float32).reshape(shape)
    return samples * scale + offset


def calibrated_stats(stats: BinStats, calibration: Calibration) -> BinStats:
    """Bin statistics after calibration (an affine map moves means and scales stds)."""
    if not calibration.applied:
        return stats
    return BinStats(
        stats.origin_ns,
        stats.bin_ns,
        stats.counts,
        calibration.offset + calibration.scale * stats.means,
        np.abs(calibration.scale) * stats.stds,
    )


# ---------------------------------------------------------------- non-wear


def nonwear_intervals(
    stats: BinStats, minutes: float = 90.0, still_std_g: float = 0.015
) -> np.ndarray:
    """``(k, 2)`` int64 [start, end) of runs of still (or empty) bins longer than ``minutes``."""
    still = still_bins(stats, still_std_g) | (stats.counts < 2)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], still.astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2]
    long_enough = (stops - starts) * stats.bin_ns > minutes * 60 * NS_PER_SECOND
    starts, stops = starts[long_enough], stops[long_enough]
    return (
        np.column_stack(
            [stats.origin_ns + starts * stats.bin_ns, stats.origin_ns + stops * stats.bin_ns]
        )
        .astype(np.int64)
        .reshape(-1, 2)
    )


# ---------------------------------------------------------------- resampling


def _runs(times_ns: np.ndarray, max_gap_ns: float) -> list[tuple[int, int]]:
    """``[lo, hi)`` index ranges of the stretches between gaps."""
    cuts = np.flatnonzero(np.diff(times_ns) > max_gap_ns) + 1
    return list(zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(times_ns)].tolist(), strict=True))


def resample_windows(
    times_ns: np.ndarray,
    xyz: np.ndarray,
    starts_ns: np.ndarray,
    window_samples: int,
    source_rate_hz: float,
    target_rate_hz: float = TARGET_RATE_HZ,
    antialias: bool = True,
    max_gap_seconds: float = 1.0,
    chunk_seconds: int = CHUNK_SECONDS,
) -> np.ndarray:
    """The ``(n, 3, L)`` float32 windows starting at ``starts_ns``, sampled at
    ``target_rate_hz`` (see the module docstring for the method)."""
    n = len(starts_ns)
    out = np.empty((n, 3, window_samples), np.float32)
    if n == 0:
        return out
    offsets = sample_offsets_ns(window_samples, target_rate_hz)
    sos = None
    if antialias and source_rate_hz > ANTIALIAS_ABOVE * target_rate_hz:
        sos = scipy.signal.butter(
            FILTER_ORDER, ANTIALIAS_FRACTION * target_rate_hz, fs=source_rate_hz, output="sos"
        )
    window_ns = max(1, int(round(window_samples / target_rate_hz * NS_PER_SECOND)))
    per_chunk = max(1, chunk_seconds * NS_PER_SECOND // window_ns)
    for w0 in range(0, n, per_chunk):
        chunk = starts_ns[w0 : w0 + per_chunk]
        grid = (chunk[:, None] + offsets[None, :]).ravel()
        lo = int(np.searchsorted(times_ns, grid[0] - FILTER_MARGIN_NS, side="left"))
        hi = int(np.searchsorted(times_ns, grid[-1] + FILTER_MARGIN_NS, side="right"))
        segment_t = times_ns[lo:hi]
        runs = _runs(segment_t, max_gap_seconds * NS_PER_SECOND) if sos is not None else []
        origin = segment_t[0]
        t = (segment_t - origin).astype(np.float64)
        g = (grid - origin).astype(np.float64)
        for axis in range(3):
            values = xyz[lo:hi, axis].astype(np.float64)
            for a, b in runs:  # zero-phase low-pass, each stretch between gaps on its own
                values[a:b] = scipy.signal.sosfiltfilt(sos, values[a:b], padtype=None)
            resampled = np.interp(g, t, values)
            out[w0 : w0 + len(chunk), axis, :] = resampled.reshape(len(chunk), window_samples)
    return out


# ---------------------------------------------------------------- whole recording


@dataclass
class WindowedRecording:
    """A recording cut into windows, with what preprocessing found."""

    starts_ns: np.ndarray  # (n,) int64 wall-clock window starts
    windows: np.ndarray  # (n, 3, L) float32, g, at the target rate
    wear: np.ndarray  # (n,) bool: no non-wear and no gap inside the window
    calibration: Calibration
    nonwear_seconds: float
    gap_seconds: float
    timings: dict[str, float]
    gap_count: int = 0

    def __len__(self) -> int:
        return len(self.starts_ns)


def preprocess(
    times_ns: np.ndarray,
    xyz: np.ndarray,
    sample_rate_hz: float,
    options: PreprocessOptions | None = None,
    resolution_g: float | None = None,
) -> WindowedRecording:
    """Calibrate, find non-wear and gaps, resample and cut one recording into windows.
    ``resolution_g`` is the device's step between values, where it is coarse (see the
    module docstring on non-wear).

    ``timings`` holds seconds for ``calibrate_nonwear`` and ``resample_window``.
    """
    options = options or PreprocessOptions()
    still_std_g = max(options.still_std_g, resolution_g or 0.0)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    calibration = Calibration()
    nonwear = np.empty((0, 2), np.int64)
    if options.calibrate or options.detect_nonwear:
        stats = bin_statistics(times_ns, xyz)
        if options.calibrate:
            calibration = fit_calibration(stats, still_std_g)
            stats = calibrated_stats(stats, calibration)
        if options.detect_nonwear:
            nonwear = nonwear_intervals(stats, options.nonwear_minutes, still_std_g)
    gaps = gap_intervals(times_ns, options.max_gap_seconds)
    timings["calibrate_nonwear"] = time.perf_counter() - began

    began = time.perf_counter()
    starts = window_starts(times_ns, options.window_seconds, options.target_rate_hz, options.align)
    windows = resample_windows(
        times_ns,
        xyz,
        starts,
        options.window_samples,
        sample_rate_hz,
        options.target_rate_hz,
        options.antialias,
        options.max_gap_seconds,
    )
    windows = apply_calibration(windows, calibration, channel_axis=1)
    span_ns = samples_span_ns(options.window_samples, options.target_rate_hz)
    wear = ~(overlaps(starts, span_ns, nonwear) | overlaps(starts, span_ns, gaps))
    timings["resample_window"] = time.perf_counter() - began
    return WindowedRecording(
        starts,
        windows,
        wear,
        calibration,
        interval_seconds(nonwear),
        interval_seconds(gaps),
        timings,
        len(gaps),
    )


def day_name(start_ns: int) -> str:
    """ISO date of the wall-clock day a time falls in."""
    return (_EPOCH + timedelta(days=int(start_ns) // NS_PER_DAY)).isoformat()


def split_days(starts_ns: np.ndarray) -> list[tuple[str, slice]]:
    """``(day, slice)`` for each calendar day among sorted window starts."""
    if len(starts_ns) == 0:
        return []
    day_index = starts_ns // NS_PER_DAY
    cuts = np.flatnonzero(np.diff(day_index)) + 1
    bounds = np.r_[0, cuts, len(starts_ns)]
    return [
        (day_name(int(starts_ns[lo])), slice(int(lo), int(hi)))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
