"""Daily figures of one recording, as worn and "adjusted" for non-wear.

**Adjusted** figures fill the minutes a day was not worn (non-wear, gaps, and the hours
before the recording started or after it ended) from the same minute of the day on the
days it was worn. For minute-of-day *m*, the profile of activity *a* is the share of *a*
in the worn time at *m* over all days, ``P[m, a] = sum_d minutes[d, m, a] / sum_d
worn[d, m]``, and its ENMO is the wear-weighted mean ENMO at *m*. A day's adjusted
minutes of *a* are its worn minutes of *a* plus ``(1 - worn[d, m]) * P[m, a]`` summed
over its 1,440 minutes, so every adjusted day is a whole day: its activities add up to
1,440 minutes. A day with a minute that no day wore is left without adjusted figures
(NaN). The overall adjusted figure is the average day the profile describes,
``sum_m P[m, a]`` (and the mean of the ENMO profile), defined only when every minute of
the day was worn on some day.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from wearssl.predict.outputs import (
    ENMO_COLUMN,
    MINUTES_SUFFIX,
    NS_PER_MINUTE,
    activity_minutes,
)

MINUTES_PER_DAY = 1440
HOURS_PER_DAY = 24
MIN_WEAR_HOURS_PER_DAY = 20.0
ADJUSTED_SUFFIX = "_adjusted"
DAY_FLAGS = ["partial_day", "poor_wear"]


def daily_summary(
    starts_ns: np.ndarray,
    labels: np.ndarray,
    enmo: np.ndarray,
    label_names: list[str],
    window_seconds: int,
    min_wear_hours: float = MIN_WEAR_HOURS_PER_DAY,
) -> pd.DataFrame:
    """One row per calendar day (wall clock) that the recording covers, as worn.

    Columns: ``day``; ``recorded_minutes`` (the part of the day the recording spans,
    gaps included); ``wear_minutes``; ``nonwear_minutes``; ``<label>_minutes`` for each
    class (worn time only, nothing imputed); ``enmo_mg`` (mean over the worn windows);
    ``partial_day`` (recorded < 24 h, e.g. the first and last day); ``poor_wear``: fewer
    than ``min_wear_hours`` of wear per 24 h of recorded time, i.e. ``wear_minutes <
    recorded_minutes * min_wear_hours / 24`` (a full day needs 20 h of wear, a first day
    recorded from noon 10 h).
    """
    day_ns = MINUTES_PER_DAY * NS_PER_MINUTE
    days = activity_minutes(starts_ns, labels, enmo, label_names, window_seconds, day_ns)
    _, windows_per_day = np.unique(np.asarray(starts_ns) // day_ns, return_counts=True)
    recorded = windows_per_day * window_seconds / 60
    table = pd.DataFrame(
        {
            "day": days["time"].dt.strftime("%Y-%m-%d"),
            "recorded_minutes": recorded,
            "wear_minutes": days["wear_minutes"],
            "nonwear_minutes": recorded - days["wear_minutes"],
        }
    )
    for name in label_names:
        table[name + MINUTES_SUFFIX] = days[name + MINUTES_SUFFIX]
    table[ENMO_COLUMN] = days[ENMO_COLUMN]
    table["partial_day"] = recorded < MINUTES_PER_DAY
    table["poor_wear"] = table["wear_minutes"] < recorded * min_wear_hours / HOURS_PER_DAY
    return table


def adjusted_columns(label_names: list[str]) -> list[str]:
    return [name + MINUTES_SUFFIX + ADJUSTED_SUFFIX for name in label_names] + [
        ENMO_COLUMN + ADJUSTED_SUFFIX
    ]


def adjusted_figures(
    minutes: pd.DataFrame, label_names: list[str]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The adjusted figures (see the module docstring) from the per-minute
    :func:`~wearssl.predict.outputs.activity_minutes` table: per day (``day`` and
    :func:`adjusted_columns`, one row per calendar day of ``minutes``) and overall (the
    same columns for the average day)."""
    day = minutes["time"].dt.normalize()
    day_index, day_names = pd.factorize(day, sort=True)
    minute_of_day = ((minutes["time"] - day) // pd.Timedelta(minutes=1)).to_numpy()
    shape = (len(day_names), MINUTES_PER_DAY)
    worn = np.zeros(shape)
    worn[day_index, minute_of_day] = minutes["wear_minutes"].to_numpy()
    activity = np.zeros((*shape, len(label_names)))
    activity[day_index, minute_of_day] = minutes[
        [name + MINUTES_SUFFIX for name in label_names]
    ].to_numpy()
    worn_enmo = np.zeros(shape)
    worn_enmo[day_index, minute_of_day] = (
        np.nan_to_num(minutes[ENMO_COLUMN].to_numpy()) * worn[day_index, minute_of_day]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = activity.sum(axis=0) / worn.sum(axis=0)[:, None]  # (1440, k), NaN: never worn
        enmo_profile = worn_enmo.sum(axis=0) / worn.sum(axis=0)
    missing = 1.0 - worn
    per_day = activity.sum(axis=1) + np.einsum("dm,mk->dk", missing, profile)
    per_day_enmo = (worn_enmo.sum(axis=1) + missing @ enmo_profile) / MINUTES_PER_DAY
    columns = adjusted_columns(label_names)
    daily = pd.DataFrame(np.column_stack([per_day, per_day_enmo]), columns=columns)
    daily.insert(0, "day", day_names.strftime("%Y-%m-%d"))
    overall = dict(zip(columns, [*profile.sum(axis=0), enmo_profile.mean()], strict=True))
    return daily, {key: float(value) for key, value in overall.items()}


def daily_table(
    daily: pd.DataFrame, minutes: pd.DataFrame, label_names: list[str]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """``<stem>-Daily.csv``: the :func:`daily_summary` ``daily`` with the adjusted
    figures of each day before its flags; and the overall adjusted figures."""
    adjusted, overall = adjusted_figures(minutes, label_names)
    table = daily.merge(adjusted, on="day", how="left", validate="one_to_one")
    table = table[[c for c in table.columns if c not in DAY_FLAGS] + DAY_FLAGS]
    return table, overall


def covers_24h(hourly: pd.DataFrame) -> bool:
    """Whether every hour of the day (0-23) has worn time on at least one day."""
    worn_hours = hourly.loc[hourly["wear_minutes"] > 0, "time"].dt.hour
    return worn_hours.nunique() == HOURS_PER_DAY


def per_day_averages(daily: pd.DataFrame, label_names: list[str]) -> dict[str, Any]:
    """Mean ``<label>_minutes`` and ``enmo_mg`` over the whole, well-worn days (neither
    ``partial_day`` nor ``poor_wear``), with their count; None where there is none."""
    valid = daily[~daily["partial_day"] & ~daily["poor_wear"]]
    columns = [name + MINUTES_SUFFIX for name in label_names] + [ENMO_COLUMN]
    means = {c: (float(valid[c].mean()) if len(valid) else None) for c in columns}
    return {"days": len(valid), **means}
