"""The ``Recording`` every reader returns, and the checks the readers share.

Bad samples. Samples beyond the device's range (stated by an ActiGraph's header, +-2 g
for an E4) or, where no range is stated, beyond +-16 g are clipped to it and counted in
``Recording.clipped_samples``. Samples with a missing or non-finite value are dropped, so
they become gaps.

Losses. A reader that skips corrupt blocks or stops at a truncated file still returns
what it could read; ``Recording.lost_seconds`` estimates how much was lost (from the
file's block count for Axivity, from the header's page count for GENEActiv, from the rows
dropped for CSV and arrays; ``None`` when the format gives no way to tell) and
``Recording.notes`` says what the reader reported. Rows whose time does not increase are
dropped (time going backwards is reported with how often and how far);
``Recording.dropped_rows`` counts dropped rows by reason. A file that yields nothing
raises ``RecordingError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wearssl.data.devices.clock import CLOCK_AS_GIVEN, NS_PER_SECOND, utc_offset_and_clock
from wearssl.data.devices.options import ReadOptions

STANDARD_GRAVITY = 9.80665
PHYSICAL_LIMIT_G = 16.0
"""The largest acceleration a wrist device records: samples beyond it are clipped."""

DROPPED_MALFORMED = "malformed lines"
DROPPED_MISSING = "missing or non-finite values"
DROPPED_NOT_INCREASING = "time not increasing"


class RecordingError(ValueError):
    """A recording that cannot be read; the message names the file and the reason."""


@dataclass
class Recording:
    """One recording's samples, as read, before any processing."""

    source: str
    device: str
    times_ns: np.ndarray  # (n,) int64 wall-clock ns since 1970-01-01, strictly increasing
    xyz: np.ndarray  # (n, 3) float32 acceleration in g
    sample_rate_hz: float
    read_errors: int = 0
    lost_seconds: float | None = 0.0
    notes: tuple[str, ...] = ()
    labels: np.ndarray | None = None  # (n,) object, labelled CSV files only
    device_id: str = ""
    utc_offset_seconds: int | None = None  # wall clock minus UTC, where known
    clock: str = CLOCK_AS_GIVEN  # what the times are (one of the CLOCK_* texts)
    idle_sleep_seconds: float = 0.0  # ActiGraph idle sleep filled with the last sample
    clipped_samples: int = 0  # samples clipped to the device's range
    resolution_g: float | None = None  # the step between values, where coarser than ~4 mg
    dropped_rows: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped

    @property
    def n_samples(self) -> int:
        return len(self.times_ns)

    @property
    def duration_seconds(self) -> float:
        return (int(self.times_ns[-1]) - int(self.times_ns[0])) / NS_PER_SECOND + (
            1 / self.sample_rate_hz
        )

    @property
    def kept_fraction(self) -> float | None:
        """Share of the samples the file should hold that were read (None if unknown)."""
        if self.lost_seconds is None:
            return None
        lost = self.lost_seconds * self.sample_rate_hz
        return self.n_samples / (self.n_samples + lost)


@dataclass(frozen=True)
class DeviceHeader:
    """What a device file's header states beyond what actipy returns."""

    utc_offset_seconds: int | None = None
    range_g: float | None = None


def clipped(xyz: np.ndarray, limit_g: float) -> tuple[np.ndarray, int]:
    """``xyz`` clipped to +-``limit_g`` (a copy only where a value lies beyond), and how
    many samples had a value beyond."""
    beyond = int((np.abs(xyz) > limit_g).any(axis=1).sum())
    return (np.clip(xyz, -limit_g, limit_g) if beyond else xyz), beyond


def _increasing(times: np.ndarray) -> np.ndarray:
    """Mask of samples whose time is later than every earlier sample's."""
    if len(times) < 2:
        return np.ones(len(times), bool)
    keep = np.empty(len(times), bool)
    keep[0] = True
    keep[1:] = times[1:] > np.maximum.accumulate(times)[:-1]
    return keep


def infer_sample_rate(times_ns: np.ndarray) -> float:
    """The nominal rate: one over the mean time step, leaving out steps over twice the
    median (gaps). The mean, unlike the median, is right for times rounded to the
    millisecond (steps of 33 and 34 ms at 30 Hz)."""
    if len(times_ns) < 2:
        raise ValueError("cannot infer a sample rate from fewer than 2 samples")
    steps = np.diff(times_ns[:1_000_000])
    steps = steps[steps <= 2 * np.median(steps)]
    return NS_PER_SECOND / float(steps.mean())


def _backwards_note(times: np.ndarray, dropped: int) -> str:
    """What the rows dropped for a non-increasing time say about the clock."""
    steps = np.diff(times)
    back = steps[steps < 0]
    if len(back) == 0:
        return f"dropped {dropped} rows repeating an earlier time"
    return (
        f"time goes backwards {len(back)} times (by up to {-back.min() / NS_PER_SECOND:.3f} "
        f"s): dropped {dropped} rows whose time did not increase"
    )


def checked_recording(
    path: str,
    device: str,
    times: np.ndarray,
    xyz: np.ndarray,
    options: ReadOptions,
    dropped: dict[str, int] | None = None,
    labels: np.ndarray | None = None,
    rate: float | None = None,
    utc_offset_ns: int | None = None,
    units: str | None = None,
    limit_g: float = PHYSICAL_LIMIT_G,
    resolution_g: float | None = None,
) -> Recording:
    """Drop samples with non-finite values (they become gaps) and then those whose time
    does not increase, convert units, clip to +-``limit_g``, infer the rate: a common
    tail of the readers of self-made formats. ``dropped`` counts rows the reader dropped
    already, by reason; lost seconds are all dropped rows at the rate."""
    dropped = {reason: n for reason, n in (dropped or {}).items() if n}
    notes: list[str] = []
    if DROPPED_MALFORMED in dropped:
        notes.append(f"dropped {dropped[DROPPED_MALFORMED]} malformed lines")
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        dropped[DROPPED_MISSING] = dropped.get(DROPPED_MISSING, 0) + int((~finite).sum())
        times, xyz = times[finite], xyz[finite]
        labels = labels[finite] if labels is not None else None
    if DROPPED_MISSING in dropped:
        notes.append(f"dropped {dropped[DROPPED_MISSING]} rows with missing or non-finite values")
    keep = _increasing(times)
    if not keep.all():
        dropped[DROPPED_NOT_INCREASING] = int((~keep).sum())
        notes.append(_backwards_note(times, dropped[DROPPED_NOT_INCREASING]))
        times, xyz = times[keep], xyz[keep]
        labels = labels[keep] if labels is not None else None
    if len(times) == 0:
        raise RecordingError(f"{path}: no valid samples")
    if (units or options.units) == "m/s2":
        xyz = xyz / np.float32(STANDARD_GRAVITY)
    xyz, n_clipped = clipped(xyz, limit_g)
    if n_clipped:
        notes.append(f"clipped {n_clipped} samples beyond +-{limit_g:g} g")
    rate = options.sample_rate_hz or rate
    if rate is None:
        if len(times) < 2:
            raise RecordingError(f"{path}: a single sample has no sample rate")
        rate = infer_sample_rate(times)
    offset_seconds, clock = utc_offset_and_clock(utc_offset_ns, options.timezone)
    read_errors = sum(dropped.values())
    return Recording(
        source=path,
        device=device,
        times_ns=np.ascontiguousarray(times, dtype=np.int64),
        xyz=np.ascontiguousarray(xyz, dtype=np.float32),
        sample_rate_hz=float(rate),
        read_errors=read_errors,
        lost_seconds=read_errors / float(rate),
        notes=tuple(notes),
        labels=labels,
        utc_offset_seconds=offset_seconds,
        clock=clock,
        clipped_samples=n_clipped,
        dropped_rows=dropped,
        resolution_g=resolution_g,
    )


def regular_times(start_ns: int, n: int, rate: float) -> np.ndarray:
    return start_ns + np.rint(np.arange(n, dtype=np.float64) * (NS_PER_SECOND / rate)).astype(
        np.int64
    )
