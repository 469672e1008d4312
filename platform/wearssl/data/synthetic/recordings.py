"""Continuous synthetic recordings of a subject, and the pseudonym of a synthetic subject."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from wearssl.data.synthetic.signal import synth_day
from wearssl.data.synthetic.subjects import SECONDS_PER_DAY, check_seed, subject_traits


@dataclass(frozen=True)
class SyntheticRecording:
    times_ms: np.ndarray  # (n,) int64 ms since the Unix epoch, UTC
    xyz: np.ndarray  # (n, 3) float32 acceleration in g
    activity: np.ndarray  # (n,) int8 index into ACTIVITIES, NON_WEAR (-1) when off the wrist
    sample_rate_hz: float


def synthetic_subject_id(subject_index: int, seed: int) -> str:
    """A pseudonym-shaped id that needs no secret (synthetic subjects have no real identity)."""
    digest = hashlib.sha256(f"synthetic-{seed}-{subject_index}".encode()).hexdigest()
    return "p" + digest[:16]


def _parse_start(start: str) -> datetime:
    try:
        moment = datetime.fromisoformat(start)
    except ValueError as error:
        raise ValueError(f"start {start!r} is not an ISO date-time") from error
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def synth_recording(
    subject_index: int,
    seed: int,
    days: float,
    sample_rate_hz: float = 30.0,
    start: str = "2024-01-01T00:00:00",
) -> SyntheticRecording:
    """A continuous recording of ``days`` days from ``start`` (UTC unless it says otherwise).

    Calendar days are generated independently, so the same subject-day has the same
    schedule whatever the recording's start or rate (the random detail of the signal
    differs with the rate).
    """
    check_seed(seed, subject_index)
    if not days > 0:
        raise ValueError(f"days must be > 0, got {days}")
    samples_per_day = SECONDS_PER_DAY * sample_rate_hz
    if not sample_rate_hz > 0 or samples_per_day != round(samples_per_day):
        raise ValueError(
            f"sample_rate_hz must be > 0 and give a whole number of samples a day, "
            f"got {sample_rate_hz}"
        )
    samples_per_day = round(samples_per_day)
    moment = _parse_start(start)
    midnight = datetime.combine(moment.date(), datetime.min.time(), timezone.utc)
    offset = round((moment - midnight).total_seconds() * sample_rate_hz)
    n = round(days * samples_per_day)
    traits = subject_traits(subject_index, seed)

    xyz = np.empty((n, 3), np.float32)
    activity = np.empty(n, np.int8)
    filled = 0
    day = moment.date()
    while filled < n:
        day_xyz, day_activity = synth_day(subject_index, seed, day, sample_rate_hz, traits)
        take = min(samples_per_day - offset, n - filled)
        xyz[filled : filled + take] = day_xyz[offset : offset + take]
        activity[filled : filled + take] = day_activity[offset : offset + take]
        filled += take
        offset = 0
        day += timedelta(days=1)
    start_ms = round(moment.timestamp() * 1000)
    times_ms = start_ms + np.rint(np.arange(n) * 1000.0 / sample_rate_hz).astype(np.int64)
    return SyntheticRecording(times_ms, xyz, activity, sample_rate_hz)
