"""Scores per test subject, their summary per arm, and the paper's results table.

A score row is one test subject in one trial (dataset, arm, fold, seed). The summary of an
arm is the mean and SD (ddof=1; 0 for a single row) over its score rows, so a subject that
is tested in several folds or seeds counts once per trial. Cohen's kappa is undefined
(NaN) for a subject whose true and predicted labels are all one and the same class; the
kappa mean and SD skip such rows. When the scores carry a ``selection`` column ("all" or
"best" seeds), the summary keeps it as a key and compares arms within the same selection.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from wearssl.config.vocabulary import ARMS

SCORE_COLUMNS = ("dataset", "arm", "fold", "seed", "subject", "f1_macro", "kappa", "accuracy")
SELECTION = "selection"
REFERENCE_ARMS = {"f1_rel_vs_scratch": "scratch", "f1_rel_vs_forest": "forest"}
SUMMARY_METRICS = {"f1": "f1_macro", "kappa": "kappa", "accuracy": "accuracy"}


def tracked_metric(column: str) -> str:
    """A summary column's MLflow name: the score it summarises and the statistic
    (``f1_mean`` -> ``f1_macro_mean``, ``kappa_sd`` -> ``kappa_sd``)."""
    name, statistic = column.rsplit("_", 1)
    return f"{SUMMARY_METRICS[name]}_{statistic}"


def per_subject_scores(
    y_true: np.ndarray, y_pred: np.ndarray, subjects: np.ndarray, labels: list[int]
) -> pd.DataFrame:
    """One row per subject (sorted): subject, n_windows, f1_macro, kappa, accuracy.

    Macro F1 averages over the classes present in the subject's truth or predictions
    (scikit-learn's default, as in the paper's per-subject scoring): a subject who never
    did an activity is not charged a zero for it. ``labels`` validates the values.
    """
    y_true, y_pred, subjects = (np.asarray(a) for a in (y_true, y_pred, subjects))
    if not (y_true.ndim == y_pred.ndim == subjects.ndim == 1):
        raise ValueError("y_true, y_pred and subjects must be 1-D arrays")
    if not len(y_true) == len(y_pred) == len(subjects):
        raise ValueError(
            f"y_true, y_pred and subjects differ in length: "
            f"{len(y_true)}, {len(y_pred)}, {len(subjects)}"
        )
    if len(labels) == 0:
        raise ValueError("labels must name at least one class")
    unknown = np.setdiff1d(np.concatenate([y_true, y_pred]), labels)
    if len(unknown):
        raise ValueError(f"labels {unknown.tolist()} are not among labels={list(labels)}")
    rows = []
    for subject in np.unique(subjects):
        mask = subjects == subject
        truth, predicted = y_true[mask], y_pred[mask]
        rows.append(
            {
                "subject": subject,
                "n_windows": int(mask.sum()),
                "f1_macro": f1_score(truth, predicted, average="macro", zero_division=0),
                "kappa": _kappa(truth, predicted, labels),
                "accuracy": accuracy_score(truth, predicted),
            }
        )
    return pd.DataFrame(rows, columns=["subject", "n_windows", "f1_macro", "kappa", "accuracy"])


def _kappa(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> float:
    """Cohen's kappa; NaN, without a warning, where one class fills truth and predictions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return cohen_kappa_score(y_true, y_pred, labels=labels, replace_undefined_by=np.nan)


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, arm[, selection]).

    Columns: n_subjects (distinct), n_scores (rows averaged), f1/kappa/accuracy mean and SD,
    and the relative improvement in % of the mean F1 over scratch and over the forest of
    the same dataset (and selection), NaN where that arm is absent.
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack columns {missing}")
    unknown = sorted(set(scores["arm"]) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; arms are {list(ARMS)}")
    keys = _summary_keys(scores)
    grouped = scores.groupby(keys, sort=False)
    summary = grouped.agg(
        n_subjects=("subject", "nunique"),
        n_scores=("subject", "size"),
        **{
            f"{name}_{stat}": (column, stat)
            for name, column in SUMMARY_METRICS.items()
            for stat in ("mean", "std")
        },
    ).reset_index()
    summary = summary.rename(columns=lambda c: c.replace("_std", "_sd"))
    for name in SUMMARY_METRICS:
        counts = grouped[SUMMARY_METRICS[name]].count().to_numpy()
        single = counts == 1
        summary.loc[single, f"{name}_sd"] = 0.0
    for column, reference_arm in REFERENCE_ARMS.items():
        summary[column] = _relative_f1(summary, keys, reference_arm)
    arm_rank = summary["arm"].map({arm: i for i, arm in enumerate(ARMS)})
    order = summary.assign(_rank=arm_rank).sort_values(
        [k for k in keys if k != "arm"] + ["_rank"], kind="stable"
    )
    return order.drop(columns="_rank").reset_index(drop=True)


def results_markdown(summary: pd.DataFrame) -> str:
    """The paper's layout: rows = datasets, columns = arms; macro F1, kappa, then the
    relative F1 improvements over scratch and over the forest."""
    keys = _summary_keys(summary)
    row_keys = [k for k in keys if k != "arm"]
    rows = summary[row_keys].drop_duplicates()
    arms = [arm for arm in ARMS if arm in set(summary["arm"])]
    tables = [
        ("Macro F1 (mean ± SD over test subjects)", _mean_sd_cell("f1")),
        ("Cohen's kappa (mean ± SD over test subjects)", _mean_sd_cell("kappa")),
        ("Relative F1 improvement over scratch (%)", _percent_cell("f1_rel_vs_scratch")),
        ("Relative F1 improvement over the random forest (%)", _percent_cell("f1_rel_vs_forest")),
    ]
    blocks = []
    for title, cell in tables:
        lines = [f"### {title}", "", "| dataset | " + " | ".join(arms) + " |"]
        lines.append("|---" * (len(arms) + 1) + "|")
        for values in rows.itertuples(index=False):
            row = dict(zip(row_keys, values, strict=True))
            match = (summary[row_keys] == pd.Series(row)).all(axis=1)
            by_arm = {r["arm"]: r for _, r in summary[match].iterrows()}
            cells = [cell(by_arm[arm]) if arm in by_arm else "—" for arm in arms]
            lines.append(f"| {_row_label(row)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _summary_keys(frame: pd.DataFrame) -> list[str]:
    return ["dataset", "arm"] + ([SELECTION] if SELECTION in frame.columns else [])


def _relative_f1(summary: pd.DataFrame, keys: list[str], reference_arm: str) -> pd.Series:
    """100 * (F1 - F1_ref) / F1_ref against the reference arm's row with the same other keys;
    with a selection key, a dataset's only reference row serves every selection."""
    others = [k for k in keys if k != "arm"]
    reference = summary[summary["arm"] == reference_arm]
    relative = pd.Series(np.nan, index=summary.index)
    for index, row in summary.iterrows():
        same = reference[(reference[others] == row[others]).all(axis=1)]
        if same.empty and SELECTION in others:
            of_dataset = reference[reference["dataset"] == row["dataset"]]
            same = of_dataset if len(of_dataset) == 1 else same
        if len(same) == 1 and same["f1_mean"].iloc[0] > 0:
            ref = same["f1_mean"].iloc[0]
            relative[index] = 100.0 * (row["f1_mean"] - ref) / ref
    return relative


def _mean_sd_cell(name: str) -> Callable[[pd.Series], str]:
    def cell(row: pd.Series) -> str:
        mean, sd = row[f"{name}_mean"], row[f"{name}_sd"]
        return "—" if pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"

    return cell


def _percent_cell(column: str) -> Callable[[pd.Series], str]:
    def cell(row: pd.Series) -> str:
        value = row[column]
        return "—" if pd.isna(value) else f"{value:+.1f}"

    return cell


def _row_label(row: dict) -> str:
    label = str(row["dataset"])
    return f"{label} ({row[SELECTION]} seeds)" if SELECTION in row else label
