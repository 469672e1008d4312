"""Self-supervised multi-task pre-training on Ray Train: the driver.

:func:`run_pretraining` checks what can be checked before a worker starts, prepares the
corpus, the resource plan and the MLflow run (:mod:`wearssl.pretrain.mlflow_run`), then runs
a ``TorchTrainer`` whose workers (:func:`wearssl.pretrain.worker.train_loop`) each get one
frozen :class:`~wearssl.pretrain.spec.PretrainWorkerSpec`. While they train, the driver
draws the console (:mod:`wearssl.pretrain.progress`).

Faults stop the run, never train on silently (``docs/reliability.md``): an epoch whose
loss is not finite, that made no optimiser step, or whose reads hit an unreadable or
corrupt corpus file ends every worker's loop without a checkpoint; the driver then raises
:class:`PretrainingFault` (no Ray Train retries: the same epoch would fail the same way).
The MLflow run then ends FAILED and no model is registered.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from wearssl.config import ConfigError
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.errors import PretrainingFault as PretrainingFault
from wearssl.infra import mlflow_runs, tracking
from wearssl.infra import ray_runtime as runtime
from wearssl.pretrain import faults
from wearssl.pretrain.mlflow_run import (
    MANIFEST_HASH_TAG,
    describe_run,
    description,
    finish_run,
    log_corpus_input,
    mlflow_run_for,
    read_run_record,
    require_same_config,
)
from wearssl.pretrain.progress import ProgressBoard, ProgressPrinter
from wearssl.pretrain.spec import PretrainWorkerSpec, run_dir, storage_uri, worker_spec
from wearssl.pretrain.worker import train_loop

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    run_id: str
    tracking_uri: str
    epochs_completed: int
    metrics: dict[str, float]
    checkpoint_path: str
    registered_version: str | None
    unlogged: str

    def summary(self) -> str:
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        lines = [
            f"pre-training finished: {self.epochs_completed} epochs, MLflow run {self.run_id}",
            f"final metrics (epoch {self.epochs_completed}): {shown}",
            f"checkpoint: {self.checkpoint_path}",
        ]
        if self.registered_version:
            lines.append(f"registered model version: {self.registered_version}")
        if self.unlogged:
            lines.append(self.unlogged)
        return "\n".join(lines)


# ---------------------------------------------------------------- checks before training


def ensure_corpus(cfg: PretrainConfig) -> str:
    """The configured corpus, or the embedded default synthetic one (made once)."""
    if cfg.corpus is not None:
        corpus.read_info(cfg.corpus)
        return cfg.corpus
    from wearssl.data.synthetic import ensure_synthetic_corpus

    return ensure_synthetic_corpus(
        str(Path(cfg.synthetic.out).resolve()),
        cfg.synthetic.subjects,
        cfg.synthetic.days,
        cfg.synthetic.seed,
    )


def require_full_batch(cfg: PretrainConfig, root: str, train_days: dict) -> None:
    """Refuse a corpus whose epoch cannot fill one batch: the run would make no optimiser
    step and "finish" with an untrained model."""
    most = epochs.max_epoch_windows(train_days, cfg.sampling.windows_per_subject)
    if most >= cfg.global_batch:
        return
    worn = sum(day.drawable for days in train_days.values() for day in days)
    raise ConfigError(
        f"one batch needs sampling.subjects_per_batch x sampling.windows_per_subject = "
        f"{cfg.global_batch} windows, but an epoch of corpus {root} can draw at most {most}: "
        f"its {len(train_days)} training subjects hold {worn} worn windows, of which one epoch "
        f"takes at most {cfg.sampling.windows_per_subject} per subject from one day. Lower "
        "sampling.windows_per_subject or sampling.subjects_per_batch, or add subjects"
    )


def run_pretraining(cfg: PretrainConfig) -> PretrainResult:
    """Pre-train per ``cfg`` on the connected Ray cluster; resumes a run of the same name.

    Everything that can be checked is checked before a training worker starts: the tracking
    URI (no credentials, a server that answers), the resource plan and per-task CPUs, the
    corpus (its version, both splits, enough windows for one batch), and the config of an
    earlier attempt of this run. The MLflow run then always ends FINISHED, FAILED or KILLED.
    """
    uri = tracking.configure(cfg.tracking.tracking_uri)
    cluster = runtime.connect(cfg.runtime.address)
    plan = runtime.plan_resources(
        cfg.runtime.num_workers,
        cfg.runtime.cpus_per_worker,
        cfg.runtime.data_cpus,
        cfg.runtime.use_gpu,
        cluster,
    )
    runtime.require_task_fits(
        "sampling.read_cpus", cfg.sampling.read_cpus, cluster, plan.training_cpus
    )
    root = ensure_corpus(cfg)
    manifest = corpus.read_manifest(root)
    train_days = epochs.subset(
        epochs.subject_days(manifest, "train"),
        cfg.subset.subjects,
        cfg.subset.data_ratio,
        cfg.subset.seed,
    )
    require_full_batch(cfg, root, train_days)
    test_days = epochs.subject_days(manifest, "test")
    if not test_days:
        raise corpus.CorpusError(
            f"corpus {root} needs held-out (test split) subjects with worn windows; it has none"
        )
    manifest_digest = corpus.manifest_hash(manifest)
    record = read_run_record(cfg)
    changes = require_same_config(cfg, record, manifest_digest)
    heldout = epochs.heldout_windows(
        root, test_days, cfg.eval.max_subjects, cfg.eval.windows_per_subject, cfg.optim.seed
    )
    tags = {
        **mlflow_runs.job_tags(cluster),
        MANIFEST_HASH_TAG: manifest_digest,
        "workers": str(plan.num_workers),
        "worker_kind": "gpu" if plan.use_gpu else "cpu",
    }
    run_id = mlflow_run_for(cfg, uri, tags, record, changes)
    print(f"MLflow run {run_id} at {uri}", flush=True)
    with tracking.run_outcome(run_id, uri):
        client = mlflow.MlflowClient(tracking_uri=uri)
        describe_run(client, run_id, description(cfg, root, len(train_days)))
        log_corpus_input(client, run_id, root, manifest_digest)
        board = ProgressBoard.remote()
        spec = worker_spec(
            cfg,
            plan,
            root,
            train_days,
            ray.put(heldout),
            run_id,
            uri,
            run_dir(cfg),
            os.environ,
            board,
        )
        try:
            return _train(cfg, plan, spec)
        finally:
            ray.kill(board)


def _train(
    cfg: PretrainConfig, plan: runtime.ResourcePlan, spec: PretrainWorkerSpec
) -> PretrainResult:
    """Fit, then log and register the final model; a worker's fault is raised here."""
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=spec.as_loop_config(),
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker={"CPU": plan.cpus_per_worker},
            placement_strategy=cfg.runtime.placement_strategy,
        ),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=storage_uri(cfg.runtime.storage_path),
            failure_config=FailureConfig(max_failures=cfg.runtime.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    faults.take_fault(spec.run_dir)  # a fault of an earlier attempt, fixed since
    windows_per_epoch = spec.steps_per_epoch * spec.windows_per_step
    with ProgressPrinter(spec.progress, spec.epochs, windows_per_epoch):
        result = trainer.fit()
    unlogged = faults.retry_unlogged(spec.run_dir, spec.run_id, spec.tracking_uri)
    fault = faults.take_fault(spec.run_dir)
    if fault:
        raise PretrainingFault(f"pre-training run '{cfg.name}' stopped: {fault}")
    reported = result.metrics or {}
    metrics = {k: float(v) for k, v in reported.items() if k != "epoch" and _is_number(v)}
    checkpoint_path, version = result.checkpoint.path if result.checkpoint else "", None
    try:
        checkpoint_path, version = finish_run(
            cfg, spec.run_id, spec.tracking_uri, result.checkpoint
        )
    except Exception as err:  # noqa: BLE001 - training is done; say what was not recorded
        unlogged = f"{unlogged}\nfinal model and artifacts not logged to {spec.tracking_uri}: {err}"
    return PretrainResult(
        run_id=spec.run_id,
        tracking_uri=spec.tracking_uri,
        epochs_completed=int(reported.get("epoch", -1)) + 1,
        metrics=metrics,
        checkpoint_path=checkpoint_path,
        registered_version=version,
        unlogged=unlogged.strip(),
    )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
