"""Downstream evaluation: the paper's benchmark protocol, every trial on Ray Tune.

:func:`run_evaluation` plans every (dataset, arm, fold, seed) as one trial
(:class:`~wearssl.downstream.trial.TrialSpec`), runs them concurrently within the
cluster's resources (:mod:`wearssl.downstream.evaluate_trials`), and turns the trials'
saved test predictions into per-subject scores, the results table (CSV + Markdown), plots,
MLflow runs and an exported best model per dataset. A dataset's parent run is opened
before its trials start; each trial opens its own child run when it starts and closes it
when it ends (:mod:`wearssl.downstream.tracked_runs`); the parent gets the per-arm scores,
artifacts and model when the trials are done.

Output folder ``OUTPUT = output_dir/name`` (a local or shared-filesystem path, since
trials on every node write to it)::

    data/                   synthetic labelled sets generated for this evaluation
    weights/                pre-trained weights downloaded from MLflow
    transfer/               the transfer arm's supervised source model(s)
    tune/                   Ray Tune's storage (unless resources.storage_path says otherwise)
    trials/DATASET/         per trial: record (JSON), test predictions (Parquet), attempts
    results/                scores.csv (per test subject), summary.csv, results.md, trials.csv
    plots/DATASET/          confusion matrix per arm, UMAP
    mlflow/EXPERIMENT/      the records naming each dataset's parent run and each trial's run
    export/DATASET.pt       the best fine-tuned model with its HMM, for the prediction job

The Tune experiment's name is the config's ``name`` plus a digest of everything that
decides the trials' results, so re-running the same command resumes an interrupted
evaluation (finished trials are kept, not redone) and a changed config starts afresh.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import ray
from mlflow.entities import Metric

from wearssl.config import flatten
from wearssl.config.evaluate import EvaluateConfig
from wearssl.config.vocabulary import PRETRAINED_ARMS, TRANSFER
from wearssl.data.labelled_set import LabelledSet
from wearssl.downstream.datasets import (
    DatasetPlan,
    check_weights_fit,
    evaluation_folds,
    plan_dataset,
)
from wearssl.downstream.evaluate_trials import (
    concurrency,
    decisive_inputs,
    run_evaluation_trials,
    tune_settings,
)
from wearssl.downstream.export import (
    ExportedModel,
    ModelCard,
    export_best_model,
    register_export,
)
from wearssl.downstream.metrics import summarise, tracked_metric
from wearssl.downstream.plots import confusion_plots, umap_plot
from wearssl.downstream.results import (
    TrialRun,
    scores_from_predictions,
    select_runs,
    trials_frame,
    write_results,
)
from wearssl.downstream.tracked_runs import PARENT_RECORD, TrialRuns, open_run, start_tags
from wearssl.downstream.transfer import TransferSource, ensure_transfer_source, plan_transfer_source
from wearssl.downstream.trial import TrialSettings, TrialSpec, trial_specs
from wearssl.downstream.tune_run import experiment_name
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.infra.files import storage_location
from wearssl.infra.mlflow_runs import finite, job_tags, log_config, log_metrics, source_tags
from wearssl.infra.tracking import FINISHED_AT_TAG, utc_timestamp
from wearssl.models.resolve import resolve_weights

EXPERIMENT = "evaluate"
ARM_METRICS = ("f1_mean", "f1_sd", "kappa_mean", "kappa_sd", "accuracy_mean")


@dataclass
class DatasetOutcome:
    name: str
    parent_run_id: str
    trial_run_ids: list[str]
    plots: list[Path]
    exported: ExportedModel | None


@dataclass
class EvaluateResult:
    output: Path
    tracking_uri: str
    experiment: str
    markdown: str
    summary_table: pd.DataFrame
    scores: pd.DataFrame
    trials: pd.DataFrame
    datasets: list[DatasetOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> str:
        exports = [
            f"- {d.name}: {d.exported.path} ({d.exported.arm}, {d.exported.trial}"
            + (
                f"; registered {d.exported.registered_name} v{d.exported.registered_version}"
                f" @{d.exported.alias}"
                if d.exported.registered_version
                else ""
            )
            + ")"
            for d in self.datasets
            if d.exported is not None
        ]
        return "\n".join(
            [
                self.markdown,
                f"{len(self.trials)} trials in {self.wall_s:.0f} s; "
                f"results in {self.output / 'results'}",
                *(["exported models:", *exports] if exports else []),
            ]
        )


@dataclass(frozen=True)
class Inputs:
    """Everything the trials start from, checked before any Ray work begins."""

    plans: dict[str, DatasetPlan]
    datasets: dict[str, LabelledSet]
    settings: TrialSettings
    pretrained: Path | None
    transfer_source: TransferSource | None

    def init(self, arms: list[str]) -> dict[str, str]:
        """The weights file each initialised arm of ``arms`` starts from."""
        init = {arm: str(self.pretrained) for arm in PRETRAINED_ARMS if arm in arms}
        if self.transfer_source is not None:
            init[TRANSFER] = str(self.transfer_source.model)
        return init


def prepare_inputs(cfg: EvaluateConfig, output: Path, uri: str) -> Inputs:
    """Materialise the datasets, resolve the pre-trained weights, plan the transfer source,
    and check that every window length fits."""
    pretrained = None
    used = any(arm in PRETRAINED_ARMS for arm in cfg.arms) or cfg.plots.umap
    if cfg.pretrained is not None and used:
        pretrained = resolve_weights(cfg.pretrained, output / "weights", uri).path
    plans, datasets = {}, {}
    for dataset in cfg.datasets:
        plan = plan_dataset(dataset, output / "data")
        data = plan.load(cfg.protocol.split_seed)
        if any(arm in PRETRAINED_ARMS for arm in cfg.arms):
            check_weights_fit(data, f"the pre-trained weights {cfg.pretrained!r}", pretrained)
        plans[dataset.name], datasets[dataset.name] = plan, data
    transfer_source = None
    if TRANSFER in cfg.arms:
        windows = {data.window_seconds for data in datasets.values()}
        transfer_source = plan_transfer_source(cfg, output, windows)
    settings = TrialSettings(
        cfg.protocol,
        cfg.finetune,
        cfg.forest.n_estimators,
        threads=max(1, int(cfg.resources.cpus_per_trial)),
    )
    return Inputs(plans, datasets, settings, pretrained, transfer_source)


def plan_trials(cfg: EvaluateConfig, inputs: Inputs) -> list[TrialSpec]:
    """Every dataset x arm x fold x seed."""
    return [
        spec
        for name, data in inputs.datasets.items()
        for spec in trial_specs(
            inputs.plans[name],
            evaluation_folds(data.subjects, cfg.protocol),
            cfg.arms,
            list(range(cfg.protocol.seeds)),
            inputs.settings,
            inputs.init(cfg.arms),
        )
    ]


def dataset_description(cfg: EvaluateConfig, data: LabelledSet) -> str:
    """A dataset's parent run description: job, config, dataset, arms."""
    return (
        f"Evaluation {cfg.name!r} on dataset {data.name} ({len(data.labels)} windows of "
        f"{len(np.unique(data.subjects))} subjects): arms {', '.join(cfg.arms)}, one child "
        "run per arm, fold and seed."
    )


def open_parents(
    cfg: EvaluateConfig, inputs: Inputs, records: Path, uri: str, tags: dict[str, str]
) -> TrialRuns:
    """Each dataset's parent run, RUNNING before its trials start: the one an interrupted
    run of the same experiment recorded under ``records``, else a new one with the config
    and the dataset's size as parameters."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = tracking.experiment_id(EXPERIMENT, uri)
    parents = {}
    for name, data in inputs.datasets.items():
        create = {
            "experiment_id": experiment,
            "run_name": f"{cfg.name}/{name}",
            "tags": {
                **tags,
                "dataset": name,
                **start_tags(dataset_description(cfg, data), time.time()),
            },
        }
        params = {
            **flatten(cfg),
            "dataset.name": name,
            "dataset.windows": len(data.labels),
            "dataset.subjects": len(np.unique(data.subjects)),
            "dataset.window_seconds": data.window_seconds,
        }
        parents[name] = open_run(client, records / name / PARENT_RECORD, uri, create, params)
    return TrialRuns(uri, experiment, parents, str(records), cfg.name, source_tags(tags))


def dataset_plots(
    cfg: EvaluateConfig, data: LabelledSet, selected: list[TrialRun], summary: pd.DataFrame,
    plot_dir: Path, pretrained: Path | None,
) -> list[Path]:  # fmt: skip
    plots = []
    if cfg.plots.confusion:
        rows = summary[summary["dataset"] == data.name]
        f1 = dict(zip(rows["arm"], rows["f1_mean"], strict=True))
        plots += confusion_plots(selected, data.name, data.label_names, plot_dir, f1)
    if cfg.plots.umap:
        plots.append(
            umap_plot(
                data,
                pretrained,
                cfg.plots.umap_windows,
                cfg.protocol.split_seed,
                plot_dir / "umap.png",
            )
        )
    return plots


def arm_metrics(summary: pd.DataFrame, dataset: str) -> list[Metric]:
    """The dataset's per-arm scores as a parent's metrics, ``test/<arm>/<metric>``."""
    now = int(time.time() * 1000)
    return [
        Metric(f"test/{row.arm}/{tracked_metric(m)}", float(getattr(row, m)), now, 0)
        for row in summary[summary["dataset"] == dataset].itertuples()
        for m in ARM_METRICS
        if finite(getattr(row, m))
    ]


def finish_dataset(
    cfg: EvaluateConfig,
    data: LabelledSet,
    runs: list[TrialRun],
    selected: list[TrialRun],
    summary: pd.DataFrame,
    output: Path,
    parent: str,
    uri: str,
    pretrained: Path | None,
) -> DatasetOutcome:
    """Plots and export of one dataset, and its parent run's scores, artifacts and model."""
    name = data.name
    plot_dir = output / "plots" / name
    plots = dataset_plots(cfg, data, selected, summary, plot_dir, pretrained)
    exported = None
    if cfg.export.enabled:
        folds = evaluation_folds(data.subjects, cfg.protocol)
        exported = export_best_model(data, folds, summary, selected, output / "export")
    client = mlflow.MlflowClient(tracking_uri=uri)
    log_metrics(client, parent, arm_metrics(summary, name))
    client.log_artifacts(parent, str(output / "results"), artifact_path="results")
    if plots:
        client.log_artifacts(parent, str(plot_dir), artifact_path="plots")
    client.log_artifacts(parent, str(output / "trials" / name), artifact_path="predictions")
    log_config(client, parent, cfg)
    if exported is not None:
        register_export(
            exported,
            parent,
            cfg.export.model_name(f"harnet{data.window_seconds}", cfg.name, name),
            uri,
            ModelCard(cfg.name, name, list(data.label_names)),
        )
    client.set_tag(parent, FINISHED_AT_TAG, utc_timestamp(time.time()))
    # a trial that finished before trials had runs of their own has no "run_id"
    children = [
        r.record["run_id"] for r in runs if r.record["dataset"] == name and "run_id" in r.record
    ]
    return DatasetOutcome(name, parent, children, plots, exported)


def run_evaluation(cfg: EvaluateConfig) -> EvaluateResult:
    """Run (or resume) the evaluation ``cfg`` describes on the connected Ray cluster."""
    started = time.time()
    output = (Path(cfg.output_dir) / cfg.name).resolve()
    uri = tracking.configure(cfg.tracking.tracking_uri)
    inputs = prepare_inputs(cfg, output, uri)
    cluster = runtime.connect(cfg.resources.address)
    max_concurrent = concurrency(cfg.resources, cluster)
    if inputs.transfer_source is not None:
        gpus = cfg.resources.gpus_per_trial if cluster.get("GPU", 0) else 0
        ensure_transfer_source(
            inputs.transfer_source, inputs.settings, cfg.resources.cpus_per_trial, gpus
        )
    specs = plan_trials(cfg, inputs)
    name = experiment_name(cfg.name, decisive_inputs(specs))
    storage = storage_location(cfg.resources.storage_path or str(output / "tune"))
    settings = tune_settings(name, storage, cfg.resources, ray.cluster_resources(), max_concurrent)
    tags = {**job_tags(cluster), "tune_experiment": name, "pretrained": cfg.pretrained or ""}
    trial_runs = open_parents(cfg, inputs, output / "mlflow" / name, uri, tags)
    with ExitStack() as parents_open:
        for parent in trial_runs.parents.values():
            parents_open.enter_context(tracking.run_outcome(parent, uri))
        runs = run_evaluation_trials(specs, settings, output, trial_runs)
        selected = select_runs(runs, cfg.protocol.selection)
        n_classes = {name: len(data.label_names) for name, data in inputs.datasets.items()}
        scores = scores_from_predictions(selected, n_classes, cfg.protocol.selection)
        summary = summarise(scores)
        trials = trials_frame(runs)
        markdown = write_results(output / "results", scores, summary, trials)
        outcomes = [
            finish_dataset(
                cfg,
                data,
                runs,
                selected,
                summary,
                output,
                trial_runs.parents[data.name],
                uri,
                inputs.pretrained,
            )
            for data in inputs.datasets.values()
        ]
    return EvaluateResult(
        output=output,
        tracking_uri=uri,
        experiment=name,
        markdown=markdown,
        summary_table=summary,
        scores=scores,
        trials=trials,
        datasets=outcomes,
        wall_s=time.time() - started,
    )
