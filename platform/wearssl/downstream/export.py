"""The evaluation's export: per dataset, the best fine-tuned model with the HMM of its
training fold, as a prediction model (:mod:`wearssl.models.export`), logged and registered
in MLflow for the prediction job.

A registered version carries a description (what it predicts, its labels, dataset, config
and test macro F1), its score as the tag :data:`SCORE_TAG`, and an alias: ``champion``
when its mean test macro F1 is at least the current champion's, else ``challenger``; so
``models:/NAME@champion`` is the best version registered so far.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from wearssl.config.vocabulary import NEURAL_ARMS
from wearssl.data.corpus import SAMPLE_RATE_HZ, window_samples
from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold
from wearssl.downstream.finetune import predict_probabilities
from wearssl.downstream.results import TrialRun, validation_loss
from wearssl.infra.mlflow_runs import RegisteredVersion, log_model
from wearssl.models.export import CLASSIFIER_FILE, load_classifier, save_prediction_model
from wearssl.models.harnet import HarNet
from wearssl.models.hmm import HmmParams, fit_hmm, label_sequences
from wearssl.models.resolve import CHECKPOINT_ARTIFACT

CHAMPION = "champion"
CHALLENGER = "challenger"
SCORE_TAG = "test_f1_macro_mean"  # a registered version's mean test macro F1


@dataclass(frozen=True)
class ModelCard:
    """What a registered model's description says beyond the export itself."""

    config_name: str
    dataset: str
    labels: list[str]


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
    alias: str | None = None


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


def model_description(exported: ExportedModel, card: ModelCard, window_seconds: int) -> str:
    """A registered version's description: what it predicts, from what, and how well."""
    return (
        f"Predicts the activity of each {window_seconds}-s window of wrist acceleration "
        f"(3 axes in g at {SAMPLE_RATE_HZ} Hz, {window_samples(window_seconds)} samples) as "
        f"one of: {', '.join(card.labels)}. Arm {exported.arm} of evaluation "
        f"{card.config_name!r} on dataset {card.dataset} (trial {exported.trial}); mean test "
        f"macro F1 {exported.f1_mean:.3f} over test subjects."
    )


def alias_for(score: float, champion_score: float | None) -> str:
    """``champion`` for a version scoring at least the champion (or when there is none or
    its score is unknown), else ``challenger``."""
    if champion_score is None or math.isnan(champion_score):
        return CHAMPION
    return CHAMPION if score >= champion_score else CHALLENGER


def champion_score(client: mlflow.MlflowClient, name: str) -> float | None:
    """The mean test macro F1 of ``name``'s champion version (its :data:`SCORE_TAG`);
    None when it has no champion, NaN when the champion's score is unknown."""
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return float(champion.tags.get(SCORE_TAG, "nan"))


def set_alias(client: mlflow.MlflowClient, name: str, version: str, score: float) -> str:
    """Give version ``version`` of ``name`` the alias :func:`alias_for` chooses; the alias."""
    alias = alias_for(score, champion_score(client, name))
    client.set_registered_model_alias(name, alias, version)
    return alias


def register_export(
    exported: ExportedModel,
    run_id: str,
    registered_name: str | None,
    uri: str,
    card: ModelCard,
) -> ExportedModel:
    """Log the export to the dataset's parent run as ``checkpoint/harnet.pt`` (so
    :func:`wearssl.models.resolve.resolve_weights` finds it) with an ``mlflow.pytorch``
    model, registered under ``registered_name`` when given, with its description, score
    and alias (``champion`` or ``challenger``)."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    folder, name = CHECKPOINT_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as staging:
        shutil.copyfile(exported.path, Path(staging) / name)
        client.log_artifact(run_id, str(Path(staging) / name), artifact_path=folder)
    model, content = load_classifier(exported.path)
    seconds = int(content["window_seconds"])
    registered = None
    if registered_name:
        registered = RegisteredVersion(
            registered_name,
            model_description(exported, card, seconds),
            {
                SCORE_TAG: f"{exported.f1_mean:.6f}",
                "dataset": card.dataset,
                "arm": exported.arm,
                "config": card.config_name,
            },
        )
    version = log_model(run_id, model, uri, window_samples(seconds), len(card.labels), registered)
    if registered_name and version is not None:
        exported.registered_name = registered_name
        exported.registered_version = version
        exported.alias = set_alias(client, registered_name, version, exported.f1_mean)
    return exported
