"""A labelled set's windows as unlabelled pre-training data (labels dropped).

Self-supervised pre-training needs no labels, so the windows of a public labelled set
can join a corpus of raw recordings. Two rules keep such a corpus honest:

- no subject that an evaluation tests on may reach pre-training (``exclude``): a
  representation that has seen a test subject's signals scores higher than it should;
- overlapping windows (a benchmark cut every 5 s into 10-s windows) are thinned to
  non-overlapping ones per subject, so no signal is drawn twice as often as the rest.

Each subject's windows become one subject-day of the corpus, all worn.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from wearssl.data import corpus
from wearssl.data.labelled_set import LabelledSet

LABELLED_DAY = "labelled"


def non_overlapping(times_ms: np.ndarray, window_ms: int) -> np.ndarray:
    """Indices, in time order, of windows that start at least ``window_ms`` after the
    previously kept one (greedy from the earliest)."""
    order = np.argsort(times_ms, kind="stable")
    kept, next_free = [], None
    for index in order:
        if next_free is None or times_ms[index] >= next_free:
            kept.append(index)
            next_free = times_ms[index] + window_ms
    return np.asarray(kept, dtype=np.int64)


def add_labelled_windows(
    root: str, labelled: LabelledSet, exclude: Iterable[str] = ()
) -> dict[str, int]:
    """Add ``labelled``'s 10-s windows, less the ``exclude`` subjects, to the corpus at
    ``root`` (created if absent); returns windows added per subject."""
    if labelled.window_seconds != corpus.WINDOW_SECONDS:
        raise ValueError(
            f"labelled set {labelled.name} has {labelled.window_seconds}-s windows; a corpus "
            f"holds {corpus.WINDOW_SECONDS}-s rows"
        )
    info = corpus.info_to_write(root, corpus.CorpusInfo())
    excluded = set(exclude)
    added, entries = {}, []
    for subject in dict.fromkeys(labelled.subjects.tolist()):
        if subject in excluded:
            continue
        rows = np.flatnonzero(labelled.subjects == subject)
        rows = rows[non_overlapping(labelled.times_ms[rows], corpus.WINDOW_SECONDS * 1000)]
        table = corpus.day_table(
            subject,
            LABELLED_DAY,
            labelled.times_ms[rows],
            labelled.windows[rows],
            np.ones(len(rows), bool),
            corpus.WindowFormat(info.window_format),
            info.version,
        )
        entries.append(corpus.write_day(root, table, recording=f"{labelled.name}:{subject}"))
        added[subject] = len(rows)
    corpus.add_to_manifest(root, entries)
    corpus.write_info(root, info)
    return added
