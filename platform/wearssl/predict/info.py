"""``<stem>-Info.json``: what was read, how it was processed, how much was worn, the
headline figures and the model and arguments that made them; and whether the model was
better than chance on its own validation data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wearssl.data.preprocess import NS_PER_SECOND, Calibration
from wearssl.predict.bouts import label_runs
from wearssl.predict.outputs import MINUTES_SUFFIX, NON_WEAR
from wearssl.predict.summary import per_day_averages

SECONDS_PER_DAY = 86_400
NEAR_CHANCE_SKILL = 0.2
"""A validation score that covers less than this share of the way from chance to perfect
is near chance."""


@dataclass(frozen=True)
class ChanceCheck:
    """The validation scores an exported model carries, their chance levels, and whether
    any is near chance (None when the model carries no score to judge by)."""

    scores: dict[str, float]
    chance: dict[str, float]
    near_chance: bool | None
    message: str


def chance_check(content: dict[str, Any], n_classes: int) -> ChanceCheck:
    """Judge the scores the evaluation job stores in an exported checkpoint: ``f1_mean``
    (macro F1 over the test folds; chance 1/k, what guessing classes at random scores)
    and ``val_loss`` (validation cross-entropy; chance ln k, a uniform prediction).
    Skill is the share of the way from chance to perfect: ``(f1 - 1/k) / (1 - 1/k)`` and
    ``1 - loss / ln k``; below ``NEAR_CHANCE_SKILL`` is near chance."""
    chance = {"f1_mean": 1 / n_classes, "val_loss": math.log(n_classes)}
    scores = {
        key: float(content[key])
        for key in chance
        if isinstance(content.get(key), int | float) and math.isfinite(content[key])
    }
    if not scores:
        return ChanceCheck(
            scores,
            chance,
            None,
            "the model carries no validation scores (f1_mean, val_loss): whether it does "
            "better than chance is unknown",
        )
    skill = {}
    if "f1_mean" in scores:
        skill["f1_mean"] = (scores["f1_mean"] - chance["f1_mean"]) / (1 - chance["f1_mean"])
    if "val_loss" in scores:
        skill["val_loss"] = 1 - scores["val_loss"] / chance["val_loss"]
    near = [key for key, value in skill.items() if value < NEAR_CHANCE_SKILL]
    described = ", ".join(f"{key} {scores[key]:.3f} (chance {chance[key]:.3f})" for key in skill)
    if near:
        return ChanceCheck(
            scores, chance, True, f"the model is near chance on its validation data: {described}"
        )
    return ChanceCheck(scores, chance, False, f"validation scores: {described}")


def nonwear_episodes(
    starts_ns: np.ndarray, labels: np.ndarray, window_seconds: int
) -> list[dict[str, str]]:
    """``start`` and ``end`` of each run of windows not worn (non-wear or a gap)."""
    window_ns = window_seconds * NS_PER_SECOND
    runs = label_runs((labels == NON_WEAR).astype(np.int8), starts_ns, window_ns)
    return [
        {"start": iso(starts_ns[a]), "end": iso(starts_ns[b - 1] + window_ns)}
        for code, a, b in runs
        if code
    ]


def iso(ns: int) -> str:
    return pd.Timestamp(int(ns), unit="ns").isoformat()


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars made plain and NaN or infinite floats made None."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def calibration_info(facts: dict[str, Any], calibration: Calibration) -> dict[str, Any]:
    """The ingest report's calibration fields (``facts``: its preprocessing facts), with
    the fitted offset and scale."""
    return {
        "Status": facts["calibration"],
        "ErrorBefore(mg)": facts["calibration_error_before_mg"],
        "ErrorAfter(mg)": facts["calibration_error_after_mg"],
        "Reason": facts["calibration_reason"],
        "Offset(g)": [float(v) for v in calibration.offset],
        "Scale": [float(v) for v in calibration.scale],
        "StillPeriods": calibration.n_points,
    }


def activity_info(
    daily: pd.DataFrame,
    overall_adjusted: dict[str, float],
    enmo: np.ndarray,
    label_names: list[str],
) -> dict[str, Any]:
    """The recording's activity figures: totals, per-day means and adjusted means."""
    return {
        "ActivityMinutes": {
            name: float(daily[name + MINUTES_SUFFIX].sum()) for name in label_names
        },
        "ENMO(mg)": float(np.nanmean(enmo)) if np.isfinite(enmo).any() else None,
        "PerDayAverages": per_day_averages(daily, label_names),
        "Adjusted": overall_adjusted,
        "Days": len(daily),
        "PoorWearDays": int(daily["poor_wear"].sum()),
    }


def wear_info(
    starts_ns: np.ndarray, labels: np.ndarray, window_seconds: int, covers_24h: bool
) -> dict[str, Any]:
    """Worn and not-worn time in days, the non-wear episodes, and whether every hour of
    the day was worn at some point."""
    worn_windows = int((labels != NON_WEAR).sum())
    episodes = nonwear_episodes(starts_ns, labels, window_seconds)
    return {
        "Windows": len(labels),
        "WearWindows": worn_windows,
        "WearTime(days)": worn_windows * window_seconds / SECONDS_PER_DAY,
        "NonwearTime(days)": (len(labels) - worn_windows) * window_seconds / SECONDS_PER_DAY,
        "NonwearEpisodes": {"Count": len(episodes), "List": episodes},
        "Covers24hOK": covers_24h,
    }
