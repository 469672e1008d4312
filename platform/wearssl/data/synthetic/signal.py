"""The signal of a schedule: gait, hand tasks, sedentary and still postures, bouts and
transitions, sensor noise and quantisation, in g with gravity."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
from scipy import special

from wearssl.data.synthetic.subjects import (
    AX3_RANGE_G,
    AX3_STEP_G,
    DAY_STREAM,
    HOUSEHOLD,
    RUNNING,
    SEDENTARY,
    SLEEP,
    WALKING,
    Schedule,
    SubjectTraits,
    column,
    day_schedule,
    perpendicular_basis,
    seeded_rng,
    smooth_noise,
    unit,
    unit_columns,
)

_HEEL_STRIKE_DECAY = 6.0
_HEEL_STRIKE_MEAN = (1 - math.exp(-_HEEL_STRIKE_DECAY)) / _HEEL_STRIKE_DECAY


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
        base = unit(base + np.array([0.9, 0.0, 0.6]))
    base = unit(base + rng.normal(0.0, 0.1, 3))
    forward, sideways = perpendicular_basis(base)

    speed = cadence * (1 + 0.03 * smooth_noise(rng, n, 5 * fs, 1)[0].astype(np.float64))
    phase = 2 * np.pi * np.cumsum(speed) / fs + rng.uniform(0, 4 * np.pi)
    # one stride (two steps) is 4 pi of step phase: wrap there to keep float32 precise
    phase = (phase % (4 * np.pi)).astype(np.float32)
    harmonics = _harmonic_series(phase, traits.gait_harmonics, traits.gait_phases)
    impact = _jolt((phase / np.float32(2 * np.pi)) % np.float32(1.0))
    vertical = np.float32(amplitude) * (harmonics + np.float32(traits.heel_strike) * impact)

    stride_phase = phase / np.float32(2)
    angle = np.float32(swing) * np.sin(stride_phase)
    gravity = column(base) * np.cos(angle) + column(forward) * np.sin(angle)
    forward_g = np.float32(0.4 * amplitude) * np.sin(phase + np.float32(1.0))
    forward_g += np.float32(0.2 * swing) * np.cos(stride_phase)
    sideways_g = np.float32(0.2 * amplitude) * np.sin(stride_phase + np.float32(0.5))
    linear = vertical * gravity + column(forward) * forward_g + column(sideways) * sideways_g
    return gravity, linear


def _hand_task(
    n: int, fs: float, rng: np.random.Generator, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray]:
    """Gravity and linear acceleration of one hand task (wiping, scrubbing, stirring,
    chopping): strokes at a steady rate of its own, each ending in a jolt along the
    forearm's vertical, with a smaller sideways component out of phase (strokes trace
    loops), and the forearm near the subject's working posture, drifting slowly."""
    rate = rng.uniform(0.7, 2.5) * (
        1 + 0.04 * smooth_noise(rng, n, 4 * fs, 1)[0].astype(np.float64)
    )
    phase = (2 * np.pi * np.cumsum(rate) / fs + rng.uniform(0, 2 * np.pi)) % (2 * np.pi)
    phase = phase.astype(np.float32)
    weights = np.array([1.0, rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)])
    shifts = np.array([0.0, rng.uniform(-0.5, 0.5), rng.uniform(-math.pi, math.pi)])
    wave = _harmonic_series(phase, weights, shifts)
    wave += np.float32(rng.uniform(0.3, 0.9)) * _jolt(phase / np.float32(2 * np.pi))
    base = unit(traits.desk_gravity + rng.normal(0.0, 0.15, 3))
    gravity = unit_columns(column(base) + np.float32(0.1) * smooth_noise(rng, n, 5 * fs))
    sideways = unit(np.cross(base, rng.standard_normal(3)))
    loop = np.float32(0.3) * np.sin(phase + np.float32(rng.uniform(0.5, 2.0)))
    amplitude = np.float32(traits.household_amplitude_g * rng.uniform(0.6, 1.4))
    return gravity, amplitude * (wave * gravity + column(sideways) * loop)


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
            task_gravity[:, :k] = unit_columns(
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
    base = unit(traits.desk_gravity + rng.normal(0.0, 0.25, 3))
    gravity = unit_columns(column(base) + np.float32(0.06) * smooth_noise(rng, n, 20 * fs))
    # fidgets: the excursions of a slow random process above a subject-specific threshold
    # give sporadic bursts of a few seconds with random strength
    fidgets = smooth_noise(rng, n, 2 * fs, 1)[0]
    fidgets -= np.float32(traits.fidget_threshold)
    np.maximum(fidgets, 0, out=fidgets)
    envelope = np.float32(0.25) * fidgets + np.float32(traits.sedentary_motion_g)
    return gravity, envelope * smooth_noise(rng, n, 0.2 * fs)


def _still(
    n: int, fs: float, rng: np.random.Generator, direction: np.ndarray, wander: float
) -> np.ndarray:
    """Gravity of a still device: a fixed direction with an optional very slow drift."""
    if wander == 0:
        return np.repeat(column(direction), n, axis=1)
    drift = np.float32(wander) * smooth_noise(rng, n, 120 * fs)
    return unit_columns(column(direction) + drift)


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
        return _still(n, fs, rng, unit(rng.standard_normal(3)), 0.01), None
    # non-wear: the watch lies face up or face down on a table
    table = unit(np.array([0.0, 0.0, rng.choice([-1.0, 1.0])]) + rng.normal(0.0, 0.03, 3))
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
    gravity[:, :m] = unit_columns(column(previous) * (1 - ramp) + gravity[:, :m] * ramp)
    shape = np.hanning(m).astype(np.float32) * np.float32(rng.uniform(0.05, 0.25))
    return shape * smooth_noise(rng, m, 0.2 * fs)


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


def synth_day(
    subject_index: int, seed: int, day: date, sample_rate_hz: float, traits: SubjectTraits
) -> tuple[np.ndarray, np.ndarray]:
    """Acceleration ``(n, 3)`` and activity ``(n,)`` of one calendar day."""
    rng = seeded_rng(seed, subject_index, DAY_STREAM, day.toordinal())
    schedule = day_schedule(subject_index, seed, day, sample_rate_hz, traits, rng)
    return synth_signal(schedule, sample_rate_hz, rng, traits), schedule.per_sample()
