"""Labelled window sets: the input of downstream evaluation.

A labelled set is a folder (local or any pyarrow URI)::

    SET/labelled.json     name, window_seconds, sample_rate_hz, label names (in class order),
                          counts (windows per class and per subject); optionally the
                          batch size the set is trained with (``batch_size``: the paper's
                          per-dataset value) and, where the source defines one, subjects:
                          the pseudonyms in the source's subject order
    SET/windows.parquet   one row per window: subject (pseudonym), label, time, window

Windows are 30 Hz, in g, channel-major ``3 x L`` float32 lists. Rows are written grouped
by subject in the subject order, where there is one: folds take subjects in the order of
their first rows (:mod:`wearssl.data.splits`), so they follow the source (e.g. a dataset's
participant numbers) rather than the pseudonyms, whose order depends on the
pseudonymisation key. Sets written without an order read with ``subject_order`` None.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wearssl.data.corpus import (
    CHANNELS,
    SAMPLE_RATE_HZ,
    atomic_write_bytes,
    atomic_write_table,
    exists,
    join,
    resolve,
)

INFO_NAME = "labelled.json"
WINDOWS_NAME = "windows.parquet"


@dataclass
class LabelledSet:
    name: str
    window_seconds: int
    label_names: list[str]
    windows: np.ndarray  # (n, 3, L) float32, g
    labels: np.ndarray  # (n,) int64 index into label_names
    subjects: np.ndarray  # (n,) str pseudonyms
    times_ms: np.ndarray  # (n,) int64 window start, ms since epoch
    batch_size: int | None = None  # the set's own training batch size, if it has one
    subject_order: list[str] | None = None  # each subject once, in the source's order

    @property
    def window_samples(self) -> int:
        return self.window_seconds * SAMPLE_RATE_HZ

    def subset(self, mask: np.ndarray) -> LabelledSet:
        subjects = self.subjects[mask]
        order = None
        if self.subject_order is not None:
            kept = set(subjects.tolist())
            order = [subject for subject in self.subject_order if subject in kept]
        return LabelledSet(
            self.name,
            self.window_seconds,
            self.label_names,
            self.windows[mask],
            self.labels[mask],
            subjects,
            self.times_ms[mask],
            self.batch_size,
            order,
        )

    def in_subject_order(self) -> LabelledSet:
        """The same set with its rows grouped by subject in ``subject_order`` (a stable
        reordering: rows of one subject keep their order); unchanged without an order."""
        if self.subject_order is None:
            return self
        rank = {subject: i for i, subject in enumerate(self.subject_order)}
        rows = np.argsort([rank[s] for s in self.subjects.astype(str)], kind="stable")
        return replace(
            self,
            windows=self.windows[rows],
            labels=self.labels[rows],
            subjects=self.subjects[rows],
            times_ms=self.times_ms[rows],
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Windows per class (in class order) and per subject (in the subject order,
        else sorted)."""
        per_class = np.bincount(self.labels, minlength=len(self.label_names))
        subjects, per_subject = np.unique(self.subjects.astype(str), return_counts=True)
        by_subject = dict(zip(subjects.tolist(), per_subject.tolist(), strict=True))
        order = self.subject_order if self.subject_order is not None else sorted(by_subject)
        return {
            "classes": {name: int(n) for name, n in zip(self.label_names, per_class, strict=True)},
            "subjects": {subject: int(by_subject[subject]) for subject in order},
        }


def write_labelled_set(path: str, labelled: LabelledSet) -> None:
    """Write a labelled set atomically (windows first, then the info file marking it complete)."""
    n, channels, length = labelled.windows.shape
    if channels != CHANNELS or length != labelled.window_samples:
        raise ValueError(
            f"labelled set {labelled.name}: windows have shape {(channels, length)}, "
            f"expected {(CHANNELS, labelled.window_samples)} "
            f"for {labelled.window_seconds}-s windows"
        )
    if not (len(labelled.labels) == len(labelled.subjects) == len(labelled.times_ms) == n):
        raise ValueError(f"labelled set {labelled.name}: columns have different lengths")
    _check_subject_order(labelled)
    labelled = labelled.in_subject_order()
    fs, root = resolve(path)
    values = pa.array(labelled.windows.astype(np.float32).reshape(-1), pa.float32())
    names = np.asarray(labelled.label_names, dtype=object)
    table = pa.table(
        {
            "subject": pa.array(labelled.subjects.astype(str), pa.string()),
            "label": pa.array(names[labelled.labels].astype(str), pa.string()),
            "time": pa.array(labelled.times_ms.astype("int64"), pa.timestamp("ms", tz="UTC")),
            "window": pa.FixedSizeListArray.from_arrays(values, channels * length),
        }
    )
    atomic_write_table(
        fs, join(root, WINDOWS_NAME), table, compression="zstd", use_dictionary=["subject", "label"]
    )
    info = {
        "name": labelled.name,
        "window_seconds": labelled.window_seconds,
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "label_names": list(labelled.label_names),
        "counts": labelled.counts(),
    }
    if labelled.batch_size is not None:
        info["batch_size"] = labelled.batch_size
    if labelled.subject_order is not None:
        info["subjects"] = list(labelled.subject_order)
    atomic_write_bytes(fs, join(root, INFO_NAME), json.dumps(info, indent=2).encode())


def _check_subject_order(labelled: LabelledSet) -> None:
    """The subject order, where given, names every subject of the windows exactly once."""
    order = labelled.subject_order
    if order is None:
        return
    repeated = sorted(subject for subject, n in Counter(order).items() if n > 1)
    present = set(labelled.subjects.astype(str).tolist())
    missing, extra = sorted(present - set(order)), sorted(set(order) - present)
    if repeated or missing or extra:
        raise ValueError(
            f"labelled set {labelled.name}: the subject order must name each subject of the "
            f"windows once; repeated {repeated}, missing {missing}, without windows {extra}"
        )


def read_labelled_set(path: str) -> LabelledSet:
    fs, root = resolve(path)
    info_path = join(root, INFO_NAME)
    if not exists(fs, info_path):
        raise FileNotFoundError(f"{path} is not a labelled set: {info_path} is missing")
    with fs.open_input_stream(info_path) as f:
        info = json.loads(f.read())
    table = pq.read_table(join(root, WINDOWS_NAME), filesystem=fs)
    label_names = list(info["label_names"])
    index = {name: i for i, name in enumerate(label_names)}
    raw_labels = table["label"].to_pylist()
    unknown = sorted(set(raw_labels) - set(index))
    if unknown:
        raise ValueError(f"labelled set {path}: labels {unknown} are not in label_names")
    length = info["window_seconds"] * info["sample_rate_hz"]
    column = table["window"].combine_chunks()
    windows = column.flatten().to_numpy().reshape(len(column), CHANNELS, length)
    return LabelledSet(
        name=info["name"],
        window_seconds=int(info["window_seconds"]),
        label_names=label_names,
        windows=windows.astype(np.float32, copy=False),
        labels=np.array([index[x] for x in raw_labels], dtype=np.int64),
        subjects=np.array(table["subject"].to_pylist(), dtype=object),
        times_ms=table["time"].cast(pa.int64()).to_numpy(),
        batch_size=info.get("batch_size"),
        subject_order=info.get("subjects"),
    )
