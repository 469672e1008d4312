"""The subjects and their days: activity codes, each subject's lasting traits, the
seeded random streams, and a subject-day's schedule (night, daytime bouts, non-wear)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from wearssl.data import corpus

ACTIVITIES = ("sleep", "sedentary", "household", "walking", "running")
SLEEP, SEDENTARY, HOUSEHOLD, WALKING, RUNNING = range(len(ACTIVITIES))
NON_WEAR = -1
DAYTIME_ACTIVITIES = (SEDENTARY, HOUSEHOLD, WALKING)

EPOCH_DAY = date(2024, 1, 1)
SECONDS_PER_DAY = 86_400
MS_PER_DAY = SECONDS_PER_DAY * 1000
WINDOWS_PER_DAY = SECONDS_PER_DAY // corpus.WINDOW_SECONDS

GENERATOR_VERSION = 2
"""Raised whenever a change makes the generator give other signals for the same seed, so
that a corpus made before is not reused or extended as if it were this generator's
(1: household movement as band-limited noise; 2: household hand tasks of strokes)."""
RECORDING_PREFIX = "synthetic "
GENERATOR_MARK = f"{RECORDING_PREFIX}generator={GENERATOR_VERSION} "
"""How the manifest's ``recording`` of a synthetic subject-day starts."""

AX3_STEP_G = 1 / 256
AX3_RANGE_G = 8.0

# Tags that keep one subject's random streams apart (all seeds are 4 integers long, so
# no two streams can collide through numpy's zero-padding of shorter seeds).
_TRAITS_STREAM = 1
_NIGHT_STREAM = 2
DAY_STREAM = 3
LABELLED_STREAM = 4

# Linear interpolation between iid N(0, 1) knots has variance 2/3 on average; this restores 1.
_KNOT_NOISE_GAIN = math.sqrt(1.5)


@dataclass(frozen=True)
class SubjectTraits:
    """What stays the same for one person across days."""

    wrist_rotation: np.ndarray  # (3, 3) how the device sits on this wrist
    desk_gravity: np.ndarray  # (3,) gravity direction with the forearm resting on a desk
    hanging_gravity: np.ndarray  # (3,) gravity direction with the arm hanging while walking
    walk_cadence_hz: float  # steps per second
    run_cadence_hz: float
    walk_amplitude_g: float
    run_amplitude_g: float
    household_amplitude_g: float
    arm_swing_rad: float  # peak arm-swing angle while walking (running swings more)
    gait_harmonics: np.ndarray  # (3,) weights of the step fundamental, 2nd and 3rd harmonic
    gait_phases: np.ndarray  # (3,) their phases
    heel_strike: float  # weight of the sharp-rise, slow-decay impact of each step
    sedentary_motion_g: float  # background movement while sitting
    fidget_threshold: float  # the higher, the rarer fidgets are
    noise_g: float  # sensor noise sd per axis
    sleep_onset_h: float  # usual bedtime, hours after the midnight before it
    sleep_hours: float
    daytime_mix: np.ndarray  # (3,) propensity of sedentary, household and walking bouts
    run_probability: float  # chance of a run on a given day


@dataclass(frozen=True)
class Schedule:
    """Bouts of one activity each; a new bout means a new posture even if the activity repeats."""

    starts: np.ndarray  # (b,) int64 first sample of each bout, ascending, starts[0] == 0
    activities: np.ndarray  # (b,) int8 index into ACTIVITIES, or NON_WEAR
    n_samples: int

    @property
    def stops(self) -> np.ndarray:
        return np.append(self.starts[1:], self.n_samples)

    def per_sample(self) -> np.ndarray:
        """The activity of every sample, ``(n_samples,)`` int8."""
        return np.repeat(self.activities, self.stops - self.starts).astype(np.int8)


# ---------------------------------------------------------------- randomness and geometry


def seeded_rng(seed: int, subject_index: int, stream: int, key: int) -> np.random.Generator:
    return np.random.default_rng([seed, subject_index, stream, key])


def check_seed(seed: int, subject_index: int = 0) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if subject_index < 0:
        raise ValueError(f"subject_index must be >= 0, got {subject_index}")


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def unit_columns(vectors: np.ndarray) -> np.ndarray:
    """Scale each column of a ``(3, n)`` array to unit length, in place."""
    vectors /= np.maximum(np.sqrt(np.einsum("cn,cn->n", vectors, vectors)), 1e-6)
    return vectors


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``angle`` radians (Rodrigues)."""
    x, y, z = unit(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def perpendicular_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to ``direction`` and to each other."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    first = unit(np.cross(direction, helper))
    return first, np.cross(direction, first)


def column(vector: np.ndarray) -> np.ndarray:
    """A 3-vector as a float32 ``(3, 1)`` column, to broadcast against ``(3, n)`` signals."""
    return np.asarray(vector, np.float32)[:, None]


def smooth_noise(
    rng: np.random.Generator, n: int, knot_samples: float, channels: int = 3
) -> np.ndarray:
    """Band-limited noise, ``(channels, n)`` float32 of about unit variance: iid knots every
    ``knot_samples`` samples, linearly interpolated (content up to ~1/(2 knot spacing))."""
    step = max(1, round(knot_samples))
    knots = rng.standard_normal((channels, n // step + 2), dtype=np.float32)
    knots *= np.float32(_KNOT_NOISE_GAIN)
    slopes = np.diff(knots, axis=1)
    fractions = np.arange(step, dtype=np.float32) / np.float32(step)
    noise = knots[:, :-1, None] + slopes[:, :, None] * fractions
    return noise.reshape(channels, -1)[:, :n]


# ---------------------------------------------------------------- subjects and schedules


def subject_traits(subject_index: int, seed: int) -> SubjectTraits:
    """The lasting traits of one synthetic subject."""
    check_seed(seed, subject_index)
    rng = seeded_rng(seed, subject_index, _TRAITS_STREAM, 0)
    harmonics = np.array([1.0, rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.3)])
    # A 2nd harmonic in phase with the fundamental (sawtooth-like) is maximally asymmetric
    # in time; at +-pi/2 the waveform would be its own mirror image.
    phases = np.array([0.0, rng.uniform(-0.5, 0.5), rng.uniform(-math.pi, math.pi)])
    return SubjectTraits(
        wrist_rotation=_rotation(rng.standard_normal(3), rng.uniform(0.0, 0.45)),
        desk_gravity=unit(np.array([0.15, 0.1, 0.98]) + rng.normal(0.0, 0.2, 3)),
        hanging_gravity=unit(np.array([-0.95, 0.1, 0.25]) + rng.normal(0.0, 0.15, 3)),
        walk_cadence_hz=rng.uniform(1.6, 2.1),
        run_cadence_hz=rng.uniform(2.5, 3.0),
        walk_amplitude_g=rng.uniform(0.2, 0.5),
        run_amplitude_g=rng.uniform(0.8, 1.5),
        household_amplitude_g=rng.uniform(0.15, 0.6),
        arm_swing_rad=rng.uniform(0.2, 0.5),
        gait_harmonics=harmonics,
        gait_phases=phases,
        heel_strike=rng.uniform(0.2, 0.6),
        sedentary_motion_g=rng.uniform(0.002, 0.008),
        fidget_threshold=rng.uniform(1.0, 1.8),
        noise_g=rng.uniform(0.003, 0.007),  # AX3-like: still windows stay below 0.01 g std
        sleep_onset_h=rng.uniform(21.5, 24.5),
        sleep_hours=rng.uniform(7.0, 9.0),
        daytime_mix=rng.dirichlet(np.array([0.5, 0.3, 0.2]) * 30),
        run_probability=rng.uniform(0.0, 0.5),
    )


def _night(seed: int, subject_index: int, traits: SubjectTraits, morning: date) -> tuple[int, int]:
    """Sleep onset and wake time, in seconds from the midnight that starts ``morning``
    (onset is negative when it falls on the evening before)."""
    rng = seeded_rng(seed, subject_index, _NIGHT_STREAM, morning.toordinal())
    onset_h = traits.sleep_onset_h - 24 + rng.normal(0.0, 0.5)
    hours = float(np.clip(traits.sleep_hours + rng.normal(0.0, 0.6), 5.5, 10.5))
    return round(onset_h * 3600), round((onset_h + hours) * 3600)


class _Timeline:
    """A day at one-second resolution; each ``put`` overlays a new bout."""

    def __init__(self, seconds: int):
        self.bout = np.zeros(seconds, np.int32)
        self.activity: list[int] = [SEDENTARY]

    def put(self, start: float, stop: float, activity: int) -> None:
        start, stop = max(0, round(start)), min(len(self.bout), round(stop))
        if stop > start:
            self.bout[start:stop] = len(self.activity)
            self.activity.append(activity)

    def schedule(self, sample_rate_hz: float) -> Schedule:
        starts_s = np.concatenate([[0], np.flatnonzero(np.diff(self.bout)) + 1])
        activities = np.asarray(self.activity, np.int8)[self.bout[starts_s]]
        starts = np.rint(starts_s * sample_rate_hz).astype(np.int64)
        return Schedule(starts, activities, round(len(self.bout) * sample_rate_hz))


def _daytime_bout_seconds(rng: np.random.Generator, activity: int) -> float:
    median_min, low_min, high_min = {
        SEDENTARY: (12.0, 1.0, 120.0),
        HOUSEHOLD: (10.0, 1.0, 60.0),
        WALKING: (5.0, 0.5, 45.0),
    }[activity]
    return float(np.clip(median_min * rng.lognormal(0.0, 0.8), low_min, high_min)) * 60


def _put_sleep(timeline: _Timeline, rng: np.random.Generator, start: int, stop: int) -> None:
    """Sleep from ``start`` to ``stop`` s, a new posture every ~40 min (at least 5 min)."""
    t = float(start)
    while t < stop:
        posture_s = max(300.0, rng.exponential(2400.0))
        timeline.put(t, min(t + posture_s, stop), SLEEP)
        t += posture_s


def _put_apart(
    timeline: _Timeline,
    rng: np.random.Generator,
    activity: int,
    seconds: float,
    earliest: float,
    latest: float,
    taken: list[tuple[float, float]],
    tries: int = 10,
    gap: float = 600.0,
) -> None:
    """Put a bout somewhere in ``[earliest, latest)`` at least ``gap`` seconds from the
    ``taken`` intervals (and record it there), or nowhere if ``tries`` random places fail."""
    if latest - seconds <= earliest:
        return
    for _ in range(tries):
        start = rng.uniform(earliest, latest - seconds)
        stop = start + seconds
        if all(stop + gap <= begin or start >= end + gap for begin, end in taken):
            timeline.put(start, stop, activity)
            taken.append((start, stop))
            return


def day_schedule(
    subject_index: int,
    seed: int,
    day: date,
    sample_rate_hz: float,
    traits: SubjectTraits | None = None,
    rng: np.random.Generator | None = None,
) -> Schedule:
    """The schedule of one calendar day (midnight to midnight UTC) of one subject.

    ``rng`` defaults to the subject-day's own stream; pass it to continue drawing from it.
    """
    if traits is None:
        traits = subject_traits(subject_index, seed)
    if rng is None:
        rng = seeded_rng(seed, subject_index, DAY_STREAM, day.toordinal())
    morning_onset, wake = _night(seed, subject_index, traits, day)
    evening_onset = _night(seed, subject_index, traits, day + timedelta(days=1))[0]
    evening_onset += SECONDS_PER_DAY
    awake_from, awake_to = max(wake, 0), min(evening_onset, SECONDS_PER_DAY)

    timeline = _Timeline(SECONDS_PER_DAY)
    t = 0.0
    while t < SECONDS_PER_DAY:
        activity = DAYTIME_ACTIVITIES[rng.choice(len(DAYTIME_ACTIVITIES), p=traits.daytime_mix)]
        seconds = _daytime_bout_seconds(rng, activity)
        timeline.put(t, t + seconds, activity)
        t += seconds
    taken: list[tuple[float, float]] = []
    for _ in range(rng.choice(3, p=[0.4, 0.4, 0.2])):
        _put_apart(timeline, rng, NON_WEAR, rng.uniform(20, 120) * 60, awake_from, awake_to, taken)
    if rng.random() < traits.run_probability:
        seconds = rng.uniform(15, 45) * 60
        _put_apart(timeline, rng, RUNNING, seconds, awake_from + 3600, awake_to - 1800, taken)
    if morning_onset > 0:
        timeline.put(0, morning_onset, SEDENTARY)
    _put_sleep(timeline, rng, max(morning_onset, 0), wake)
    _put_sleep(timeline, rng, evening_onset, SECONDS_PER_DAY)
    return timeline.schedule(sample_rate_hz)


# Bouts are built channel-major, ``(3, n)`` float32: per-channel rows keep every operation
# contiguous and the mounting rotation a single small matrix product.
