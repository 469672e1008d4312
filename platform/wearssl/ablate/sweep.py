"""Data-scaling ablations: every point of a sweep is one Ray Tune trial.

A trial of a pre-training sweep (unlabelled subjects, data ratio, weighted sampling,
pretext tasks) pre-trains a model on its own Ray Train worker group — a ``TorchTrainer``
run inside the Tune function trial, the Train V2 way — and then evaluates it downstream
in a Ray task with its own CPUs (:mod:`wearssl.ablate.trial`). Arms that need no
pre-trained model (forest, scratch) are evaluated once per seed in a *reference* trial
rather than at every point (:mod:`wearssl.ablate.points`). A trial of a labelled-subjects
sweep fine-tunes one given model (or trains scratch and the forest) on the first n
training subjects of every fold, drawn nested by seed. Resources:
:mod:`wearssl.ablate.resources`.

Output folder ``OUTPUT = output_dir/name``; one sweep (a config digest) lives in
``OUTPUT/EXPERIMENT``::

    data/                         synthetic labelled sets (OUTPUT/data, shared by sweeps)
    EXPERIMENT/trials/STEM/       per trial: record.json, scores.csv, pretrain.json, harnet.pt,
                                  executions/ and reuses/ (one file each time it ran or was
                                  found already finished), mlflow_run.json
    EXPERIMENT/results/           trials.csv, scores.csv, summary.csv, summary.md, f1.png
    EXPERIMENT/mlflow_run.json    the sweep's parent MLflow run
    runs/EXPERIMENT/              Ray Tune's experiment (unless resources.storage_path)
    runs/pretrain/                the trials' Ray Train runs (checkpoints)

Re-running the same command resumes an interrupted sweep: Tune restores its experiment,
and a trial that finds its own record (finished just before the interruption, before
Tune saved its state) reports it instead of running again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric

from wearssl.ablate.evaluation import EvaluationPlan, evaluation_plan, prepare_datasets
from wearssl.ablate.plots import plot_sweep
from wearssl.ablate.points import REFERENCE, AblationTrial, trial_specs, value_label
from wearssl.ablate.pretraining import (
    PretrainPlan,
    base_pretrain_config,
    check_unlabelled_points,
    trial_pretrain_config,
)
from wearssl.ablate.resources import plan_concurrency, trial_resources
from wearssl.ablate.results import (
    max_overlap,
    scores_table,
    summary_markdown,
    sweep_summary,
    trials_table,
)
from wearssl.ablate.trial import (
    RECORD_FILE,
    SweepContext,
    run_sweep_trials,
    score_line,
    trial_folder,
    trial_stem,
)
from wearssl.config import flatten
from wearssl.config.ablate import COUNT_KINDS, AblateConfig
from wearssl.config.base import with_settings
from wearssl.config.pretrain import PretrainConfig
from wearssl.config.roots import default_roots
from wearssl.data import corpus
from wearssl.downstream.datasets import DatasetPlan, dataset_digest, file_digest
from wearssl.downstream.metrics import tracked_metric
from wearssl.downstream.tracked_runs import open_run, start_tags
from wearssl.downstream.tune_run import TuneSettings, experiment_name
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.infra.files import storage_location
from wearssl.infra.mlflow_runs import (
    RUN_RECORD,
    finite,
    job_tags,
    log_config,
    log_metrics,
    log_params,
    source_tags,
)
from wearssl.infra.tracking import FINISHED_AT_TAG, utc_timestamp
from wearssl.models.resolve import resolve_weights
from wearssl.pretrain.train import ensure_corpus

EXPERIMENT = "ablate"


@dataclass
class AblationResult:
    sweep_dir: Path
    tracking_uri: str
    experiment: str
    parent_run_id: str
    trials: pd.DataFrame
    summary_table: pd.DataFrame
    markdown: str
    plot: Path
    wall_s: float
    child_run_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.markdown}\nresults in {self.sweep_dir / 'results'}"


def decisive_inputs(
    specs: list[AblationTrial],
    pretrain: PretrainConfig | None,
    evaluation: EvaluationPlan,
    init: str | None,
) -> dict[str, Any]:
    """Everything that decides the sweep's results (where its runs are tracked does not)."""
    base = pretrain.model_dump(mode="json", exclude={"tracking"}) if pretrain else None
    return {
        "trials": [spec.decisive() for spec in specs],
        "pretrain": base,
        "evaluation": evaluation.settings.decisive(),
        "datasets": {
            plan.name: {**vars(plan), "digest": dataset_digest(plan.path)}
            for plan in evaluation.datasets
        },
        "init": file_digest(init) if init else None,
    }


def sweep_description(cfg: AblateConfig, datasets: tuple[DatasetPlan, ...]) -> str:
    """The sweep's parent run description: job, config, swept kind and values, datasets."""
    values = ", ".join(value_label(cfg.sweep.kind, value) for value in cfg.sweep.values)
    series = cfg.sweep.series
    also = f" in series of {series.kind.replace('_', ' ')}" if series else ""
    return (
        f"Ablation {cfg.name!r}: {cfg.sweep.kind.replace('_', ' ')} {values}{also}, "
        f"{cfg.sweep.seeds} seed(s), evaluated on "
        f"{', '.join(plan.name for plan in datasets)}; one child run per point and seed."
    )


def sweep_run(
    client: mlflow.MlflowClient,
    cfg: AblateConfig,
    sweep_dir: Path,
    uri: str,
    tags: dict,
    description: str,
) -> str:
    """The sweep's parent run: the one an interrupted run of this sweep recorded, or new."""
    create = {
        "experiment_id": tracking.experiment_id(EXPERIMENT, uri),
        "run_name": cfg.name,
        "tags": {**tags, **start_tags(description, time.time())},
    }
    return open_run(client, sweep_dir / RUN_RECORD, uri, create, flatten(cfg))


def point_steps(kind: str, summary: pd.DataFrame) -> dict[str, int]:
    """The MLflow step of each point (by its ``x_label``): the swept value itself where it
    is a count (subjects), else the point's index in the sweep; 0 for the reference."""
    points = summary[summary["x_label"] != REFERENCE].drop_duplicates("x_label")
    if kind in COUNT_KINDS:
        steps = {row.x_label: int(row.x) for row in points.itertuples()}
    else:
        steps = {label: index for index, label in enumerate(points["x_label"])}
    return {**steps, REFERENCE: 0}


def sweep_metrics(kind: str, series_kind: str | None, summary: pd.DataFrame) -> list[Metric]:
    """Per point, dataset and arm (and series value), the mean and SD of the test macro F1:
    ``test/<dataset>/<arm>[/<series kind>_<value>]/f1_macro_mean``, stepped per
    :func:`point_steps`."""
    now = int(time.time() * 1000)
    steps = point_steps(kind, summary)
    metrics = []
    for row in summary.itertuples():
        series = f"/{series_kind}_{row.series}" if series_kind and row.series else ""
        for column in ("f1_mean", "f1_sd"):
            value = getattr(row, column)
            if finite(value):
                name = f"test/{row.dataset}/{row.arm}{series}/{tracked_metric(column)}"
                metrics.append(Metric(name, float(value), now, steps[row.x_label]))
    return metrics


def log_sweep_results(
    client: mlflow.MlflowClient,
    run_id: str,
    cfg: AblateConfig,
    summary: pd.DataFrame,
    results_dir: Path,
    extra: dict[str, float],
) -> None:
    """The sweep's metrics (:func:`sweep_metrics`; where the steps are indices, each
    point's value as the parameter ``step.<index>``), the results folder and config."""
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in extra.items()]
    series_kind = cfg.sweep.series.kind if cfg.sweep.series else None
    log_metrics(client, run_id, metrics + sweep_metrics(cfg.sweep.kind, series_kind, summary))
    if cfg.sweep.kind not in COUNT_KINDS:
        steps = point_steps(cfg.sweep.kind, summary)
        log_params(
            client,
            run_id,
            {f"step.{step}": label for label, step in steps.items() if label != REFERENCE},
        )
    client.log_artifacts(run_id, str(results_dir), artifact_path="results")
    log_config(client, run_id, cfg)


def prepare_pretraining(cfg: AblateConfig, uri: str) -> PretrainConfig:
    """The base pre-training on a corpus that exists (a synthetic one is made first), its
    subject counts checked against the corpus."""
    pretrain = base_pretrain_config(cfg, uri, EXPERIMENT)
    root = ensure_corpus(pretrain)
    pretrain = with_settings(pretrain, {"corpus": root}, "pretrain")
    check_unlabelled_points(cfg, pretrain, root)
    return pretrain


def run_ablation(cfg: AblateConfig) -> AblationResult:
    """Run (or resume) the sweep ``cfg`` describes on the connected Ray cluster."""
    started = time.time()
    cluster = runtime.connect(cfg.resources.address)
    uri = tracking.configure(cfg.tracking.tracking_uri)
    output = (Path(cfg.output_dir) / cfg.name).resolve()
    storage = storage_location(cfg.resources.storage_path or str(output / "runs"))
    pretrain = None
    init = None
    tags = {**job_tags(cluster), "sweep.kind": cfg.sweep.kind}
    if cfg.sweep.pretrains:
        pretrain = prepare_pretraining(cfg, uri)
        tags["corpus_manifest_hash"] = corpus.manifest_hash(corpus.read_manifest(pretrain.corpus))
    elif cfg.evaluation.pretrained_arms:
        init = str(resolve_weights(cfg.evaluation.pretrained, output / "weights", uri).path)
    datasets = prepare_datasets(cfg, output, pretrain.window_seconds if pretrain else None)
    evaluation = evaluation_plan(cfg, datasets, cluster)
    concurrency = plan_concurrency(cfg, pretrain, cluster)
    specs = trial_specs(cfg)
    experiment = experiment_name(cfg.name, decisive_inputs(specs, pretrain, evaluation, init))
    sweep_dir = output / experiment
    pretrain_plan = None
    if pretrain is not None:
        pretrain_plan = PretrainPlan(
            pretrain, experiment, f"{storage.rstrip('/')}/pretrain", tuple(default_roots())
        )
        for spec in specs:
            if spec.pretrain is not None:
                trial_pretrain_config(pretrain_plan, spec)
    client = mlflow.MlflowClient(tracking_uri=uri)
    tags["tune_experiment"] = experiment
    parent = sweep_run(client, cfg, sweep_dir, uri, tags, sweep_description(cfg, datasets))
    context = SweepContext(
        name=cfg.name,
        kind=cfg.sweep.kind,
        experiment=experiment,
        sweep_dir=str(sweep_dir),
        tracking_uri=uri,
        experiment_id=tracking.experiment_id(EXPERIMENT, uri),
        parent_run_id=parent,
        source=source_tags(tags),
        evaluation=evaluation,
        pretrain=pretrain_plan,
        init=init,
    )
    print(
        f"sweep {experiment}: {len(specs)} trials, up to {concurrency} at once; "
        f"MLflow parent run {parent}",
        flush=True,
    )
    settings = TuneSettings(
        name=experiment,
        storage=storage,
        max_concurrent=concurrency,
        resources=trial_resources(cfg),
        folder=trial_stem,
        errored="resume",
        what="sweep",
        describe=score_line,
        max_failures=cfg.resources.max_failures,
        # Reused trial processes are idle when Tune ends them with the experiment; a process
        # still shutting down then (the last trials' own) is killed mid-way, and prints the
        # SystemExit of Ray's SIGTERM handler as an ignored exception's traceback.
        reuse_actors=True,
    )
    with tracking.run_outcome(parent, uri):
        run_sweep_trials(specs, context, settings)
        records = [
            json.loads((trial_folder(sweep_dir, spec.stem) / RECORD_FILE).read_text())
            for spec in specs
        ]
        results_dir = sweep_dir / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        trials = trials_table(records, cfg.sweep.kind, sweep_dir)
        scores = scores_table(records, cfg.sweep.kind, sweep_dir)
        summary = sweep_summary(scores)
        trials.to_csv(results_dir / "trials.csv", index=False)
        scores.to_csv(results_dir / "scores.csv", index=False)
        summary.to_csv(results_dir / "summary.csv", index=False)
        plot = plot_sweep(summary, cfg, results_dir / "f1.png")
        wall_s = time.time() - started
        markdown = summary_markdown(cfg, summary, trials, wall_s, plot)
        (results_dir / "summary.md").write_text(markdown)
        per_trial = trials.drop_duplicates("trial")
        intervals = list(zip(per_trial["started_at"], per_trial["finished_at"], strict=True))
        log_sweep_results(
            client,
            parent,
            cfg,
            summary,
            results_dir,
            {
                "sweep/trials": len(records),
                "sweep/max_concurrent_trials": max_overlap(intervals),
                "time/sweep_s": wall_s,
            },
        )
        client.set_tag(parent, FINISHED_AT_TAG, utc_timestamp(time.time()))
    return AblationResult(
        sweep_dir=sweep_dir,
        tracking_uri=uri,
        experiment=experiment,
        parent_run_id=parent,
        trials=trials,
        summary_table=summary,
        markdown=markdown,
        plot=plot,
        wall_s=wall_s,
        child_run_ids=[record["run_id"] for record in records],
    )
