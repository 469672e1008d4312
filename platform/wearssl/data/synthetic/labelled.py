"""Synthetic labelled sets: every activity of each subject, in bouts of whole windows."""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from wearssl.config.vocabulary import WINDOW_LENGTHS
from wearssl.data import corpus
from wearssl.data.labelled_set import LabelledSet
from wearssl.data.synthetic.corpus_writer import to_windows
from wearssl.data.synthetic.recordings import synthetic_subject_id
from wearssl.data.synthetic.signal import synth_signal
from wearssl.data.synthetic.subjects import (
    ACTIVITIES,
    EPOCH_DAY,
    LABELLED_STREAM,
    MS_PER_DAY,
    Schedule,
    check_seed,
    seeded_rng,
    subject_traits,
)


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
    check_seed(seed)
    fs = corpus.SAMPLE_RATE_HZ
    window_samples = window_seconds * fs
    windows_per_activity = max(1, math.ceil(minutes_per_activity * 60 / window_seconds))
    epoch_ms = (EPOCH_DAY - date(1970, 1, 1)).days * MS_PER_DAY

    windows, labels, subjects, times = [], [], [], []
    for subject_index in range(n_subjects):
        traits = subject_traits(subject_index, seed)
        rng = seeded_rng(seed, subject_index, LABELLED_STREAM, window_seconds)
        schedule = _labelled_schedule(rng, windows_per_activity, window_samples)
        xyz = synth_signal(schedule, fs, rng, traits)
        subject_windows = to_windows(xyz, window_samples)
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
