"""Synthetic free-living wrist accelerometry: tri-axial acceleration in g, with gravity.

The generator stands in for real recordings wherever those are absent (tests, the
quickstart, benchmarks) and gives data with a known activity schedule (prediction tests,
synthetic raw device files). Each subject has lasting traits (how the watch sits on the
wrist, gait cadence and waveform, movement amplitudes, sensor noise, bedtime); each
subject-day has its own schedule: a night's sleep with rare posture changes, daytime
bouts of sedentary, household and walking activity, sometimes a run, and 0-2 non-wear
periods with the watch lying still on a table.

Everything is deterministic: a subject's traits come from a generator seeded with
(seed, subject), a calendar day's schedule and signal from one seeded with
(seed, subject, day), and the night between two days from one seeded with
(seed, subject, morning), so any subject-day can be made on its own, in any process,
and two consecutive days agree on the timing of the night between them (the sleeping
posture may change at midnight).

Gait cycles are deliberately time-asymmetric (sharp heel-strike rise with a slower
decay, and a 2nd harmonic whose phase keeps the waveform from being its own mirror
image), so a reversed walking window is statistically distinguishable, as in real data:
the arrow-of-time pretext task depends on it. Household movement is hand tasks of steady
strokes with the same kind of jolt (see ``_household``).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special

from wearssl.config.vocabulary import WINDOW_LENGTHS
from wearssl.data import corpus
from wearssl.data.corpus import CorpusInfo, WindowFormat
from wearssl.data.labelled_set import LabelledSet

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
_DAY_STREAM = 3
_LABELLED_STREAM = 4

# Linear interpolation between iid N(0, 1) knots has variance 2/3 on average; this restores 1.
_KNOT_NOISE_GAIN = math.sqrt(1.5)
_HEEL_STRIKE_DECAY = 6.0
_HEEL_STRIKE_MEAN = (1 - math.exp(-_HEEL_STRIKE_DECAY)) / _HEEL_STRIKE_DECAY


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


@dataclass(frozen=True)
class SyntheticRecording:
    times_ms: np.ndarray  # (n,) int64 ms since the Unix epoch, UTC
    xyz: np.ndarray  # (n, 3) float32 acceleration in g
    activity: np.ndarray  # (n,) int8 index into ACTIVITIES, NON_WEAR (-1) when off the wrist
    sample_rate_hz: float


# ---------------------------------------------------------------- randomness and geometry


def _rng(seed: int, subject_index: int, stream: int, key: int) -> np.random.Generator:
    return np.random.default_rng([seed, subject_index, stream, key])


def _check_seed(seed: int, subject_index: int = 0) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if subject_index < 0:
        raise ValueError(f"subject_index must be >= 0, got {subject_index}")


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _unit_columns(vectors: np.ndarray) -> np.ndarray:
    """Scale each column of a ``(3, n)`` array to unit length, in place."""
    vectors /= np.maximum(np.sqrt(np.einsum("cn,cn->n", vectors, vectors)), 1e-6)
    return vectors


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``angle`` radians (Rodrigues)."""
    x, y, z = _unit(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _perpendicular_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to ``direction`` and to each other."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    first = _unit(np.cross(direction, helper))
    return first, np.cross(direction, first)


def _column(vector: np.ndarray) -> np.ndarray:
    """A 3-vector as a float32 ``(3, 1)`` column, to broadcast against ``(3, n)`` signals."""
    return np.asarray(vector, np.float32)[:, None]


def _smooth_noise(
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
    _check_seed(seed, subject_index)
    rng = _rng(seed, subject_index, _TRAITS_STREAM, 0)
    harmonics = np.array([1.0, rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.3)])
    # A 2nd harmonic in phase with the fundamental (sawtooth-like) is maximally asymmetric
    # in time; at +-pi/2 the waveform would be its own mirror image.
    phases = np.array([0.0, rng.uniform(-0.5, 0.5), rng.uniform(-math.pi, math.pi)])
    return SubjectTraits(
        wrist_rotation=_rotation(rng.standard_normal(3), rng.uniform(0.0, 0.45)),
        desk_gravity=_unit(np.array([0.15, 0.1, 0.98]) + rng.normal(0.0, 0.2, 3)),
        hanging_gravity=_unit(np.array([-0.95, 0.1, 0.25]) + rng.normal(0.0, 0.15, 3)),
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
    rng = _rng(seed, subject_index, _NIGHT_STREAM, morning.toordinal())
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
        rng = _rng(seed, subject_index, _DAY_STREAM, day.toordinal())
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


# ---------------------------------------------------------------- signals
# Bouts are built channel-major, ``(3, n)`` float32: per-channel rows keep every operation
# contiguous and the mounting rotation a single small matrix product.


def _harmonic_series(phase: np.ndarray, weights: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """A periodic waveform of ``phase`` (radians): harmonics 1, 2, ... with ``weights`` and
    phase ``shifts``, scaled so the weights sum to one."""
    return sum(
        np.float32(weight) * np.sin(k * phase + np.float32(shift))
        for k, (weight, shift) in enumerate(zip(weights, shifts, strict=True), start=1)
    ) / np.float32(np.sum(weights))


def _jolt(cycle_fraction: np.ndarray) -> np.ndarray:
    """An impact once per cycle (``cycle_fraction`` in [0, 1)): a rise at once and an
    exponential settling over the cycle, zero-mean over the cycle. Its time asymmetry is
    what lets the arrow-of-time task tell a reversed window."""
    jolt = np.exp(np.float32(-_HEEL_STRIKE_DECAY) * cycle_fraction)
    jolt -= np.float32(_HEEL_STRIKE_MEAN)
    return jolt


def _gait(
    n: int,
    fs: float,
    rng: np.random.Generator,
    traits: SubjectTraits,
    running: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Gravity and linear acceleration of a walking or running bout.

    The step phase advances at a slowly varying cadence. Vertical acceleration (along
    gravity) is a harmonic series plus a heel-strike impact that rises at once and decays
    over the step; the arm swings at half the step rate, rotating gravity in the sagittal
    plane, and adds forward and sideways components.
    """
    cadence = traits.run_cadence_hz if running else traits.walk_cadence_hz
    amplitude = (traits.run_amplitude_g if running else traits.walk_amplitude_g) * rng.uniform(
        0.85, 1.15
    )
    swing = traits.arm_swing_rad * (1.5 if running else 1.0)
    base = traits.hanging_gravity
    if running:  # elbow bent: forearm nearer horizontal
        base = _unit(base + np.array([0.9, 0.0, 0.6]))
    base = _unit(base + rng.normal(0.0, 0.1, 3))
    forward, sideways = _perpendicular_basis(base)

    speed = cadence * (1 + 0.03 * _smooth_noise(rng, n, 5 * fs, 1)[0].astype(np.float64))
    phase = 2 * np.pi * np.cumsum(speed) / fs + rng.uniform(0, 4 * np.pi)
    # one stride (two steps) is 4 pi of step phase: wrap there to keep float32 precise
    phase = (phase % (4 * np.pi)).astype(np.float32)
    harmonics = _harmonic_series(phase, traits.gait_harmonics, traits.gait_phases)
    impact = _jolt((phase / np.float32(2 * np.pi)) % np.float32(1.0))
    vertical = np.float32(amplitude) * (harmonics + np.float32(traits.heel_strike) * impact)

    stride_phase = phase / np.float32(2)
    angle = np.float32(swing) * np.sin(stride_phase)
    gravity = _column(base) * np.cos(angle) + _column(forward) * np.sin(angle)
    forward_g = np.float32(0.4 * amplitude) * np.sin(phase + np.float32(1.0))
    forward_g += np.float32(0.2 * swing) * np.cos(stride_phase)
    sideways_g = np.float32(0.2 * amplitude) * np.sin(stride_phase + np.float32(0.5))
    linear = vertical * gravity + _column(forward) * forward_g + _column(sideways) * sideways_g
    return gravity, linear


def _hand_task(
    n: int, fs: float, rng: np.random.Generator, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray]:
    """Gravity and linear acceleration of one hand task (wiping, scrubbing, stirring,
    chopping): strokes at a steady rate of its own, each ending in a jolt along the
    forearm's vertical, with a smaller sideways component out of phase (strokes trace
    loops), and the forearm near the subject's working posture, drifting slowly."""
    rate = rng.uniform(0.7, 2.5) * (
        1 + 0.04 * _smooth_noise(rng, n, 4 * fs, 1)[0].astype(np.float64)
    )
    phase = (2 * np.pi * np.cumsum(rate) / fs + rng.uniform(0, 2 * np.pi)) % (2 * np.pi)
    phase = phase.astype(np.float32)
    weights = np.array([1.0, rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)])
    shifts = np.array([0.0, rng.uniform(-0.5, 0.5), rng.uniform(-math.pi, math.pi)])
    wave = _harmonic_series(phase, weights, shifts)
    wave += np.float32(rng.uniform(0.3, 0.9)) * _jolt(phase / np.float32(2 * np.pi))
    base = _unit(traits.desk_gravity + rng.normal(0.0, 0.15, 3))
    gravity = _unit_columns(_column(base) + np.float32(0.1) * _smooth_noise(rng, n, 5 * fs))
    sideways = _unit(np.cross(base, rng.standard_normal(3)))
    loop = np.float32(0.3) * np.sin(phase + np.float32(rng.uniform(0.5, 2.0)))
    amplitude = np.float32(traits.household_amplitude_g * rng.uniform(0.6, 1.4))
    return gravity, amplitude * (wave * gravity + _column(sideways) * loop)


def _household(
    n: int, fs: float, rng: np.random.Generator, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray]:
    """Hand tasks one after another, ~30 s each (log-normal), the strokes fading out and
    in over a second between tasks while the forearm moves to the next posture.

    Steady stroke rhythms with a sharp-onset, slow-settling jolt give household windows
    the cues real hand movements give the pretext tasks (a direction of time, a rhythm a
    permutation breaks and a warp bends); band-limited noise, the earlier model, carried
    none, and held pre-training near chance on a free-living mix of mostly household
    windows (docs/benchmarks.md)."""
    gravity = np.empty((3, n), np.float32)
    linear = np.empty((3, n), np.float32)
    fade = max(2, round(fs))
    start = 0
    while start < n:
        m = min(n - start, max(2 * fade, round(30 * fs * rng.lognormal(0.0, 0.5))))
        task_gravity, task_linear = _hand_task(m, fs, rng, traits)
        k = min(fade, m // 2)
        ramp = np.hanning(2 * k)[:k].astype(np.float32)
        task_linear[:, :k] *= ramp
        task_linear[:, m - k :] *= ramp[::-1]
        if start > 0:
            task_gravity[:, :k] = _unit_columns(
                gravity[:, start - 1 : start] * (1 - ramp) + task_gravity[:, :k] * ramp
            )
        gravity[:, start : start + m] = task_gravity
        linear[:, start : start + m] = task_linear
        start += m
    return gravity, linear


def _sedentary(
    n: int, fs: float, rng: np.random.Generator, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray]:
    """Forearm mostly resting, slow drift, small movements and occasional fidgets."""
    base = _unit(traits.desk_gravity + rng.normal(0.0, 0.25, 3))
    gravity = _unit_columns(_column(base) + np.float32(0.06) * _smooth_noise(rng, n, 20 * fs))
    # fidgets: the excursions of a slow random process above a subject-specific threshold
    # give sporadic bursts of a few seconds with random strength
    fidgets = _smooth_noise(rng, n, 2 * fs, 1)[0]
    fidgets -= np.float32(traits.fidget_threshold)
    np.maximum(fidgets, 0, out=fidgets)
    envelope = np.float32(0.25) * fidgets + np.float32(traits.sedentary_motion_g)
    return gravity, envelope * _smooth_noise(rng, n, 0.2 * fs)


def _still(
    n: int, fs: float, rng: np.random.Generator, direction: np.ndarray, wander: float
) -> np.ndarray:
    """Gravity of a still device: a fixed direction with an optional very slow drift."""
    if wander == 0:
        return np.repeat(_column(direction), n, axis=1)
    drift = np.float32(wander) * _smooth_noise(rng, n, 120 * fs)
    return _unit_columns(_column(direction) + drift)


def _bout(
    activity: int, n: int, fs: float, rng: np.random.Generator, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gravity ``(3, n)`` (unit columns) and linear acceleration (None when still) of a bout."""
    if activity in (WALKING, RUNNING):
        return _gait(n, fs, rng, traits, running=activity == RUNNING)
    if activity == HOUSEHOLD:
        return _household(n, fs, rng, traits)
    if activity == SEDENTARY:
        return _sedentary(n, fs, rng, traits)
    if activity == SLEEP:
        return _still(n, fs, rng, _unit(rng.standard_normal(3)), 0.01), None
    # non-wear: the watch lies face up or face down on a table
    table = _unit(np.array([0.0, 0.0, rng.choice([-1.0, 1.0])]) + rng.normal(0.0, 0.03, 3))
    return _still(n, fs, rng, table, 0.0), None


def _transition(
    gravity: np.ndarray,
    previous: np.ndarray,
    activity: int,
    fs: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Blend the start of a bout from the previous orientation (in place) and return the
    movement burst of the posture change (turning over in bed takes longer)."""
    seconds = rng.uniform(2.0, 6.0) if activity == SLEEP else rng.uniform(0.5, 2.0)
    m = min(gravity.shape[1], max(2, round(seconds * fs)))
    ramp = np.linspace(0.0, 1.0, m, dtype=np.float32)
    gravity[:, :m] = _unit_columns(_column(previous) * (1 - ramp) + gravity[:, :m] * ramp)
    shape = np.hanning(m).astype(np.float32) * np.float32(rng.uniform(0.05, 0.25))
    return shape * _smooth_noise(rng, m, 0.2 * fs)


def _noise_levels(noise_g: float) -> np.ndarray:
    """256 equiprobable Gaussian noise levels (quantiles of N(0, noise_g)): indexing them
    with random bytes is several times cheaper than drawing normals, and after the AX3's
    1/256 g quantisation the two are indistinguishable."""
    quantiles = (np.arange(256) + 0.5) / 256
    return (noise_g * special.ndtri(quantiles)).astype(np.float32)


def _record(
    segment: np.ndarray, rng: np.random.Generator, traits: SubjectTraits, out: np.ndarray
) -> None:
    """What the device records of a ``(3, n)`` segment, written to ``out``: the wrist's
    mounting rotation, sensor noise, the +-8 g range and the AX3's 1/256 g resolution."""
    out[...] = traits.wrist_rotation.astype(np.float32) @ segment
    noise_index = rng.integers(0, 256, out.shape, dtype=np.uint8)
    out += np.take(_noise_levels(traits.noise_g), noise_index)
    np.clip(out, -AX3_RANGE_G, AX3_RANGE_G, out=out)
    out *= np.float32(1 / AX3_STEP_G)
    np.rint(out, out=out)
    out *= np.float32(AX3_STEP_G)


def _signal_channels(
    schedule: Schedule, sample_rate_hz: float, rng: np.random.Generator, traits: SubjectTraits
) -> np.ndarray:
    """The recorded acceleration of a schedule, channel-major ``(3, n)`` float32 in g."""
    channels = np.empty((3, schedule.n_samples), np.float32)
    previous = traits.desk_gravity
    for start, stop, activity in zip(
        schedule.starts, schedule.stops, schedule.activities, strict=True
    ):
        gravity, linear = _bout(int(activity), int(stop - start), sample_rate_hz, rng, traits)
        burst = _transition(gravity, previous, int(activity), sample_rate_hz, rng)
        previous = gravity[:, -1].astype(np.float64)
        segment = gravity if linear is None else gravity + linear
        segment[:, : burst.shape[1]] += burst
        _record(segment, rng, traits, channels[:, start:stop])
    return channels


def synth_signal(
    schedule: Schedule,
    sample_rate_hz: float,
    rng: np.random.Generator,
    subject_traits: SubjectTraits,
) -> np.ndarray:
    """The recorded acceleration ``(n, 3)`` float32 in g for a schedule (a view of a
    channel-major array)."""
    return _signal_channels(schedule, sample_rate_hz, rng, subject_traits).T


def _synth_day(
    subject_index: int, seed: int, day: date, sample_rate_hz: float, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray]:
    """Acceleration ``(n, 3)`` and activity ``(n,)`` of one calendar day."""
    rng = _rng(seed, subject_index, _DAY_STREAM, day.toordinal())
    schedule = day_schedule(subject_index, seed, day, sample_rate_hz, traits, rng)
    return synth_signal(schedule, sample_rate_hz, rng, traits), schedule.per_sample()


# ---------------------------------------------------------------- public entry points


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
    _check_seed(seed, subject_index)
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
        day_xyz, day_activity = _synth_day(subject_index, seed, day, sample_rate_hz, traits)
        take = min(samples_per_day - offset, n - filled)
        xyz[filled : filled + take] = day_xyz[offset : offset + take]
        activity[filled : filled + take] = day_activity[offset : offset + take]
        filled += take
        offset = 0
        day += timedelta(days=1)
    start_ms = round(moment.timestamp() * 1000)
    times_ms = start_ms + np.rint(np.arange(n) * 1000.0 / sample_rate_hz).astype(np.int64)
    return SyntheticRecording(times_ms, xyz, activity, sample_rate_hz)


def _to_windows(xyz: np.ndarray, window_samples: int) -> np.ndarray:
    """``(n, 3)`` samples -> ``(n / L, 3, L)`` channel-major windows."""
    return np.ascontiguousarray(xyz.reshape(-1, window_samples, 3).transpose(0, 2, 1))


def synth_subject_day(
    subject_index: int,
    day_index: int,
    seed: int,
    window_format: WindowFormat = WindowFormat.FLOAT16,
    version: int = corpus.CORPUS_VERSION,
) -> tuple[str, str, pa.Table]:
    """One subject-day (day 0 = 2024-01-01) as a corpus table of 8,640 10-s windows at 30 Hz,
    in the layout of corpus ``version``.

    A window's wear flag is False when most of its samples are non-wear.
    """
    _check_seed(seed, subject_index)
    if day_index < 0:
        raise ValueError(f"day_index must be >= 0, got {day_index}")
    day = EPOCH_DAY + timedelta(days=day_index)
    traits = subject_traits(subject_index, seed)
    xyz, activity = _synth_day(subject_index, seed, day, corpus.SAMPLE_RATE_HZ, traits)
    non_wear_share = (activity.reshape(WINDOWS_PER_DAY, -1) == NON_WEAR).mean(axis=1)
    midnight_ms = (day - date(1970, 1, 1)).days * MS_PER_DAY
    times_ms = midnight_ms + np.arange(WINDOWS_PER_DAY, dtype=np.int64) * (
        corpus.WINDOW_SECONDS * 1000
    )
    subject = synthetic_subject_id(subject_index, seed)
    table = corpus.day_table(
        subject,
        day.isoformat(),
        times_ms,
        _to_windows(xyz, corpus.WINDOW_SAMPLES),
        non_wear_share <= 0.5,
        window_format,
        version,
    )
    return subject, day.isoformat(), table


def _write_subject_day(
    out: str, subject_index: int, day_index: int, seed: int, info: CorpusInfo
) -> dict:
    """Make and write one subject-day; returns its manifest entry (runs in a worker process)."""
    _, _, table = synth_subject_day(
        subject_index, day_index, seed, WindowFormat(info.window_format), info.version
    )
    recording = f"{GENERATOR_MARK}seed={seed} subject={subject_index}"
    return corpus.write_day(out, table, recording)


def write_synthetic_corpus(
    out: str,
    n_subjects: int,
    n_days: int,
    seed: int = 0,
    window_format: WindowFormat = WindowFormat.FLOAT16,
    workers: int | None = None,
    progress: bool = True,
) -> pa.Table:
    """Write a synthetic corpus of ``n_subjects`` x ``n_days`` subject-days to ``out``.

    Subject-days are made in parallel worker processes (``workers`` defaults to the CPU
    count; 1 makes them in this process). Entries are merged into an existing manifest at
    ``out`` (same subject-day replaced), so the call can extend a corpus of the same format;
    new days are then written in the layout of the version that corpus records.
    Returns the manifest.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    if n_days < 1:
        raise ValueError(f"n_days must be >= 1, got {n_days}")
    _check_seed(seed)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    info = corpus.info_to_write(out, CorpusInfo(window_format=WindowFormat(window_format).value))
    check_generator(out)

    tasks = [(s, d) for s in range(n_subjects) for d in range(n_days)]
    report_every = max(1, len(tasks) // 10)
    began = time.perf_counter()
    entries: list[dict] = []

    def done(entry: dict) -> None:
        entries.append(entry)
        if progress and (len(entries) % report_every == 0 or len(entries) == len(tasks)):
            rate = len(entries) / (time.perf_counter() - began)
            print(f"synth: {len(entries)}/{len(tasks)} subject-days ({rate:.2f}/s)", flush=True)

    if workers == 1 or len(tasks) == 1:
        for s, d in tasks:
            done(_write_subject_day(out, s, d, seed, info))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            futures = [pool.submit(_write_subject_day, out, s, d, seed, info) for s, d in tasks]
            for future in as_completed(futures):
                done(future.result())
    manifest = corpus.add_to_manifest(out, entries)
    corpus.write_info(out, info)
    return manifest


def check_generator(out: str) -> bool:
    """Whether ``out`` holds a corpus (False: none there yet); one holding synthetic days
    of another generator version is refused: they differ from what this generator makes
    for the same seed, so neither reusing nor extending it would give what its config
    describes."""
    try:
        manifest = corpus.read_manifest(out)
    except FileNotFoundError:
        return False
    for recording in pc.unique(manifest["recording"]).to_pylist():
        if recording.startswith(RECORDING_PREFIX) and not recording.startswith(GENERATOR_MARK):
            raise ValueError(
                f"{out} holds synthetic days of another generator ({recording!r}); this "
                f"wearssl makes generator version {GENERATOR_VERSION}: delete the folder to "
                "make the corpus anew, or write to another folder"
            )
    return True


def ensure_synthetic_corpus(
    out: str, n_subjects: int, n_days: int, seed: int, progress: bool = True
) -> str:
    """The synthetic corpus at ``out``, written unless one of this generator is there
    already (its size and seed are then the ones it was made with); returns ``out``."""
    if not check_generator(out):
        if progress:
            print(f"writing a synthetic corpus ({n_subjects} subjects x {n_days} days) to {out}")
        write_synthetic_corpus(out, n_subjects, n_days, seed, progress=progress)
    return out


def manifest_summary(manifest: pa.Table) -> dict[str, int]:
    """Counts that describe a corpus manifest: subjects, subject-days, windows, splits."""
    subjects = pc.unique(manifest["subject"]).to_pylist()
    test = {s for s in subjects if corpus.subject_split(s) == "test"}
    return {
        "subjects": len(subjects),
        "subject_days": manifest.num_rows,
        "windows": int(pc.sum(manifest["n_windows"]).as_py() or 0),
        "wear_windows": int(pc.sum(manifest["n_wear"]).as_py() or 0),
        "train_subjects": len(subjects) - len(test),
        "test_subjects": len(test),
    }


def _labelled_schedule(
    rng: np.random.Generator, windows_per_activity: int, window_samples: int
) -> Schedule:
    """Each activity in 1-3 bouts of whole windows, bouts in random order."""
    bouts: list[tuple[int, int]] = []
    for activity in range(len(ACTIVITIES)):
        parts = min(windows_per_activity, int(rng.integers(1, 4)))
        cuts = np.sort(rng.choice(np.arange(1, windows_per_activity), parts - 1, replace=False))
        sizes = np.diff(np.concatenate([[0], cuts, [windows_per_activity]]))
        bouts += [(activity, int(size)) for size in sizes]
    order = rng.permutation(len(bouts))
    activities = np.array([bouts[i][0] for i in order], np.int8)
    sizes = np.array([bouts[i][1] for i in order], np.int64) * window_samples
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return Schedule(starts, activities, int(sizes.sum()))


def synthetic_labelled_set(
    n_subjects: int,
    seed: int = 0,
    window_seconds: int = 10,
    minutes_per_activity: float = 5.0,
    name: str = "synthetic",
) -> LabelledSet:
    """A labelled set of every activity (no non-wear) from the same generator.

    Each subject contributes ``minutes_per_activity`` of each activity, split into a few
    bouts with their own postures; subjects differ by their traits, so subject-wise
    evaluation measures generalisation to new people.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    if window_seconds not in WINDOW_LENGTHS:
        raise ValueError(f"window_seconds must be one of {WINDOW_LENGTHS}, got {window_seconds}")
    if not minutes_per_activity > 0:
        raise ValueError(f"minutes_per_activity must be > 0, got {minutes_per_activity}")
    _check_seed(seed)
    fs = corpus.SAMPLE_RATE_HZ
    window_samples = window_seconds * fs
    windows_per_activity = max(1, math.ceil(minutes_per_activity * 60 / window_seconds))
    epoch_ms = (EPOCH_DAY - date(1970, 1, 1)).days * MS_PER_DAY

    windows, labels, subjects, times = [], [], [], []
    for subject_index in range(n_subjects):
        traits = subject_traits(subject_index, seed)
        rng = _rng(seed, subject_index, _LABELLED_STREAM, window_seconds)
        schedule = _labelled_schedule(rng, windows_per_activity, window_samples)
        xyz = synth_signal(schedule, fs, rng, traits)
        subject_windows = _to_windows(xyz, window_samples)
        n = len(subject_windows)
        windows.append(subject_windows)
        labels.append(schedule.per_sample()[::window_samples].astype(np.int64))
        subjects.append(np.full(n, synthetic_subject_id(subject_index, seed), dtype=object))
        times.append(epoch_ms + np.arange(n, dtype=np.int64) * window_seconds * 1000)
    return LabelledSet(
        name=name,
        window_seconds=window_seconds,
        label_names=list(ACTIVITIES),
        windows=np.concatenate(windows),
        labels=np.concatenate(labels),
        subjects=np.concatenate(subjects),
        times_ms=np.concatenate(times),
    )
