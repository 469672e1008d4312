"""Data-scaling ablations: every point of a sweep is one Ray Tune trial.

A trial of a pre-training sweep (unlabelled subjects, data ratio, weighted sampling,
pretext tasks) pre-trains a model on its own Ray Train worker group — a ``TorchTrainer``
run inside the Tune function trial, the Train V2 way — and then evaluates it downstream
in a Ray task with its own CPUs. Arms that need no pre-trained model (forest, scratch)
are evaluated once per seed in a *reference* trial rather than at every point. A trial of
a labelled-subjects sweep fine-tunes one given model (or trains scratch and the forest)
on the first n training subjects of every fold, drawn nested by seed.

Resources: the trial process itself holds almost nothing (``resources.trial_cpus``), so
the CPUs go to the pre-training workers, the Ray Data read tasks and the evaluation
tasks, which reserve their own. At most as many trials run at once as leave
``runtime.data_cpus`` free for reading (:func:`plan_concurrency`).

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

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import ray
import torch
import yaml
from matplotlib.figure import Figure
from mlflow.entities import Metric
from pydantic import ValidationError
from ray import tune
from ray.train import Checkpoint

from wearssl.config import ConfigError, flatten, load_config
from wearssl.config.ablate import COUNT_KINDS, PRETRAINED_ARMS, AblateConfig, Sweep
from wearssl.config.base import apply_override, describe_errors, roots_context
from wearssl.config.evaluate import Finetune, Protocol
from wearssl.config.pretrain import PretrainConfig
from wearssl.config.roots import default_roots
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.data.labelled_set import INFO_NAME, WINDOWS_NAME
from wearssl.data.splits import Fold, protocol_folds, subset_subjects
from wearssl.downstream.evaluate import (
    check_weights_fit,
    dataset_digest,
    evaluation_folds,
    file_digest,
    load_dataset,
    log_params,
    materialise_dataset,
    write_json,
)
from wearssl.downstream.finetune import train_arm
from wearssl.downstream.metrics import per_subject_scores, summarise
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.infra.tune import restore_or_create
from wearssl.models.resolve import resolve_weights
from wearssl.pretrain.train import MODEL_FILE, ensure_corpus, run_pretraining

EXPERIMENT = "ablate"
# test hook: comma-separated trial keys whose first execution raises (to exercise retries)
FAIL_ONCE_ENV = "WEARSSL_TEST_FAIL_ONCE"
RECORD_FILE = "record.json"
SCORES_FILE = "scores.csv"
PRETRAIN_FILE = "pretrain.json"
RUN_RECORD = "mlflow_run.json"
REFERENCE = "reference"
SCORE_SUMMARY = ("f1_mean", "f1_sd", "kappa_mean", "kappa_sd", "accuracy_mean")

PRETRAIN_SETTING = {
    "unlabelled_subjects": "subset.subjects",
    "data_ratio": "subset.data_ratio",
    "weighted_sampling": "sampling.weighted",
    "tasks": "tasks",
}
REFERENCE_STYLE = {"scratch": ("dimgray", "--"), "forest": ("darkgoldenrod", ":")}
AXIS_TITLE = {
    "unlabelled_subjects": "unlabelled subjects in pre-training",
    "data_ratio": "share of each subject-day used in pre-training",
    "labelled_subjects": "labelled training subjects per fold",
    "weighted_sampling": "std-weighted sampling in pre-training",
    "tasks": "pretext tasks",
}


class TrialsFailed(RuntimeError):
    """Some trials failed after their retries; the finished ones are kept for a re-run."""


# ---------------------------------------------------------------- points and trials


def value_label(kind: str, value: Any) -> str:
    """How a point's value reads in tables and on the x-axis."""
    if kind == "tasks":
        return "+".join(value)
    if kind == "weighted_sampling":
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def value_token(kind: str, value: Any) -> str:
    """A file- and run-name-safe token for a point's value."""
    prefix = {
        "unlabelled_subjects": "subjects",
        "labelled_subjects": "labelled",
        "data_ratio": "ratio",
        "weighted_sampling": "weighted-",
        "tasks": "tasks-",
    }[kind]
    return prefix + value_label(kind, value).replace("+", "-")


def sweep_points(sweep: Sweep) -> list[dict[str, Any]]:
    """Every point, ``{kind: value}`` (swept kind first, then the series kind)."""
    if sweep.series is None:
        return [{sweep.kind: value} for value in sweep.values]
    return [
        {sweep.kind: value, sweep.series.kind: other}
        for other in sweep.series.values
        for value in sweep.values
    ]


def point_settings(point: dict[str, Any]) -> dict[str, Any]:
    """The pre-training config keys a point sets (dotted key -> value)."""
    return {
        PRETRAIN_SETTING[kind]: value for kind, value in point.items() if kind in PRETRAIN_SETTING
    }


def trial_specs(cfg: AblateConfig) -> list[dict[str, Any]]:
    """One spec per point and seed, plus a reference trial per seed for the arms of a
    pre-training sweep that need no pre-trained model."""
    specs = []
    evaluation = cfg.evaluation
    for seed in range(cfg.sweep.seeds):
        for point in sweep_points(cfg.sweep):
            name = "_".join(value_token(kind, value) for kind, value in point.items())
            specs.append(
                {
                    "key": f"{name}/seed{seed}",
                    "stem": f"{name}_seed{seed}",
                    "role": "point",
                    "point": point,
                    "seed": seed,
                    "arms": evaluation.pretrained_arms if cfg.sweep.pretrains else evaluation.arms,
                    "pretrain": point_settings(point) if cfg.sweep.pretrains else None,
                    "training_subjects": point.get("labelled_subjects"),
                }
            )
        if cfg.sweep.pretrains and evaluation.reference_arms:
            specs.append(
                {
                    "key": f"{REFERENCE}/seed{seed}",
                    "stem": f"{REFERENCE}_seed{seed}",
                    "role": REFERENCE,
                    "point": {},
                    "seed": seed,
                    "arms": evaluation.reference_arms,
                    "pretrain": None,
                    "training_subjects": None,
                }
            )
    return specs


# ---------------------------------------------------------------- pre-training configs


def base_pretrain_config(cfg: AblateConfig, uri: str) -> PretrainConfig:
    """The pre-training every point starts from: the configured file and overrides, with
    the budget applied and the runs tracked under the ablate experiment, unregistered."""
    base = cfg.pretrain
    try:
        pretrain = load_config(PretrainConfig, base.config, base.overrides)
    except ConfigError as err:
        raise ConfigError(f"pretrain.config / pretrain.overrides: {err}") from None
    settings: dict[str, Any] = {
        "tracking.tracking_uri": uri,
        "tracking.experiment": EXPERIMENT,
        "tracking.registered_model": None,
    }
    if cfg.budget.max_epochs is not None:
        settings["optim.epochs"] = min(pretrain.optim.epochs, cfg.budget.max_epochs)
    cap = cfg.budget.max_steps_per_epoch
    if cap is not None:
        current = pretrain.optim.max_steps_per_epoch
        settings["optim.max_steps_per_epoch"] = cap if current is None else min(current, cap)
    return pretrain_config(pretrain.model_dump(mode="json"), settings, "pretrain")


def pretrain_config(
    base: dict[str, Any],
    settings: dict[str, Any],
    source: str,
    roots: list[str] | None = None,
) -> PretrainConfig:
    """``base`` (a dumped config) with dotted-key ``settings`` applied, validated; its paths
    within ``roots`` (None: this process's, see :mod:`wearssl.config.roots`)."""
    data = copy.deepcopy(base)
    for dotted, value in settings.items():
        apply_override(data, dotted.split("."), value)
    try:
        return PretrainConfig.model_validate(data, context=roots_context(roots))
    except ValidationError as err:
        raise ConfigError(describe_errors(err, source)) from None


def training_subjects_available(root: str) -> int:
    return len(epochs.subject_days(corpus.read_manifest(root), "train"))


def check_unlabelled_points(cfg: AblateConfig, pretrain: PretrainConfig, root: str) -> None:
    """Refuse subject counts the corpus cannot supply (they would silently equal 'all')."""
    counts = {
        point["unlabelled_subjects"]
        for point in sweep_points(cfg.sweep)
        if "unlabelled_subjects" in point
    }
    if pretrain.subset.subjects is not None:
        counts.add(pretrain.subset.subjects)
    if not counts:
        return
    available = training_subjects_available(root)
    too_many = sorted(n for n in counts if n > available)
    if too_many:
        raise ConfigError(
            f"unlabelled subject counts {too_many} (sweep values or pretrain subset.subjects) "
            f"exceed the {available} training subjects of corpus {root}"
        )


# ---------------------------------------------------------------- resources


def plan_concurrency(
    cfg: AblateConfig, pretrain: PretrainConfig | None, cluster: dict[str, float]
) -> int:
    """Trials run at once. A pre-training trial holds ``runtime.num_workers x
    runtime.cpus_per_worker`` CPUs plus ``resources.trial_cpus``; ``runtime.data_cpus``
    stay free for every trial's Ray Data reads (training workers that hold every CPU
    starve the reads and hang). Evaluation tasks borrow the CPUs of finished workers."""
    cpus = float(cluster.get("CPU", 0.0))
    resources = cfg.resources
    if resources.eval_cpus > cpus + 1e-9:
        raise runtime.ResourcePlanError(
            f"resources.eval_cpus={resources.eval_cpus:g} but the cluster has {cpus:g} CPUs"
        )
    wanted = cfg.budget.max_concurrent_trials
    if pretrain is None:
        return wanted or max(1, int(cpus // max(resources.eval_cpus, resources.trial_cpus)))
    rt = pretrain.runtime
    plan = runtime.plan_resources(
        rt.num_workers, rt.cpus_per_worker, rt.data_cpus, rt.use_gpu, cluster, "pretrain runtime."
    )
    if pretrain.sampling.read_cpus > rt.data_cpus + 1e-9:
        raise runtime.ResourcePlanError(
            f"pretrain sampling.read_cpus={pretrain.sampling.read_cpus:g} exceeds "
            f"runtime.data_cpus={rt.data_cpus:g}: no read task could ever start"
        )
    per_trial = plan.training_cpus + resources.trial_cpus
    fits = int((cpus - rt.data_cpus + 1e-9) // per_trial)
    if rt.use_gpu:
        fits = min(fits, int(float(cluster.get("GPU", 0.0)) // rt.num_workers))
    if wanted is not None and wanted > fits:
        raise runtime.ResourcePlanError(
            f"budget.max_concurrent_trials={wanted}: {wanted} trials x ({plan.training_cpus:g} "
            f"training + {resources.trial_cpus:g} trial CPUs) + runtime.data_cpus="
            f"{rt.data_cpus:g} exceed the cluster's {cpus:g} CPUs; at most {fits} fit"
        )
    return wanted or max(1, fits)


def trial_resources(cfg: AblateConfig) -> tune.PlacementGroupFactory:
    return tune.PlacementGroupFactory([{"CPU": cfg.resources.trial_cpus}])


# ---------------------------------------------------------------- downstream evaluation


def with_training_subjects(subjects: np.ndarray, fold: Fold, n: int, seed: int) -> Fold:
    """``fold`` with its training windows reduced to ``n`` of its training subjects, drawn
    by ``seed`` as a prefix of one permutation (so smaller sets nest in larger ones)."""
    keep = subset_subjects(subjects[fold.train], n, seed)
    return Fold(fold.name, fold.train[keep], fold.val, fold.test)


def evaluate_arms(
    datasets: dict[str, dict[str, Any]],
    arms: list[str],
    init: str | None,
    training_subjects: int | None,
    seed: int,
    settings: dict[str, Any],
    threads: int,
) -> pd.DataFrame:
    """Train every arm on every fold of every dataset; per-test-subject scores."""
    torch.set_num_threads(threads)
    protocol = Protocol(**settings["protocol"])
    finetune = Finetune(**settings["finetune"])
    frames = []
    for name, plan in datasets.items():
        data = load_dataset(
            name, plan["path"], plan["subjects"], protocol.split_seed, plan["batch_size"]
        )
        if init is not None and set(arms) & set(PRETRAINED_ARMS):
            check_weights_fit(data, "the pre-trained weights", Path(init))
        for fold in evaluation_folds(data, protocol):
            if training_subjects is not None:
                fold = with_training_subjects(data.subjects, fold, training_subjects, seed)
            for arm in arms:
                outcome = train_arm(
                    arm,
                    data,
                    fold,
                    seed,
                    finetune,
                    n_estimators=settings["forest"]["n_estimators"],
                    n_jobs=threads,
                    init=init if arm in PRETRAINED_ARMS else None,
                )
                scores = per_subject_scores(
                    data.labels[fold.test],
                    outcome.probabilities.argmax(axis=1),
                    data.subjects[fold.test],
                    labels=list(range(len(data.label_names))),
                )
                scores.insert(0, "seed", seed)
                scores.insert(0, "fold", fold.name)
                scores.insert(0, "arm", arm)
                scores.insert(0, "dataset", name)
                scores["n_train"] = len(fold.train)
                frames.append(scores)
    return pd.concat(frames, ignore_index=True)


_evaluate_remote = ray.remote(evaluate_arms)


def evaluate_in_task(
    context: dict[str, Any], spec: dict[str, Any], init: str | None
) -> pd.DataFrame:
    """:func:`evaluate_arms` as a Ray task holding its own CPUs, outside the trial's
    placement group (a child of a Tune trial would otherwise be confined to it)."""
    gpus = context["eval_gpus"] if context["cluster_gpus"] > 0 else 0
    task = _evaluate_remote.options(
        num_cpus=context["eval_cpus"], num_gpus=gpus, scheduling_strategy="DEFAULT"
    )
    return ray.get(
        task.remote(
            context["datasets"],
            spec["arms"],
            init,
            spec["training_subjects"],
            spec["seed"],
            context["evaluation"],
            max(1, int(context["eval_cpus"])),
        )
    )


def score_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arm): mean and SD over the score rows (test subjects x folds x seeds)."""
    return summarise(
        scores[["dataset", "arm", "fold", "seed", "subject", "f1_macro", "kappa", "accuracy"]]
    )


# ---------------------------------------------------------------- the trial


def mark(folder: Path, key: str) -> int:
    """Add one marker file to ``folder``; returns how many it now holds."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = {"trial": key, "at": time.time(), "pid": os.getpid()}
    (folder / f"{uuid.uuid4().hex}.json").write_text(json.dumps(marker))
    return len(list(folder.glob("*.json")))


def count_marks(folder: Path) -> int:
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def trial_folder(sweep_dir: str | Path, spec: dict[str, Any]) -> Path:
    return Path(sweep_dir) / "trials" / spec["stem"]


def child_run(
    client: mlflow.MlflowClient, context: dict[str, Any], spec: dict[str, Any], folder: Path
) -> str:
    """The trial's MLflow run under the sweep's parent: the one an earlier execution
    recorded (set running again), else a new one with the trial's parameters."""
    record = folder / RUN_RECORD
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous["tracking_uri"] == context["tracking_uri"]:
            client.update_run(previous["run_id"], status="RUNNING")
            return previous["run_id"]
    run = client.create_run(
        context["experiment_id"],
        run_name=f"{context['name']}/{spec['key']}",
        tags={
            "mlflow.parentRunId": context["parent_run_id"],
            "trial": spec["key"],
            "role": spec["role"],
            "git_commit": context["git_commit"],
        },
    )
    params: dict[str, Any] = {
        "sweep.kind": context["kind"],
        "seed": spec["seed"],
        "arms": ",".join(spec["arms"]),
        **{f"point.{kind}": value_label(kind, value) for kind, value in spec["point"].items()},
    }
    if spec["training_subjects"] is not None:
        params["training_subjects"] = spec["training_subjects"]
    if spec["pretrain"] is not None:
        merged = trial_pretrain_config(context, spec)
        params.update({f"pretrain.{k}": v for k, v in flatten(merged).items()})
    log_params(client, run.info.run_id, params)
    write_json(record, {"run_id": run.info.run_id, "tracking_uri": context["tracking_uri"]})
    return run.info.run_id


def trial_pretrain_config(
    context: dict[str, Any], spec: dict[str, Any], parent_run_id: str | None = None
) -> PretrainConfig:
    """The point's pre-training: its settings, its seed (the subset draw and the training
    seed), its own run name and storage, nested under the trial's MLflow run."""
    settings = {
        **spec["pretrain"],
        "name": f"{context['experiment']}-{spec['stem']}",
        "runtime.storage_path": context["pretrain_storage"],
        "tracking.parent_run_id": parent_run_id,
        "subset.seed": spec["seed"],
        "optim.seed": context["pretrain_base"]["optim"]["seed"] + spec["seed"],
    }
    # A trial runs in Tune's trial folder, maybe on another node: the driver's roots decide
    # (the driver checked every trial's config), plus the folder relative paths resolve in.
    roots = context.get("roots")
    roots = None if roots is None else [*roots, os.getcwd()]
    return pretrain_config(context["pretrain_base"], settings, f"trial {spec['key']}", roots)


def pretrain_stage(
    context: dict[str, Any], spec: dict[str, Any], folder: Path, run_id: str
) -> dict[str, Any]:
    """Pre-train the point's model (nested under the trial's run) and keep its weights in
    the trial folder; an earlier execution's finished pre-training is reused."""
    done = folder / PRETRAIN_FILE
    if done.is_file():
        return json.loads(done.read_text())
    cfg = trial_pretrain_config(context, spec, run_id)
    started = time.time()
    result = run_pretraining(cfg)
    if not result.checkpoint_path:
        raise RuntimeError(f"trial {spec['key']}: pre-training {cfg.name} left no checkpoint")
    weights = folder / MODEL_FILE
    with Checkpoint(result.checkpoint_path).as_directory() as directory:
        shutil.copyfile(Path(directory) / MODEL_FILE, weights)
    outcome = {
        "run_id": result.run_id,
        "epochs": result.epochs_completed,
        "metrics": result.metrics,
        "weights": str(weights),
        "started_at": started,
        "finished_at": time.time(),
        "unlogged": result.unlogged,
    }
    write_json(done, outcome)
    return outcome


def trial_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers a trial reports to Tune and logs to its MLflow run."""
    metrics = {
        "started_at": record["started_at"],
        "finished_at": record["finished_at"],
        "wall_s": record["finished_at"] - record["started_at"],
        "eval_wall_s": record["eval_wall_s"],
    }
    pretrain = record.get("pretrain")
    if pretrain:
        metrics["pretrain_wall_s"] = pretrain["finished_at"] - pretrain["started_at"]
        metrics["pretrain_epochs"] = pretrain["epochs"]
        for key in ("train_loss", "val_loss", *(k for k in pretrain["metrics"] if "acc" in k)):
            if key in pretrain["metrics"]:
                metrics[f"pretrain_{key}"] = pretrain["metrics"][key]
    for row in record["summary"]:
        for column in SCORE_SUMMARY:
            metrics[f"{row['dataset']}.{row['arm']}.{column}"] = row[column]
    return {k: float(v) for k, v in metrics.items() if _finite(v)}


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function trainable: pre-train (pre-training sweeps), evaluate, record, report."""
    spec = config["trial"]
    folder = trial_folder(context["sweep_dir"], spec)
    record_path = folder / RECORD_FILE
    if record_path.is_file():
        mark(folder / "reuses", spec["key"])
        tune.report(trial_metrics(json.loads(record_path.read_text())))
        return
    executions = mark(folder / "executions", spec["key"])
    if spec["key"] in context["fail_once"] and executions == 1:
        raise RuntimeError(f"failure injected by {FAIL_ONCE_ENV} into trial {spec['key']}")
    started = time.time()
    client = mlflow.MlflowClient(tracking_uri=context["tracking_uri"])
    run_id = child_run(client, context, spec, folder)
    try:
        pretrain = None
        init = context["init"]
        if spec["pretrain"] is not None:
            pretrain = pretrain_stage(context, spec, folder, run_id)
            init = pretrain["weights"]
        eval_started = time.time()
        scores = evaluate_in_task(context, spec, init)
        summary = score_summary(scores)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    scores.to_csv(folder / SCORES_FILE, index=False)
    record = {
        **{k: spec[k] for k in ("key", "stem", "role", "point", "seed", "arms")},
        "training_subjects": spec["training_subjects"],
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
    client.set_terminated(run_id, "FINISHED")
    write_json(record_path, record)
    tune.report(metrics)


# ---------------------------------------------------------------- running the sweep


def experiment_name(cfg: AblateConfig, context: dict[str, Any], specs: list[dict]) -> str:
    """``cfg.name`` plus a digest of everything that decides the trials' results."""
    base = {k: v for k, v in (context["pretrain_base"] or {}).items() if k != "tracking"}
    decisive = {
        "specs": specs,
        "pretrain": base,
        "evaluation": context["evaluation"],
        "datasets": {
            name: {**plan, "digest": dataset_digest(plan["path"])}
            for name, plan in context["datasets"].items()
        },
        "init": file_digest(Path(context["init"])) if context["init"] else None,
    }
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()
    return f"{cfg.name}-{digest[:10]}"


def run_tune(
    cfg: AblateConfig, context: dict[str, Any], specs: list[dict], storage: str, concurrency: int
) -> tune.ResultGrid:
    """Run the sweep's Tune experiment, or resume it where an earlier run stopped."""
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context), trial_resources(cfg)
    )
    tuner = restore_or_create(
        trainable,
        param_space={"trial": tune.grid_search(specs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=context["experiment"],
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=cfg.resources.max_failures),
            verbose=1,
        ),
        errored="resume",
        what="sweep",
    )
    return tuner.fit()


def trial_name(trial: Any) -> str:
    """Tune's name and folder of a trial: the trial's stem."""
    return trial.config["trial"]["stem"]


def unfinished_trials(specs: list[dict], sweep_dir: Path) -> list[str]:
    """Keys of the trials without a record (they failed after their retries)."""
    return [
        spec["key"] for spec in specs if not (trial_folder(sweep_dir, spec) / RECORD_FILE).is_file()
    ]


def trial_errors(grid: tune.ResultGrid) -> list[str]:
    """The last line of every errored trial's error (an errored trial that never reported
    has no config, so the error is all Tune can tell)."""
    return [str(r.error).strip().splitlines()[-1] for r in grid if r.error is not None]


# ---------------------------------------------------------------- results


def trials_table(records: list[dict[str, Any]], kind: str, sweep_dir: Path) -> pd.DataFrame:
    """One row per trial, dataset and arm: the point, the scores, timings, executions."""
    rows = []
    for record in records:
        folder = trial_folder(sweep_dir, record)
        base = {
            "trial": record["key"],
            "role": record["role"],
            **point_columns(record["point"], kind),
            "seed": record["seed"],
            "started_at": record["started_at"],
            "finished_at": record["finished_at"],
            "wall_s": record["finished_at"] - record["started_at"],
            "eval_wall_s": record["eval_wall_s"],
            "executions": count_marks(folder / "executions"),
            "reuses": count_marks(folder / "reuses"),
        }
        pretrain = record.get("pretrain")
        if pretrain:
            base["pretrain_wall_s"] = pretrain["finished_at"] - pretrain["started_at"]
            base["pretrain_val_loss"] = pretrain["metrics"].get("val_loss", math.nan)
        rows += [{**base, **row} for row in record["summary"]]
    return pd.DataFrame(rows)


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
        scores = pd.read_csv(trial_folder(sweep_dir, record) / SCORES_FILE, dtype={"subject": str})
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


def plot_sweep(summary: pd.DataFrame, cfg: AblateConfig, out: Path) -> Path:
    """Downstream F1 against the swept quantity: a panel per dataset, a line per arm (and
    series value) with a +-SD band; reference arms as horizontal bands."""
    kind = cfg.sweep.kind
    datasets = list(dict.fromkeys(summary["dataset"]))
    fig = Figure(figsize=(5.5 * len(datasets), 4.2))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    points = summary[summary["x_label"] != REFERENCE]
    categorical = kind not in COUNT_KINDS and kind != "data_ratio"
    labels = list(dict.fromkeys(points["x_label"]))
    for ax, dataset in zip(axes, datasets, strict=True):
        rows = points[points["dataset"] == dataset]
        for (arm, series), line in rows.groupby(["arm", "series"], sort=False):
            xs = (
                [labels.index(x) for x in line["x_label"]]
                if categorical
                else line["x"].astype(float)
            )
            mean, sd = line["f1_mean"].to_numpy(), line["f1_sd"].to_numpy()
            name = f"{arm}, {cfg.sweep.series.kind} {series}" if series else arm
            (drawn,) = ax.plot(xs, mean, marker="o", label=name)
            ax.fill_between(xs, mean - sd, mean + sd, color=drawn.get_color(), alpha=0.15)
        reference = summary[(summary["x_label"] == REFERENCE) & (summary["dataset"] == dataset)]
        for row in reference.itertuples():
            colour, style = REFERENCE_STYLE[row.arm]
            ax.axhline(
                row.f1_mean, color=colour, linestyle=style, label=f"{row.arm} (no pre-training)"
            )
            ax.axhspan(row.f1_mean - row.f1_sd, row.f1_mean + row.f1_sd, color=colour, alpha=0.08)
        if categorical:
            ax.set_xticks(range(len(labels)), labels, rotation=20)
        elif kind in COUNT_KINDS:
            ax.set_xscale("log")
            ax.minorticks_off()
            ticks = sorted(set(points["x"].astype(float)))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(AXIS_TITLE[kind])
        ax.set_ylabel("macro F1 (mean ± SD over test subjects)")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
    fig.suptitle(f"{cfg.name}: downstream F1 vs {kind.replace('_', ' ')}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


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


# ---------------------------------------------------------------- MLflow


def sweep_run(
    client: mlflow.MlflowClient, cfg: AblateConfig, sweep_dir: Path, uri: str, tags: dict
) -> str:
    """The sweep's parent run: the one an interrupted run of this sweep recorded, or new."""
    record = sweep_dir / RUN_RECORD
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous["tracking_uri"] == uri:
            client.update_run(previous["run_id"], status="RUNNING")
            return previous["run_id"]
    run = client.create_run(tracking.experiment_id(EXPERIMENT, uri), run_name=cfg.name, tags=tags)
    log_params(client, run.info.run_id, flatten(cfg))
    write_json(record, {"run_id": run.info.run_id, "tracking_uri": uri})
    return run.info.run_id


def log_sweep_results(
    client: mlflow.MlflowClient,
    run_id: str,
    cfg: AblateConfig,
    summary: pd.DataFrame,
    results_dir: Path,
    extra: dict[str, float],
) -> None:
    """Per point (as the step) and arm, the mean F1; the results folder and config."""
    now = int(time.time() * 1000)
    steps = {label: i for i, label in enumerate(dict.fromkeys(summary["x_label"]))}
    metrics = [Metric(k, float(v), now, 0) for k, v in extra.items()]
    for row in summary.itertuples():
        suffix = f".{row.series}" if row.series else ""
        for column in ("f1_mean", "f1_sd"):
            value = getattr(row, column)
            if _finite(value):
                name = f"{row.dataset}.{row.arm}{suffix}.{column}"
                metrics.append(Metric(name, float(value), now, steps[row.x_label]))
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    client.log_artifacts(run_id, str(results_dir), artifact_path="results")
    with tempfile.TemporaryDirectory() as staging:
        path = Path(staging) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run_id, str(path))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- the job


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


def labelled_window_seconds(path: str) -> int:
    fs, root = corpus.resolve(path)
    with fs.open_input_stream(corpus.join(root, INFO_NAME)) as f:
        return int(json.loads(f.read())["window_seconds"])


def labelled_subject_column(path: str) -> np.ndarray:
    """The subject of every window, read without the windows themselves."""
    fs, root = corpus.resolve(path)
    table = pq.read_table(corpus.join(root, WINDOWS_NAME), columns=["subject"], filesystem=fs)
    return np.asarray(table["subject"].to_pylist(), dtype=object)


def fewest_training_subjects(subjects: np.ndarray, cfg: AblateConfig) -> int:
    protocol = cfg.evaluation.protocol
    folds = protocol_folds(
        subjects,
        seed=protocol.split_seed,
        n_splits=protocol.n_splits,
        test_size=protocol.test_size,
        val_fraction=protocol.val_fraction,
    )[: protocol.max_folds]
    return min(len(np.unique(subjects[f.train])) for f in folds)


def prepare_datasets(
    cfg: AblateConfig, output: Path, window_seconds: int | None
) -> dict[str, dict[str, Any]]:
    """Materialise every labelled set and check it up front: its windows fit the models a
    pre-training sweep makes, and a labelled-subjects sweep's counts fit every fold."""
    plans = {}
    for dataset in cfg.evaluation.datasets:
        path = materialise_dataset(dataset, output / "data")
        plans[dataset.name] = {
            "path": path,
            "subjects": dataset.subjects,
            "batch_size": dataset.batch_size,
        }
        seconds = labelled_window_seconds(path)
        if window_seconds is not None and seconds != window_seconds:
            raise ConfigError(
                f"evaluation.datasets {dataset.name!r} has {seconds}-s windows but the sweep "
                f"pre-trains {window_seconds}-s models (pretrain window_seconds)"
            )
        if cfg.sweep.kind != "labelled_subjects":
            continue
        subjects = labelled_subject_column(path)
        if dataset.subjects is not None:
            split_seed = cfg.evaluation.protocol.split_seed
            subjects = subjects[subset_subjects(subjects, dataset.subjects, split_seed)]
        fewest = fewest_training_subjects(subjects, cfg)
        too_many = sorted(n for n in cfg.sweep.values if n > fewest)
        if too_many:
            raise ConfigError(
                f"sweep values {too_many} (labelled_subjects) exceed the {fewest} training "
                f"subjects of the smallest fold of dataset {dataset.name!r}"
            )
    return plans


def run_ablation(cfg: AblateConfig) -> AblationResult:
    """Run (or resume) the sweep ``cfg`` describes on the connected Ray cluster."""
    started = time.time()
    cluster = runtime.connect(cfg.resources.address)
    uri = tracking.configure(cfg.tracking.tracking_uri)
    output = (Path(cfg.output_dir) / cfg.name).resolve()
    storage = cfg.resources.storage_path or str(output / "runs")
    storage = storage if "://" in storage else str(Path(storage).resolve())
    pretrain = None
    init = None
    tags = {
        "git_commit": tracking.git_commit(),
        "cluster_cpus": f"{cluster.get('CPU', 0):g}",
        "cluster_gpus": f"{cluster.get('GPU', 0):g}",
        "sweep.kind": cfg.sweep.kind,
    }
    if cfg.sweep.pretrains:
        pretrain = base_pretrain_config(cfg, uri)
        root = ensure_corpus(pretrain)
        pretrain = pretrain_config(pretrain.model_dump(mode="json"), {"corpus": root}, "pretrain")
        check_unlabelled_points(cfg, pretrain, root)
        tags["corpus_manifest_hash"] = corpus.manifest_hash(corpus.read_manifest(root))
    elif cfg.evaluation.pretrained_arms:
        init = str(resolve_weights(cfg.evaluation.pretrained, output / "weights", uri).path)
    datasets = prepare_datasets(cfg, output, pretrain.window_seconds if pretrain else None)
    concurrency = plan_concurrency(cfg, pretrain, cluster)
    specs = trial_specs(cfg)
    context: dict[str, Any] = {
        "name": cfg.name,
        "kind": cfg.sweep.kind,
        "datasets": datasets,
        "evaluation": cfg.evaluation.model_dump(
            mode="json", include={"protocol", "finetune", "forest"}
        ),
        "pretrain_base": pretrain.model_dump(mode="json") if pretrain else None,
        "init": init,
        "eval_cpus": cfg.resources.eval_cpus,
        "eval_gpus": cfg.resources.eval_gpus,
        "cluster_gpus": float(cluster.get("GPU", 0.0)),
        "tracking_uri": uri,
        "git_commit": tags["git_commit"],
        "fail_once": [k for k in os.environ.get(FAIL_ONCE_ENV, "").split(",") if k],
    }
    experiment = experiment_name(cfg, context, specs)
    sweep_dir = output / experiment
    context.update(
        experiment=experiment,
        sweep_dir=str(sweep_dir),
        pretrain_storage=f"{storage.rstrip('/')}/pretrain",
        roots=default_roots(),
    )
    for spec in specs:
        if spec["pretrain"] is not None:
            trial_pretrain_config(context, spec)
    client = mlflow.MlflowClient(tracking_uri=uri)
    tags["tune_experiment"] = experiment
    parent = sweep_run(client, cfg, sweep_dir, uri, tags)
    context.update(parent_run_id=parent, experiment_id=tracking.experiment_id(EXPERIMENT, uri))
    print(
        f"sweep {experiment}: {len(specs)} trials, up to {concurrency} at once; "
        f"MLflow parent run {parent}",
        flush=True,
    )
    grid = run_tune(cfg, context, specs, storage, concurrency)
    unfinished = unfinished_trials(specs, sweep_dir)
    if unfinished:
        client.set_terminated(parent, "FAILED")
        raise TrialsFailed(
            f"{len(unfinished)} of {len(specs)} trials failed ({', '.join(unfinished)}; errors: "
            f"{'; '.join(trial_errors(grid))}); finished trials are kept in {sweep_dir}: run "
            "the same command again to resume the rest"
        )
    records = [
        json.loads((trial_folder(sweep_dir, spec) / RECORD_FILE).read_text()) for spec in specs
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
        {"trials": len(records), "max_concurrent_trials": max_overlap(intervals), "wall_s": wall_s},
    )
    client.set_terminated(parent, "FINISHED")
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
