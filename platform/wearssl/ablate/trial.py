"""One ablation trial on Ray Tune: pre-train the point's model (pre-training sweeps),
evaluate it downstream, record and report.

A trial's folder ``EXPERIMENT/trials/STEM/`` holds ``record.json`` (written last: the
trial is done), ``scores.csv``, ``pretrain.json`` and ``harnet.pt`` (its finished
pre-training), ``executions/`` and ``reuses/`` (one marker each time it ran or was found
already finished) and ``mlflow_run.json``. A trial that finds its own record (finished
just before an interruption, before Tune saved its state) reports it instead of running
again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray import tune

from wearssl.ablate.evaluation import (
    SCORE_SUMMARY,
    EvaluationPlan,
    evaluate_in_task,
    score_summary,
)
from wearssl.ablate.points import AblationTrial, value_label
from wearssl.ablate.pretraining import PretrainPlan, pretrain_stage, trial_pretrain_config
from wearssl.config import flatten
from wearssl.downstream.metrics import tracked_metric
from wearssl.downstream.tracked_runs import open_run, start_tags
from wearssl.downstream.tune_run import TuneSettings, run_trials
from wearssl.infra import tracking
from wearssl.infra.files import add_marker, write_json
from wearssl.infra.mlflow_runs import RUN_RECORD, finite
from wearssl.infra.tracking import FINISHED_AT_TAG, utc_timestamp

RECORD_FILE = "record.json"
SCORES_FILE = "scores.csv"
EXECUTIONS = "executions"
REUSES = "reuses"

Evaluate = Callable[[EvaluationPlan, AblationTrial, str | None], pd.DataFrame]


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep receives, built once by the driver."""

    name: str  # the config's name
    kind: str  # the swept kind
    experiment: str  # the Tune experiment: the name plus the sweep's digest
    sweep_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    source: Mapping[str, str]  # the job's source tags, carried by every trial run
    evaluation: EvaluationPlan
    pretrain: PretrainPlan | None  # None: a labelled-subjects sweep
    init: str | None  # the weights a labelled-subjects sweep's initialised arms start from


def trial_folder(sweep_dir: str | Path, stem: str) -> Path:
    return Path(sweep_dir) / "trials" / stem


def trial_description(context: SweepContext, spec: AblationTrial) -> str:
    """The trial's MLflow description: job, config, swept kind and point, seed, arms."""
    point = ", ".join(f"{kind} {value_label(kind, value)}" for kind, value in spec.point.items())
    what = "pre-trains a model, then evaluates" if spec.pretrain is not None else "evaluates"
    return (
        f"Ablation {context.name!r} of {context.kind.replace('_', ' ')}: "
        f"{point or 'the reference arms, without pre-training'}, seed {spec.seed}; "
        f"{what} arms {', '.join(spec.arms)} on "
        f"{', '.join(plan.name for plan in context.evaluation.datasets)}."
    )


def child_run(
    client: mlflow.MlflowClient,
    context: SweepContext,
    spec: AblationTrial,
    folder: Path,
    started: float,
) -> str:
    """The trial's MLflow run under the sweep's parent: the one an earlier execution
    recorded (set running again), else a new RUNNING one starting at ``started`` (seconds
    since the epoch) with the trial's description, ``started_at`` and parameters."""
    params: dict[str, Any] = {
        "sweep.kind": context.kind,
        "seed": spec.seed,
        "arms": ",".join(spec.arms),
        **{f"point.{kind}": value_label(kind, value) for kind, value in spec.point.items()},
    }
    if spec.training_subjects is not None:
        params["training_subjects"] = spec.training_subjects
    if spec.pretrain is not None:
        merged = trial_pretrain_config(context.pretrain, spec)
        params.update({f"pretrain.{k}": v for k, v in flatten(merged).items()})
    create = {
        "experiment_id": context.experiment_id,
        "run_name": f"{context.name}/{spec.key}",
        "start_time": int(started * 1000),
        "tags": {
            MLFLOW_PARENT_RUN_ID: context.parent_run_id,
            "trial": spec.key,
            "role": spec.role,
            **context.source,
            **start_tags(trial_description(context, spec), started),
        },
    }
    return open_run(client, folder / RUN_RECORD, context.tracking_uri, create, params)


def pretrain_metric(key: str) -> str | None:
    """A pre-training metric as the trial logs it, ``<stage>/pretrain_<name>``, for its
    losses and task accuracies (named ``val/loss`` or ``val_loss``); None for the rest."""
    stage, slash, name = key.partition("/")
    if not slash:
        stage, _, name = key.partition("_")
    if stage not in ("train", "val", "test") or not (name == "loss" or "acc" in name):
        return None
    return f"{stage}/pretrain_{name}"


def trial_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers a trial reports to Tune and logs to its MLflow run: ``time/`` durations,
    the pre-training's losses and accuracies, and ``test/<dataset>/<arm>/<metric>`` per
    dataset and arm."""
    metrics = {
        "time/trial_s": record["finished_at"] - record["started_at"],
        "time/eval_s": record["eval_wall_s"],
    }
    pretrain = record.get("pretrain")
    if pretrain:
        metrics["time/pretrain_s"] = pretrain["finished_at"] - pretrain["started_at"]
        metrics["train/pretrain_epochs"] = pretrain["epochs"]
        for key, value in pretrain["metrics"].items():
            name = pretrain_metric(key)
            if name is not None:
                metrics[name] = value
    for row in record["summary"]:
        for column in SCORE_SUMMARY:
            metrics[f"test/{row['dataset']}/{row['arm']}/{tracked_metric(column)}"] = row[column]
    return {k: float(v) for k, v in metrics.items() if finite(v)}


def score_line(metrics: dict[str, Any]) -> str:
    """How a finished trial's line tells its scores: each arm's mean test macro F1."""
    scores = [
        f"{name.split('/')[2]} {value:.3f}"
        for name, value in metrics.items()
        if name.startswith("test/") and name.endswith("/f1_macro_mean")
    ]
    return f"test macro F1 {', '.join(scores)}" if scores else "no scores"


def sweep_trial(spec: AblationTrial, context: SweepContext, evaluate: Evaluate) -> None:
    """The body of a Tune trial: pre-train (pre-training sweeps), evaluate (``evaluate``:
    :func:`evaluate_in_task`), record, report."""
    folder = trial_folder(context.sweep_dir, spec.stem)
    record_path = folder / RECORD_FILE
    if record_path.is_file():
        add_marker(folder / REUSES, spec.key)
        tune.report(trial_metrics(json.loads(record_path.read_text())))
        return
    add_marker(folder / EXECUTIONS, spec.key)
    started = time.time()
    client = mlflow.MlflowClient(tracking_uri=context.tracking_uri)
    run_id = child_run(client, context, spec, folder, started)
    with tracking.run_outcome(run_id, context.tracking_uri):
        pretrain = None
        init = context.init
        if spec.pretrain is not None:
            pretrain = pretrain_stage(context.pretrain, spec, folder, run_id)
            init = pretrain["weights"]
        eval_started = time.time()
        scores = evaluate(context.evaluation, spec, init)
        summary = score_summary(scores)
        scores.to_csv(folder / SCORES_FILE, index=False)
        record = {
            **spec.labels(),
            "run_id": run_id,
            "pretrain": pretrain,
            "started_at": started,
            "eval_wall_s": time.time() - eval_started,
            "finished_at": time.time(),
            "summary": summary[["dataset", "arm", "n_subjects", *SCORE_SUMMARY]].to_dict("records"),
        }
        metrics = trial_metrics(record)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        if pretrain:
            client.set_tag(run_id, "pretrain_run_id", pretrain["run_id"])
        client.set_tag(run_id, FINISHED_AT_TAG, utc_timestamp(record["finished_at"]))
    write_json(record_path, record)
    tune.report(metrics)


def run_sweep_trials(
    specs: list[AblationTrial], context: SweepContext, settings: TuneSettings
) -> tune.ResultGrid:
    """Run (or resume) the sweep's experiment. The trainable is handed the evaluation
    function, so a test can substitute one that fails."""
    return run_trials(sweep_trial, specs, settings, context=context, evaluate=evaluate_in_task)


def trial_stem(spec: AblationTrial) -> str:
    """Tune's name and folder of a trial: the trial's stem."""
    return spec.stem
