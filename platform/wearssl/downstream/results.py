"""The evaluation's results from its finished trials: test predictions saved per trial,
the seeds selected, per-subject scores recomputed from the predictions, and the tables."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ray import tune

from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold
from wearssl.downstream.metrics import (
    SUMMARY_METRICS,
    per_subject_scores,
    results_markdown,
)

SCORE_METRICS = tuple(SUMMARY_METRICS.values())


@dataclass
class TrialRun:
    """What Tune gives back per finished trial: its record and its model checkpoint."""

    record: dict[str, Any]
    checkpoint: tune.Checkpoint | None


def predictions_table(
    labels: dict[str, Any], data: LabelledSet, fold: Fold, probabilities: np.ndarray
) -> pa.Table:
    """Per test window: index in the (subset) labelled set, subject, truth, prediction,
    class probabilities; label names and the trial's ``labels`` in the schema metadata."""
    k = probabilities.shape[1]
    table = pa.table(
        {
            "window": pa.array(fold.test.astype(np.int64)),
            "subject": pa.array(data.subjects[fold.test].astype(str)),
            "y_true": pa.array(data.labels[fold.test].astype(np.int64)),
            "y_pred": pa.array(probabilities.argmax(axis=1).astype(np.int64)),
            "probabilities": pa.FixedSizeListArray.from_arrays(
                pa.array(probabilities.astype(np.float32).reshape(-1)), k
            ),
        }
    )
    metadata = {
        "label_names": json.dumps(list(data.label_names)),
        **{key: str(value) for key, value in labels.items()},
    }
    return table.replace_schema_metadata(metadata)


def read_predictions(path: str | Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def mean_scores(scores: pd.DataFrame) -> dict[str, float]:
    return {
        f"{name}_mean": float(scores[column].mean()) for name, column in SUMMARY_METRICS.items()
    }


def validation_loss(run: TrialRun) -> float:
    """The trial's validation loss; infinite where it has none (the forest)."""
    loss = run.record["val_loss"]
    return math.inf if loss is None or math.isnan(loss) else loss


def select_runs(runs: list[TrialRun], selection: str) -> list[TrialRun]:
    """Every seed ("all"), or per (dataset, arm, fold) the seed with the lowest validation
    loss ("best")."""
    if selection == "all":
        return list(runs)
    best: dict[tuple, TrialRun] = {}
    for run in runs:
        group = (run.record["dataset"], run.record["arm"], run.record["fold"])
        current = best.get(group)
        if current is None or validation_loss(run) < validation_loss(current):
            best[group] = run
    return list(best.values())


def scores_from_predictions(
    runs: list[TrialRun], n_classes: dict[str, int], selection: str
) -> pd.DataFrame:
    """Per test subject and trial: macro F1, kappa, accuracy, from the saved predictions."""
    frames = []
    for run in runs:
        record = run.record
        predictions = read_predictions(record["predictions"])
        scores = per_subject_scores(
            predictions["y_true"].to_numpy(),
            predictions["y_pred"].to_numpy(),
            predictions["subject"].to_numpy(),
            labels=list(range(n_classes[record["dataset"]])),
        )
        for column in ("dataset", "arm", "fold", "seed"):
            scores.insert(0, column, record[column])
        frames.append(scores)
    scores = pd.concat(frames, ignore_index=True)
    scores["selection"] = selection
    return scores[
        ["dataset", "arm", "fold", "seed", "selection", "subject", "n_windows", *SCORE_METRICS]
    ]


def trials_frame(runs: list[TrialRun]) -> pd.DataFrame:
    rows = [{k: v for k, v in run.record.items() if k != "history"} for run in runs]
    return pd.DataFrame(rows).sort_values(["dataset", "arm", "fold", "seed"], ignore_index=True)


def write_results(
    results_dir: Path, scores: pd.DataFrame, summary: pd.DataFrame, trials: pd.DataFrame
) -> str:
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown = results_markdown(summary)
    scores.to_csv(results_dir / "scores.csv", index=False)
    summary.to_csv(results_dir / "summary.csv", index=False)
    trials.to_csv(results_dir / "trials.csv", index=False)
    (results_dir / "results.md").write_text(markdown)
    return markdown
