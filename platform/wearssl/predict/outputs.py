"""The tables of one recording's predictions: per window, per minute and per hour, and
where each output file goes.

Labels arrive as class indices per window, ``NON_WEAR`` (-1) where the window was not
worn; acceleration as ENMO in milli-g per window, NaN where not worn. Every table is
built from these two arrays and the window starts (wall-clock ns), so the minute, hour
and day figures always add up to the same windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wearssl.data.preprocess import NS_PER_SECOND

NON_WEAR = -1
PROBABILITY_PREFIX = "prob_"
MINUTES_SUFFIX = "_minutes"
ENMO_COLUMN = "enmo_mg"
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MINUTE

TIMESERIES_SUFFIX = "-timeSeries.csv.gz"
MINUTELY_SUFFIX = "-Minutely.csv.gz"
HOURLY_SUFFIX = "-Hourly.csv.gz"
DAILY_SUFFIX = "-Daily.csv"
BOUTS_SUFFIX = "-Bouts.csv.gz"
INFO_SUFFIX = "-Info.json"
TIMELINE_SUFFIX = "-timeline.png"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def output_paths(out: str | Path, stem: str) -> dict[str, Path]:
    """Where each output of recording ``stem`` goes: ``OUT/<stem>/<stem><suffix>``."""
    folder = Path(out) / stem
    suffixes = {
        "time_series": TIMESERIES_SUFFIX,
        "minutely": MINUTELY_SUFFIX,
        "hourly": HOURLY_SUFFIX,
        "daily": DAILY_SUFFIX,
        "bouts": BOUTS_SUFFIX,
        "info": INFO_SUFFIX,
        "timeline": TIMELINE_SUFFIX,
    }
    return {"folder": folder} | {key: folder / f"{stem}{s}" for key, s in suffixes.items()}


def write_table(table: pd.DataFrame, path: Path, float_format: str | None = "%.4f") -> None:
    """A table as CSV (gzipped when the name ends in ``.gz``), times to the second."""
    table.to_csv(path, index=False, float_format=float_format, date_format=TIME_FORMAT)


def enmo_mg(windows: np.ndarray, wear: np.ndarray) -> np.ndarray:
    """``(n,)`` ENMO of each ``(n, 3, L)`` window in g: the mean of max(|a| - 1 g, 0) over
    its samples, in milli-g; NaN where the window was not worn."""
    magnitude = np.linalg.norm(windows, axis=1)
    values = np.maximum(magnitude - 1.0, 0.0).mean(axis=1) * 1000.0
    return np.where(wear, values, np.nan)


def times(starts_ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(starts_ns, dtype="datetime64[ns]"))


def label_names_of(labels: np.ndarray, label_names: list[str]) -> np.ndarray:
    """The name of each class index, ``""`` for ``NON_WEAR``."""
    return np.asarray([*label_names, ""], dtype=object)[labels]


def time_series(
    starts_ns: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    enmo: np.ndarray,
    label_names: list[str],
) -> pd.DataFrame:
    """The per-window table written to ``<stem>-timeSeries.csv.gz``."""
    table = pd.DataFrame({"time": times(starts_ns), "label": label_names_of(labels, label_names)})
    for index, name in enumerate(label_names):
        table[PROBABILITY_PREFIX + name] = probabilities[:, index]
    table[ENMO_COLUMN] = enmo
    table["non_wear"] = (labels == NON_WEAR).astype(np.int8)
    return table


def activity_minutes(
    starts_ns: np.ndarray,
    labels: np.ndarray,
    enmo: np.ndarray,
    label_names: list[str],
    window_seconds: int,
    period_ns: int,
) -> pd.DataFrame:
    """Per clock-aligned period (a minute, an hour: ``<stem>-Hourly.csv.gz``, a day) that
    has windows: ``time`` (its
    start), ``<label>_minutes`` (worn minutes of each activity), ``wear_minutes`` and
    ``enmo_mg`` (mean over its worn windows; NaN when none was worn)."""
    frame = pd.DataFrame({"period": np.asarray(starts_ns) // period_ns * period_ns})
    for index, name in enumerate(label_names):
        frame[name + MINUTES_SUFFIX] = labels == index
    frame["wear_minutes"] = labels != NON_WEAR
    counted = frame.columns[1:].tolist()
    frame[ENMO_COLUMN] = enmo
    groups = frame.groupby("period", sort=True)
    table = groups[counted].sum() * (window_seconds / 60)  # window counts to minutes
    table[ENMO_COLUMN] = groups[ENMO_COLUMN].mean()
    table.insert(0, "time", times(table.index.to_numpy()))
    return table.reset_index(drop=True)


def minutely_table(minutes: pd.DataFrame, label_names: list[str]) -> pd.DataFrame:
    """``<stem>-Minutely.csv.gz`` from the per-minute :func:`activity_minutes`: ``time``,
    ``label`` (the most frequent label of the minute's worn windows, ties to the class
    listed first; empty when none of them was worn), ``enmo_mg`` (mean of its worn
    windows) and ``wear_fraction`` (worn seconds / 60)."""
    counts = minutes[[name + MINUTES_SUFFIX for name in label_names]].to_numpy()
    commonest = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), NON_WEAR)
    return pd.DataFrame(
        {
            "time": minutes["time"],
            "label": label_names_of(commonest, label_names),
            ENMO_COLUMN: minutes[ENMO_COLUMN],
            "wear_fraction": minutes["wear_minutes"],
        }
    )
