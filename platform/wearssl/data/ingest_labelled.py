"""Import labelled datasets as labelled window sets (``wearssl.data.labelled_set``).

Two layouts:

(a) **Windowed arrays**, the layout of the paper's processed benchmark sets: a folder
    with ``X.npy`` ``(N, L, 3)`` (samples at ``sample_rate_hz``), ``Y.npy`` ``(N,)``
    labels and ``pid.npy`` ``(N,)`` subject ids, optionally ``time.npy`` ``(N,)`` window
    starts. Each window is resampled to 30 Hz with ``scipy.signal.resample_poly``
    (polyphase FIR with a Kaiser-window anti-aliasing filter; no wrap-around, unlike
    FFT resampling) from ``L`` to ``round(L * 30 / rate)`` samples, which must be a whole
    number of seconds. Without ``time.npy``, window starts are numbered per subject
    (``i * window length`` from 1970-01-01), keeping their order.
(b) **Per-subject (or per-session) CSV/CSV.gz files** with time, x, y, z and label
    columns (names configurable) at any rate, the layout of Capture-24 and similar
    annotated studies. Each file is resampled to 30 Hz like a raw recording
    (``wearssl.data.preprocess``: anti-alias low-pass, linear interpolation), each window
    sample takes the label of the latest raw sample at or before it, and the file is cut
    into windows of ``window_seconds`` from its first sample, one every ``step_seconds``
    (default: the window length; a shorter step gives overlapping windows, which suits
    short scripted sessions). A window is kept when at
    least ``purity`` of its samples share one label (the majority), which becomes its
    label; windows over a gap in the data, or whose majority label is missing or mapped
    to null, are dropped. The subject is the file name without extension or its parent
    folder's name.

Both: units ``g`` or ``m/s2`` (divided by standard gravity 9.80665); a label map
(``old -> new``, ``new`` null to drop) from a YAML/JSON file or ``old=new`` pairs
(labels not in the map keep their name); subjects pseudonymised; label names in sorted
order. No calibration or non-wear detection: labelled sessions are short and worn.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal
import yaml

from wearssl.data import SUBJECT_SOURCES as SUBJECT_SOURCES
from wearssl.data.corpus import SAMPLE_RATE_HZ
from wearssl.data.devices import (
    NS_PER_SECOND,
    STANDARD_GRAVITY,
    UNITS,
    CsvColumns,
    ReadOptions,
    read_csv_recording,
    recording_stem,
    times_to_wall_clock_ns,
)
from wearssl.data.labelled_set import LabelledSet, write_labelled_set
from wearssl.data.preprocess import gap_intervals, overlaps, resample_windows, window_starts
from wearssl.data.privacy import pseudonymise

ARRAY_FILES = ("X.npy", "Y.npy", "pid.npy")
NULL_LABELS = {"", "null", "none", "~"}
_BATCH_WINDOWS = 4096


@dataclass(frozen=True)
class LabelledOptions:
    name: str
    window_seconds: int = 10
    sample_rate_hz: float | None = None
    units: str = "g"
    columns: CsvColumns = field(default_factory=CsvColumns)
    label_map: dict[str, str | None] | None = None
    purity: float = 0.8
    step_seconds: float | None = None
    subject_from: str = "file"
    max_gap_seconds: float = 1.0
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {self.window_seconds}")
        if self.units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {self.units!r}")
        if not 0 <= self.purity <= 1:
            raise ValueError(f"purity must be in [0, 1], got {self.purity}")
        if self.subject_from not in SUBJECT_SOURCES:
            raise ValueError(
                f"subject_from must be one of {SUBJECT_SOURCES}, got {self.subject_from!r}"
            )
        if self.sample_rate_hz is not None and not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        if self.step_seconds is not None and not self.step_seconds > 0:
            raise ValueError(f"step_seconds must be > 0, got {self.step_seconds}")


@dataclass
class LabelledSummary:
    name: str
    window_seconds: int
    windows: int
    subjects: int
    classes: dict[str, int]  # label -> windows
    files: int
    dropped_impure: int = 0
    dropped_null: int = 0
    dropped_gap: int = 0

    def lines(self) -> list[str]:
        classes = ", ".join(f"{k}: {v}" for k, v in self.classes.items())
        return [
            f"{self.name}: {self.windows} windows of {self.window_seconds} s from "
            f"{self.subjects} subjects ({self.files} files)",
            f"classes: {classes}",
            f"dropped: {self.dropped_impure} impure, {self.dropped_null} unlabelled or mapped "
            f"to null, {self.dropped_gap} over a gap",
        ]


# ---------------------------------------------------------------- label maps


def parse_label_map(spec: list[str] | None) -> dict[str, str | None] | None:
    """A label map from a YAML/JSON file (one argument) or ``old=new`` pairs; ``old=``
    or ``old=null`` drops the label."""
    if not spec:
        return None
    if len(spec) == 1 and "=" not in spec[0]:
        path = spec[0]
        if not os.path.isfile(path):
            raise ValueError(f"label map {path!r} is neither a file nor old=new pairs")
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f) if path.lower().endswith(".json") else yaml.safe_load(f)
        if not isinstance(loaded, dict):
            raise ValueError(f"label map {path} must map labels to labels")
        return {str(k): None if v is None else str(v) for k, v in loaded.items()}
    mapping: dict[str, str | None] = {}
    for pair in spec:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            raise ValueError(f"label map entry {pair!r} must be old=new")
        mapping[old] = None if new.strip().lower() in NULL_LABELS else new
    return mapping


def map_labels(raw: np.ndarray, mapping: dict[str, str | None] | None) -> np.ndarray:
    """Labels as strings after mapping; missing or null-mapped labels become None."""
    codes, uniques = pd.factorize(pd.Series(raw, dtype=object).astype("string"))
    names = [str(u) for u in uniques]
    if mapping is not None:
        names = [mapping.get(name, name) for name in names]
    return np.array(names + [None], dtype=object)[codes]


def label_codes(labels: np.ndarray, names: list[str]) -> np.ndarray:
    """Index of each label in ``names``; ``len(names)`` for None or a label not there."""
    codes = pd.Categorical(labels, categories=names).codes.astype(np.int64)
    codes[codes < 0] = len(names)
    return codes


# ---------------------------------------------------------------- layout (a): windowed arrays


def resample_window_array(x: np.ndarray, source_rate_hz: float) -> np.ndarray:
    """``(N, L, 3)`` windows at ``source_rate_hz`` -> ``(N, 3, L')`` float32 at 30 Hz."""
    length = x.shape[1]
    target = round(length * SAMPLE_RATE_HZ / source_rate_hz)
    if target % SAMPLE_RATE_HZ:
        raise ValueError(
            f"windows of {length} samples at {source_rate_hz} Hz are "
            f"{length / source_rate_hz:.3f} s, not a whole number of seconds"
        )
    ratio = Fraction(target, length)
    out = np.empty((len(x), 3, target), np.float32)
    for lo in range(0, len(x), _BATCH_WINDOWS):
        batch = np.asarray(x[lo : lo + _BATCH_WINDOWS], dtype=np.float64)
        if ratio != 1:
            batch = scipy.signal.resample_poly(batch, ratio.numerator, ratio.denominator, axis=1)
        out[lo : lo + len(batch)] = batch.transpose(0, 2, 1)
    return out


def import_arrays(folder: str, options: LabelledOptions) -> tuple[LabelledSet, LabelledSummary]:
    """Layout (a): ``X.npy``, ``Y.npy``, ``pid.npy`` (and optional ``time.npy``)."""
    missing = [name for name in ARRAY_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(f"{folder}: missing {missing} for the X/Y/pid layout")
    if options.sample_rate_hz is None:
        raise ValueError(f"{folder}: the X/Y/pid layout needs the windows' sample rate")
    x = np.load(os.path.join(folder, "X.npy"), mmap_mode="r")
    y = np.load(os.path.join(folder, "Y.npy"), allow_pickle=True)
    pid = np.load(os.path.join(folder, "pid.npy"), allow_pickle=True)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"{folder}/X.npy must be (N, L, 3), got {x.shape}")
    if not len(x) == len(y) == len(pid):
        raise ValueError(
            f"{folder}: X, Y and pid have {len(x)}, {len(y)} and {len(pid)} rows; "
            "they need one per window"
        )
    labels = map_labels(np.asarray(y, dtype=object), options.label_map)
    keep = np.array([label is not None for label in labels])
    windows = resample_window_array(x, options.sample_rate_hz)
    if options.units == "m/s2":
        windows /= np.float32(STANDARD_GRAVITY)
    window_seconds = windows.shape[2] // SAMPLE_RATE_HZ
    subjects = np.array([pseudonymise(str(p)) for p in pid], dtype=object)
    time_path = os.path.join(folder, "time.npy")
    if os.path.isfile(time_path):
        times_ms = (
            times_to_wall_clock_ns(np.load(time_path, allow_pickle=False), "UTC") // 1_000_000
        )
    else:
        times_ms = _numbered_starts(subjects, window_seconds)
    labelled = _labelled_set(
        options.name, window_seconds, windows, labels, subjects, times_ms, keep
    )
    summary = _summary(options.name, labelled, files=1)
    summary.dropped_null = int((~keep).sum())
    return labelled, summary


def _numbered_starts(subjects: np.ndarray, window_seconds: int) -> np.ndarray:
    """Window starts ``0, w, 2w, ...`` ms within each subject, in file order."""
    times = np.empty(len(subjects), np.int64)
    seen: Counter[str] = Counter()
    for i, subject in enumerate(subjects):
        times[i] = seen[subject] * window_seconds * 1000
        seen[subject] += 1
    return times


# ---------------------------------------------------------------- layout (b): labelled CSV files


def _csv_files(inputs: list[str]) -> list[str]:
    files: list[str] = []
    for item in inputs:
        if set("*?[") & set(item):
            files += [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
        elif os.path.isdir(item):
            files += [
                str(p)
                for p in Path(item).rglob("*")
                if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz"))
            ]
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise ValueError(f"input {item!r} does not exist")
    if not files:
        raise ValueError(f"no CSV files found in {inputs}")
    return sorted(dict.fromkeys(files))


def majority_labels(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``(n, L)`` integer codes: the most frequent code and its share."""
    n, length = codes.shape
    flat = codes + (np.arange(n) * n_codes)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * n_codes).reshape(n, n_codes)
    majority = counts.argmax(axis=1)
    return majority, counts[np.arange(n), majority] / length


@dataclass
class _FileWindows:
    windows: np.ndarray
    labels: np.ndarray  # object: str
    times_ms: np.ndarray
    impure: int
    null: int
    gap: int


def windows_from_csv(path: str, options: LabelledOptions) -> _FileWindows:
    """Layout (b), one file: resampled, windowed, majority-labelled windows."""
    read = ReadOptions(
        sample_rate_hz=options.sample_rate_hz, units=options.units, columns=options.columns
    )
    recording = read_csv_recording(path, read, with_labels=True)
    labels = map_labels(recording.labels, options.label_map)
    window_samples = options.window_seconds * SAMPLE_RATE_HZ
    starts = window_starts(
        recording.times_ns, options.window_seconds, SAMPLE_RATE_HZ, "start", options.step_seconds
    )
    gaps = gap_intervals(recording.times_ns, options.max_gap_seconds)
    over_gap = overlaps(starts, options.window_seconds * NS_PER_SECOND, gaps)
    starts = starts[~over_gap]
    windows = resample_windows(
        recording.times_ns,
        recording.xyz,
        starts,
        window_samples,
        recording.sample_rate_hz,
        SAMPLE_RATE_HZ,
        options.antialias,
        options.max_gap_seconds,
    )
    names = sorted({label for label in labels if label is not None})
    null_code = len(names)
    sample_codes = label_codes(labels, names)
    grid = starts[:, None] + np.rint(
        np.arange(window_samples) * (NS_PER_SECOND / SAMPLE_RATE_HZ)
    ).astype(np.int64)
    latest = np.searchsorted(recording.times_ns, grid, side="right") - 1
    codes = sample_codes[np.clip(latest, 0, len(sample_codes) - 1)]
    majority, share = majority_labels(codes.reshape(len(starts), window_samples), null_code + 1)
    pure = share >= options.purity
    labelled = majority != null_code
    keep = pure & labelled
    label_names = np.array(names + [None], dtype=object)
    return _FileWindows(
        windows=windows[keep],
        labels=label_names[majority[keep]],
        times_ms=starts[keep] // 1_000_000,
        impure=int((~pure).sum()),
        null=int((pure & ~labelled).sum()),
        gap=int(over_gap.sum()),
    )


def _subject_of(path: str, subject_from: str) -> str:
    return Path(path).parent.name if subject_from == "folder" else recording_stem(path)


def import_csv_files(
    files: list[str], options: LabelledOptions
) -> tuple[LabelledSet, LabelledSummary]:
    """Layout (b): all files into one labelled set."""
    parts, subjects = [], []
    impure = null = gap = 0
    for path in files:
        part = windows_from_csv(path, options)
        parts.append(part)
        subjects.append(
            np.full(
                len(part.labels),
                pseudonymise(_subject_of(path, options.subject_from)),
                dtype=object,
            )
        )
        impure, null, gap = impure + part.impure, null + part.null, gap + part.gap
    windows = np.concatenate([p.windows for p in parts])
    labels = np.concatenate([p.labels for p in parts]) if parts else np.empty(0, object)
    times_ms = np.concatenate([p.times_ms for p in parts])
    keep = np.ones(len(labels), bool)
    labelled = _labelled_set(
        options.name,
        options.window_seconds,
        windows,
        labels,
        np.concatenate(subjects),
        times_ms,
        keep,
    )
    summary = _summary(options.name, labelled, files=len(files))
    summary.dropped_impure, summary.dropped_null, summary.dropped_gap = impure, null, gap
    return labelled, summary


# ---------------------------------------------------------------- common


def _labelled_set(
    name: str,
    window_seconds: int,
    windows: np.ndarray,
    labels: np.ndarray,
    subjects: np.ndarray,
    times_ms: np.ndarray,
    keep: np.ndarray,
) -> LabelledSet:
    label_names = sorted({str(label) for label in labels[keep]})
    if not label_names:
        raise ValueError(
            f"labelled set {name}: no window is left after label mapping, purity and gaps "
            "(lower the purity or shorten the windows)"
        )
    index = {label: i for i, label in enumerate(label_names)}
    return LabelledSet(
        name=name,
        window_seconds=window_seconds,
        label_names=label_names,
        windows=np.ascontiguousarray(windows[keep], dtype=np.float32),
        labels=np.array([index[str(label)] for label in labels[keep]], dtype=np.int64),
        subjects=subjects[keep],
        times_ms=np.asarray(times_ms, dtype=np.int64)[keep],
    )


def _summary(name: str, labelled: LabelledSet, files: int) -> LabelledSummary:
    counts = np.bincount(labelled.labels, minlength=len(labelled.label_names))
    return LabelledSummary(
        name=name,
        window_seconds=labelled.window_seconds,
        windows=len(labelled.labels),
        subjects=len(set(labelled.subjects.tolist())),
        classes={label: int(n) for label, n in zip(labelled.label_names, counts, strict=True)},
        files=files,
    )


def is_array_layout(inputs: list[str]) -> bool:
    return (
        len(inputs) == 1
        and os.path.isdir(inputs[0])
        and os.path.isfile(os.path.join(inputs[0], "X.npy"))
    )


def import_labelled(inputs: list[str], out: str, options: LabelledOptions) -> LabelledSummary:
    """Import a labelled dataset (layout chosen from the inputs) and write it to ``out``."""
    if is_array_layout(inputs):
        labelled, summary = import_arrays(inputs[0], options)
    else:
        labelled, summary = import_csv_files(_csv_files(inputs), options)
    write_labelled_set(out, labelled)
    return summary
