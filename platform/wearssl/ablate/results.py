"""An ablation's results from its trials' records: one row per trial, the scores of every
test subject with the point they belong to, the summary per point and arm, and its
Markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from wearssl.ablate.evaluation import score_summary
from wearssl.ablate.points import REFERENCE, value_label
from wearssl.ablate.trial import EXECUTIONS, REUSES, SCORES_FILE, trial_folder
from wearssl.config.ablate import AblateConfig
from wearssl.infra.files import count_markers


def trials_table(records: list[dict[str, Any]], kind: str, sweep_dir: Path) -> pd.DataFrame:
    """One row per trial, dataset and arm: the point, the scores, timings, executions."""
    rows = []
    for record in records:
        folder = trial_folder(sweep_dir, record["stem"])
        base = {
            "trial": record["key"],
            "role": record["role"],
            **point_columns(record["point"], kind),
            "seed": record["seed"],
            "started_at": record["started_at"],
            "finished_at": record["finished_at"],
            "wall_s": record["finished_at"] - record["started_at"],
            "eval_wall_s": record["eval_wall_s"],
            "executions": count_markers(folder / EXECUTIONS),
            "reuses": count_markers(folder / REUSES),
        }
        pretrain = record.get("pretrain")
        if pretrain:
            base["pretrain_wall_s"] = pretrain["finished_at"] - pretrain["started_at"]
            base["pretrain_val_loss"] = pretrain_val_loss(pretrain["metrics"])
        rows += [{**base, **row} for row in record["summary"]]
    return pd.DataFrame(rows)


def pretrain_val_loss(metrics: dict[str, float]) -> float:
    """The pre-training's held-out loss, ``val/loss`` (``val_loss`` in trial records written
    before metric names were grouped by stage); NaN when it has none."""
    return metrics.get("val/loss", metrics.get("val_loss", math.nan))


def point_columns(point: dict[str, Any], kind: str) -> dict[str, Any]:
    """``x`` (the swept value, None for a reference trial) and ``series`` labels."""
    series = [k for k in point if k != kind]
    x = point.get(kind)
    return {
        "x": value_label(kind, x) if kind == "tasks" and x is not None else x,
        "x_label": value_label(kind, point[kind]) if kind in point else REFERENCE,
        "series": value_label(series[0], point[series[0]]) if series else "",
    }


def scores_table(records: list[dict[str, Any]], kind: str, sweep_dir: Path) -> pd.DataFrame:
    frames = []
    for record in records:
        scores = pd.read_csv(
            trial_folder(sweep_dir, record["stem"]) / SCORES_FILE, dtype={"subject": str}
        )
        columns = point_columns(record["point"], kind)
        for position, (column, value) in enumerate(columns.items()):
            scores.insert(position, column, [value] * len(scores))
        frames.append(scores)
    return pd.concat(frames, ignore_index=True)


def sweep_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per point (x, series), dataset and arm: F1, kappa, accuracy mean and SD over every
    test subject of every fold and seed (the paper's mean +- SD over subjects)."""
    frames = []
    for (x_label, series), group in scores.groupby(["x_label", "series"], sort=False):
        summary = score_summary(group)
        summary.insert(0, "series", series)
        summary.insert(0, "x_label", x_label)
        summary.insert(0, "x", group["x"].iloc[0])
        frames.append(summary)
    drop = [c for c in ("f1_rel_vs_scratch", "f1_rel_vs_forest") if c in frames[0].columns]
    return pd.concat(frames, ignore_index=True).drop(columns=drop)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one time."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def overlapping_pairs(intervals: list[tuple[float, float]]) -> int:
    return sum(
        1
        for i, (a_start, a_end) in enumerate(intervals)
        for b_start, b_end in intervals[i + 1 :]
        if a_start < b_end and b_start < a_end
    )


def summary_markdown(
    cfg: AblateConfig, summary: pd.DataFrame, trials: pd.DataFrame, wall_s: float, plot: Path
) -> str:
    """The sweep's Markdown summary: F1 per point and arm, timings, the plot."""
    columns = list(dict.fromkeys(zip(summary["dataset"], summary["arm"], strict=True)))
    header = ["point"] + [f"{dataset} {arm}" for dataset, arm in columns]
    lines = [
        f"# Ablation {cfg.name}: {cfg.sweep.kind.replace('_', ' ')}",
        "",
        "Macro F1, mean ± SD over test subjects (all folds and seeds).",
        "",
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
    ]
    for (x_label, series), rows in summary.groupby(["x_label", "series"], sort=False):
        by_column = {(r.dataset, r.arm): r for r in rows.itertuples()}
        label = f"{x_label} ({cfg.sweep.series.kind} {series})" if series else x_label
        cells = [
            f"{by_column[c].f1_mean:.3f} ± {by_column[c].f1_sd:.3f}" if c in by_column else "—"
            for c in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    per_trial = trials.drop_duplicates("trial")
    intervals = list(zip(per_trial["started_at"], per_trial["finished_at"], strict=True))
    lines += [
        "",
        f"{len(per_trial)} trials in {wall_s:.0f} s; trial wall time "
        f"{per_trial['wall_s'].min():.0f}-{per_trial['wall_s'].max():.0f} s; at most "
        f"{max_overlap(intervals)} trials at once ({overlapping_pairs(intervals)} overlapping "
        f"pairs); executions {int(per_trial['executions'].sum())}, reused records "
        f"{int(per_trial['reuses'].sum())}.",
        "",
        f"![F1 against {cfg.sweep.kind}]({plot.name})",
        "",
    ]
    return "\n".join(lines)
