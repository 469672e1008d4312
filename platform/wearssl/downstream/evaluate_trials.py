"""The evaluation's trials on Ray Tune: the trainable around :func:`run_trial`, the files
each trial leaves (record, test predictions, attempt markers), its MLflow run (opened when
it starts, closed when it ends), and what the job reads back.

Output folder ``OUTPUT/trials/DATASET/``, per trial ``ARM-FOLD-sSEED``: ``.json`` (the
record), ``.parquet`` (the test predictions) and ``attempts/`` (one file per execution).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from ray import tune

from wearssl.config.evaluate import Resources
from wearssl.config.vocabulary import FOREST
from wearssl.downstream.datasets import dataset_digest, file_digest
from wearssl.downstream.results import TrialRun, mean_scores, predictions_table
from wearssl.downstream.tracked_runs import TrialRuns
from wearssl.downstream.trial import TrialOutcome, TrialSpec, run_trial
from wearssl.downstream.tune_run import TuneSettings, result_spec, run_trials
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.infra.files import add_marker, write_json, write_parquet
from wearssl.infra.mlflow_runs import finite, log_metrics
from wearssl.infra.tracking import FINISHED_AT_TAG, utc_timestamp
from wearssl.models.export import CLASSIFIER_FILE
from wearssl.models.harnet import save_checkpoint

TrialFunction = Callable[[TrialSpec], TrialOutcome]


@dataclass(frozen=True)
class TrialFiles:
    record: Path
    predictions: Path
    attempts: Path

    @classmethod
    def of(cls, output: str | Path, spec: TrialSpec) -> TrialFiles:
        folder = Path(output) / "trials" / spec.dataset.name
        return cls(
            folder / f"{spec.stem}.json",
            folder / f"{spec.stem}.parquet",
            folder / "attempts" / spec.stem,
        )


def trial_folder(spec: TrialSpec) -> str:
    """The name of a trial's folder in Tune's storage."""
    return f"{spec.dataset.name}-{spec.stem}"


def decisive_inputs(specs: list[TrialSpec]) -> dict[str, Any]:
    """Everything that decides the trials' results: the specs and the content of the
    labelled sets and weights files they read."""
    data = sorted({spec.dataset.path for spec in specs})
    init = sorted({spec.init for spec in specs if spec.init is not None})
    return {
        "trials": [spec.decisive() for spec in specs],
        "data_digests": {path: dataset_digest(path) for path in data},
        "init_digests": {path: file_digest(path) for path in init},
    }


def trial_description(spec: TrialSpec, config_name: str) -> str:
    """The trial's MLflow description: job, config, dataset, arm, fold and seed."""
    return (
        f"Evaluation {config_name!r}, dataset {spec.dataset.name}: arm {spec.arm} "
        f"trained on fold {spec.fold} with seed {spec.seed}."
    )


def evaluation_trial(spec: TrialSpec, output: str, trial: TrialFunction, runs: TrialRuns) -> None:
    """The body of a Tune trial: open its MLflow run, run ``spec`` (``trial``:
    :func:`run_trial`), save its test predictions and record, log its results and close
    the run, report its scores (and its model as a checkpoint)."""
    started = time.time()
    files = TrialFiles.of(output, spec)
    add_marker(files.attempts, spec.key)
    run_id = runs.start(
        spec.dataset.name,
        trial_folder(spec),
        trial_description(spec, runs.config_name),
        tags={"trial": spec.key, "arm": spec.arm},
        params=spec.labels(),
        started=started,
    )
    with tracking.run_outcome(run_id, runs.uri):
        outcome = trial(spec)
        fold, arm = outcome.fold, outcome.arm
        write_parquet(
            files.predictions,
            predictions_table(spec.labels(), outcome.data, fold, arm.probabilities),
        )
        record = {
            **spec.labels(),
            "key": spec.key,
            "run_id": run_id,
            "val_loss": arm.val_loss,
            "best_epoch": arm.best_epoch,
            "epochs": len(arm.history),
            "history": [vars(epoch) for epoch in arm.history],
            "n_train": len(fold.train),
            "n_val": len(fold.val),
            "n_test": len(fold.test),
            "n_test_subjects": len(outcome.scores),
            "started_at": started,
            "finished_at": time.time(),
            "predictions": str(files.predictions),
            **mean_scores(outcome.scores),
        }
        log_trial_results(mlflow.MlflowClient(tracking_uri=runs.uri), run_id, record)
    write_json(files.record, record)
    metrics = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
    report_with_model(metrics, spec, outcome)


def trial_metrics(record: dict[str, Any]) -> list[Metric]:
    """A trial's MLflow metrics: ``test/`` mean scores over its test subjects, ``val/`` and
    ``train/`` losses per epoch (the epoch as the step) and of the kept epoch, and
    ``time/trial_s``."""
    now = int(time.time() * 1000)
    scalars = {
        "test/f1_macro_mean": record["f1_mean"],
        "test/kappa_mean": record["kappa_mean"],
        "test/accuracy_mean": record["accuracy_mean"],
        "test/subjects": record["n_test_subjects"],
        "val/best_loss": record["val_loss"],
        "train/best_epoch": record["best_epoch"],
        "train/epochs": record["epochs"],
        "time/trial_s": record["finished_at"] - record["started_at"],
    }
    metrics = [Metric(k, float(v), now, 0) for k, v in scalars.items() if finite(v)]
    for epoch in record["history"]:
        for stage in ("train", "val"):
            loss = epoch[f"{stage}_loss"]
            if finite(loss):
                metrics.append(Metric(f"{stage}/loss", float(loss), now, int(epoch["epoch"])))
    return metrics


def log_trial_results(client: mlflow.MlflowClient, run_id: str, record: dict[str, Any]) -> None:
    """The trial's metrics (:func:`trial_metrics`) and ``finished_at`` on its run."""
    log_metrics(client, run_id, trial_metrics(record))
    client.set_tag(run_id, FINISHED_AT_TAG, utc_timestamp(record["finished_at"]))


def report_with_model(metrics: dict[str, Any], spec: TrialSpec, outcome: TrialOutcome) -> None:
    if outcome.arm.model is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(
            Path(folder) / CLASSIFIER_FILE,
            outcome.arm.model,
            window_seconds=outcome.data.window_seconds,
            labels=list(outcome.data.label_names),
            extra={key: value for key, value in spec.labels().items() if key != "fold_index"},
        )
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def score_line(metrics: dict[str, Any]) -> str:
    """How a finished trial's line tells its score: the mean test macro F1."""
    return f"test macro F1 {metrics.get('f1_mean', float('nan')):.3f}"


def trial_resources(resources: Resources, cluster: dict[str, float]):
    """Per-trial resources: CPUs, plus a GPU share for neural arms where GPUs exist."""
    use_gpu = float(cluster.get("GPU", 0.0)) > 0 and resources.gpus_per_trial > 0

    def of(spec: TrialSpec) -> tune.PlacementGroupFactory:
        bundle = {"CPU": resources.cpus_per_trial}
        if use_gpu and spec.arm != FOREST:
            bundle["GPU"] = resources.gpus_per_trial
        return tune.PlacementGroupFactory([bundle])

    return of


def concurrency(resources: Resources, cluster: dict[str, float]) -> int:
    """Trials at once: the configured number, else as many as the cluster's CPUs hold."""
    cpus = float(cluster.get("CPU", 0.0))
    if resources.cpus_per_trial > cpus + 1e-9:
        raise runtime.ResourcePlanError(
            f"resources.cpus_per_trial={resources.cpus_per_trial:g} but the cluster has "
            f"{cpus:g} CPUs"
        )
    return resources.max_concurrent_trials or max(1, int(cpus // resources.cpus_per_trial))


def tune_settings(
    name: str, storage: str, resources: Resources, cluster: dict[str, float], max_concurrent: int
) -> TuneSettings:
    """How the evaluation's experiment ``name`` runs, ``max_concurrent`` trials at once
    (:func:`concurrency`)."""
    return TuneSettings(
        name=name,
        storage=storage,
        max_concurrent=max_concurrent,
        resources=trial_resources(resources, cluster),
        folder=trial_folder,
        errored="restart",
        what="evaluation",
        describe=score_line,
        reuse_actors=True,
    )


def run_evaluation_trials(
    specs: list[TrialSpec], settings: TuneSettings, output: Path, runs: TrialRuns
) -> list[TrialRun]:
    """Run (or resume) the experiment of ``specs``, each trial's MLflow run under its
    dataset's parent in ``runs``; every trial's record and model checkpoint. The trainable
    is handed the trial function, so a test can substitute one that fails."""
    grid = run_trials(
        evaluation_trial, specs, settings, output=str(output), trial=run_trial, runs=runs
    )
    by_folder = {trial_folder(spec): spec for spec in specs}
    runs = []
    for result in grid:
        files = TrialFiles.of(output, result_spec(result, by_folder))
        runs.append(TrialRun(json.loads(files.record.read_text()), result.checkpoint))
    return runs
