"""The evaluation's export: per dataset, the best fine-tuned model with the HMM of its
training fold, as a prediction model (:mod:`wearssl.models.export`), logged and registered
in MLflow for the prediction job."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from wearssl.config.vocabulary import NEURAL_ARMS
from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold
from wearssl.downstream.finetune import predict_probabilities
from wearssl.downstream.results import TrialRun, validation_loss
from wearssl.infra.mlflow_runs import log_model
from wearssl.models.export import CLASSIFIER_FILE, load_classifier, save_prediction_model
from wearssl.models.harnet import HarNet
from wearssl.models.hmm import HmmParams, fit_hmm, label_sequences
from wearssl.models.resolve import CHECKPOINT_ARTIFACT


@dataclass
class ExportedModel:
    dataset: str
    path: Path
    arm: str
    trial: str
    val_loss: float
    f1_mean: float
    registered_name: str | None = None
    registered_version: str | None = None


def export_best_model(
    data: LabelledSet,
    folds: list[Fold],
    summary: pd.DataFrame,
    runs: list[TrialRun],
    out_dir: str | Path,
) -> ExportedModel | None:
    """Save the best fine-tuned model of ``data`` as a prediction model with its HMM
    (:func:`fold_hmm` on the trial's fold of ``folds``).

    Best arm: the neural arm with the highest mean F1 in ``summary``; best trial: that
    arm's trial with the lowest validation loss. None when no neural arm ran.
    """
    dataset = data.name
    neural = summary[(summary["dataset"] == dataset) & summary["arm"].isin(NEURAL_ARMS)]
    if neural.empty:
        return None
    best_arm = neural.sort_values("f1_mean", ascending=False, kind="stable").iloc[0]
    candidates = [
        r for r in runs if r.record["dataset"] == dataset and r.record["arm"] == best_arm["arm"]
    ]
    best = min(candidates, key=validation_loss)
    if best.checkpoint is None:
        raise ValueError(f"trial {best.record['key']} has no saved model to export")
    with best.checkpoint.as_directory() as folder:
        model, _ = load_classifier(Path(folder) / CLASSIFIER_FILE)
    fold = next(f for f in folds if f.name == best.record["fold"])
    exported = ExportedModel(
        dataset,
        Path(out_dir) / f"{dataset}.pt",
        str(best_arm["arm"]),
        best.record["key"],
        float(best.record["val_loss"]),
        float(best_arm["f1_mean"]),
    )
    save_prediction_model(
        exported.path,
        model,
        window_seconds=data.window_seconds,
        labels=list(data.label_names),
        hmm=fold_hmm(model, data, fold),
        metadata={
            "arm": exported.arm,
            "dataset": dataset,
            "trial": exported.trial,
            "val_loss": exported.val_loss,
            "f1_mean": exported.f1_mean,
        },
    )
    return exported


def fold_hmm(model: HarNet, data: LabelledSet, fold: Fold) -> HmmParams:
    """The HMM of ``model``, trained on ``fold``: prior and transitions from the labels of
    the fold's training and validation windows in time order per subject; emissions from
    the model's predictions on the validation windows, the ones it was not trained on (on
    its training windows it is right far more often than on new people)."""
    known = np.concatenate([fold.train, fold.val])
    sequences = label_sequences(
        data.labels[known],
        data.subjects[known],
        data.times_ms[known],
        window_ms=data.window_seconds * 1000,
    )
    probabilities = predict_probabilities(model, data.windows[fold.val], batch_size=256)
    return fit_hmm(sequences, probabilities, data.labels[fold.val], len(data.label_names))


def register_export(
    exported: ExportedModel, run_id: str, registered_name: str | None, uri: str
) -> ExportedModel:
    """Log the export to the dataset's parent run as ``checkpoint/harnet.pt`` (so
    :func:`wearssl.models.resolve.resolve_weights` finds it) with an ``mlflow.pytorch`` model,
    registered under ``registered_name`` when given."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    folder, name = CHECKPOINT_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as staging:
        shutil.copyfile(exported.path, Path(staging) / name)
        client.log_artifact(run_id, str(Path(staging) / name), artifact_path=folder)
    model, _ = load_classifier(exported.path)
    version = log_model(run_id, model, registered_name, uri)
    if registered_name:
        exported.registered_name = registered_name
        exported.registered_version = version
    return exported
