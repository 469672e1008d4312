"""What the dataset recipes share: the windows they make, their summary, and writing
them as a labelled set with pseudonymised subjects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wearssl.data.corpus import CHANNELS, SAMPLE_RATE_HZ
from wearssl.data.labelled_set import LabelledSet, write_labelled_set
from wearssl.data.privacy import pseudonymise

Progress = Callable[[str], None]
"""Receives one line of progress (e.g. a file done) during long work."""


def no_progress(line: str) -> None:
    """The default :data:`Progress`: says nothing."""


@dataclass
class RecipeWindows:
    """A dataset's windows before pseudonymisation, in the source's order."""

    windows: np.ndarray  # (n, 3, L) float32, g, 30 Hz
    labels: np.ndarray  # (n,) str
    subjects: np.ndarray  # (n,) str, raw subject ids
    times_ms: np.ndarray  # (n,) int64 window start
    subject_order: list[str]  # raw subject ids with windows, in the source's order
    files: int
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> how many


@dataclass
class RecipeParts:
    """A recipe's windows gathered piece by piece (a trial, an activity, a file) and made
    into one ``RecipeWindows`` at the end; ``subject_order`` lists each subject once, in
    the order its first windows came."""

    windows: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    subjects: list[np.ndarray] = field(default_factory=list)
    times_ms: list[np.ndarray] = field(default_factory=list)
    subject_order: list[str] = field(default_factory=list)

    def add(
        self, windows: np.ndarray, labels: np.ndarray | str, subject: str, times_ms: np.ndarray
    ) -> None:
        """Windows of one subject, with a label each (or one label for all)."""
        n = len(windows)
        if isinstance(labels, str):
            labels = np.full(n, labels, dtype=object)
        if subject not in self.subject_order:
            self.subject_order.append(subject)
        self.windows.append(windows)
        self.labels.append(labels)
        self.subjects.append(np.full(n, subject, dtype=object))
        self.times_ms.append(times_ms)

    def finished(
        self, dataset: str, raw_dir: str, files: int, dropped: dict[str, int]
    ) -> RecipeWindows:
        """All windows gathered; a ValueError naming ``raw_dir`` and what was dropped where
        there are none."""
        if not self.windows:
            raise ValueError(f"no {dataset} window could be made from {raw_dir}: {dropped}")
        return RecipeWindows(
            windows=np.concatenate(self.windows),
            labels=np.concatenate(self.labels),
            subjects=np.concatenate(self.subjects),
            times_ms=np.concatenate(self.times_ms),
            subject_order=list(self.subject_order),
            files=files,
            dropped=dropped,
        )


@dataclass
class RecipeSummary:
    """What a recipe wrote: windows per class and per subject (pseudonyms, in the source's
    order) and what it dropped on the way."""

    name: str
    out: str
    files: int
    classes: dict[str, int]
    subjects: dict[str, int]
    dropped: dict[str, int]

    @property
    def windows(self) -> int:
        return sum(self.classes.values())

    def lines(self) -> list[str]:
        width = max(len(name) for name in self.classes)
        lines = [
            f"{self.name}: {self.windows} windows from {len(self.subjects)} subjects "
            f"({self.files} files) and {len(self.classes)} classes, written to {self.out}",
            "windows per class:",
            *(f"  {name:<{width}}  {n}" for name, n in self.classes.items()),
            "windows per subject (in source order):",
            *(f"  {subject}  {n}" for subject, n in self.subjects.items()),
        ]
        if self.dropped:
            lines.append("dropped: " + ", ".join(f"{n} {why}" for why, n in self.dropped.items()))
        return lines


def resize_windows(windows: np.ndarray, length: int) -> np.ndarray:
    """``(n, L, 3)`` windows -> ``(n, 3, length)`` float32 by linear interpolation that
    keeps each window's first and last samples (the paper's processing of its benchmark
    sets). Unlike a polyphase filter over a single window, it adds no ringing at the
    window's edges, which would shift per-window features such as the range."""
    n, source_length, channels = windows.shape
    if channels != CHANNELS or source_length < 2:
        raise ValueError(f"windows must be (n, L >= 2, {CHANNELS}), got {windows.shape}")
    position = np.linspace(0.0, source_length - 1, length)
    left = np.minimum(position.astype(np.int64), source_length - 2)
    weight = (position - left).astype(np.float32)
    x = windows.astype(np.float32, copy=False).transpose(0, 2, 1)
    return np.ascontiguousarray(x[:, :, left] * (1 - weight) + x[:, :, left + 1] * weight)


def write_recipe_set(
    out: str,
    name: str,
    window_seconds: int,
    label_names: list[str],
    batch_size: int,
    part: RecipeWindows,
) -> RecipeSummary:
    """Pseudonymise the subjects, write the labelled set atomically, and summarise it.

    The set states the source's subject order (its rows are written in it, so folds
    follow it); the classes keep the order of ``label_names``, leaving out a class
    without windows; ``batch_size`` is the paper's batch size for the set's networks."""
    if len(part.labels) == 0:
        raise ValueError(f"{name}: no window was left to write (dropped: {part.dropped})")
    expected = window_seconds * SAMPLE_RATE_HZ
    if part.windows.shape[1:] != (CHANNELS, expected):
        raise ValueError(
            f"{name}: windows have shape {part.windows.shape[1:]}, expected {(CHANNELS, expected)}"
        )
    present = set(part.labels.tolist())
    unknown = sorted(present - set(label_names))
    if unknown:
        raise ValueError(f"{name}: labels {unknown} are not among the classes {label_names}")
    label_names = [label for label in label_names if label in present]
    index = {label: i for i, label in enumerate(label_names)}
    pseudonyms = {raw: pseudonymise(raw) for raw in part.subject_order}
    labelled = LabelledSet(
        name=name,
        window_seconds=window_seconds,
        label_names=list(label_names),
        windows=part.windows,
        labels=np.array([index[label] for label in part.labels], dtype=np.int64),
        subjects=np.array([pseudonyms[raw] for raw in part.subjects], dtype=object),
        times_ms=np.asarray(part.times_ms, dtype=np.int64),
        batch_size=batch_size,
        subject_order=[pseudonyms[raw] for raw in part.subject_order],
    )
    write_labelled_set(out, labelled)
    counts = labelled.counts()
    return RecipeSummary(
        name=name,
        out=out,
        files=part.files,
        classes=counts["classes"],
        subjects=counts["subjects"],
        dropped=dict(part.dropped),
    )
