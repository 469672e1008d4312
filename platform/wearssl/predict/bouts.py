"""Runs of one label over consecutive windows: the bouts table and the timeline's bands."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wearssl.data.preprocess import NS_PER_SECOND
from wearssl.predict.outputs import ENMO_COLUMN, NON_WEAR, label_names_of, times


def label_runs(
    codes: np.ndarray, starts_ns: np.ndarray, window_ns: int
) -> list[tuple[int, int, int]]:
    """(code, first, stop) index runs of equal codes over contiguous windows (a jump in
    the window starts ends a run too)."""
    if len(codes) == 0:
        return []
    breaks = (codes[1:] != codes[:-1]) | (np.diff(starts_ns) != window_ns)
    bounds = np.r_[0, np.flatnonzero(breaks) + 1, len(codes)]
    return [(int(codes[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def bouts_table(
    starts_ns: np.ndarray,
    labels: np.ndarray,
    enmo: np.ndarray,
    label_names: list[str],
    window_seconds: int,
) -> pd.DataFrame:
    """``<stem>-Bouts.csv.gz``: one row per run of the same worn label, ``start``,
    ``end`` (the end of its last window), ``duration_minutes``, ``label`` and ``enmo_mg``
    (mean over its windows). Non-wear ends a bout; it is not a bout itself."""
    window_ns = window_seconds * NS_PER_SECOND
    runs = [run for run in label_runs(labels, starts_ns, window_ns) if run[0] != NON_WEAR]
    codes = np.array([code for code, _, _ in runs], np.int64)
    first = np.array([a for _, a, _ in runs], np.int64)
    stop = np.array([b for _, _, b in runs], np.int64)
    return pd.DataFrame(
        {
            "start": times(starts_ns[first]),
            "end": times(starts_ns[stop - 1] + window_ns),
            "duration_minutes": (stop - first) * window_seconds / 60,
            "label": label_names_of(codes, label_names),
            ENMO_COLUMN: [float(np.mean(enmo[a:b])) for a, b in zip(first, stop, strict=True)],
        }
    )
