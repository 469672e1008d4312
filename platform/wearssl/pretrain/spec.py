"""What every pre-training worker is given: one frozen spec, built once by the driver.

The spec crosses the Ray boundary as the single entry of the trainer's
``train_loop_config``; workers read its attributes, so a renamed or missing field fails
where the spec is built, not as a ``KeyError`` inside a remote worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.infra import ray_runtime as runtime

# The driver's MLflow client settings that hold on the workers too: retries and timeouts of
# its HTTP calls. Credentials (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME,
# MLFLOW_TRACKING_PASSWORD, cloud keys) never travel in the trainer's config, which anything
# that reads the trainer sees: each worker takes them from its own node's environment.
WORKER_MLFLOW_SETTINGS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)
SPEC_KEY = "spec"


def storage_uri(storage_path: str) -> str:
    """``runtime.storage_path`` as Ray Train wants it: a URI, or an absolute local path."""
    return storage_path if "://" in storage_path else str(Path(storage_path).resolve())


def run_dir(cfg: PretrainConfig) -> str:
    """Where Ray Train keeps this run (checkpoints) and we keep its bookkeeping files."""
    return corpus.join(storage_uri(cfg.runtime.storage_path), cfg.name)


def scaled_peak_lr(cfg: PretrainConfig) -> float:
    """lr x batch / 512 for large batches; small batches keep the base lr (no down-scaling,
    which on a laptop-sized batch would leave the tasks at chance for the whole run)."""
    return max(cfg.optim.lr, cfg.peak_lr)


def steps_per_epoch(cfg: PretrainConfig, n_train_subjects: int) -> int:
    steps = max(1, math.ceil(n_train_subjects / cfg.sampling.subjects_per_batch))
    if cfg.optim.max_steps_per_epoch is not None:
        steps = min(steps, cfg.optim.max_steps_per_epoch)
    return steps


@dataclass(frozen=True)
class PretrainWorkerSpec:
    """Everything a :func:`wearssl.pretrain.worker.train_loop` worker reads."""

    corpus: str
    train_days: Mapping[str, list[epochs.SubjectDay]]
    heldout: ray.ObjectRef | None
    run_id: str
    tracking_uri: str
    run_dir: str
    window_seconds: int
    tasks: tuple[str, ...]
    augment: bool
    weighted: bool
    windows_per_subject: int
    read_cpus: float
    shuffle_buffer: int
    worker_batch: int
    global_batch: int
    epochs: int
    base_lr: float
    peak_lr: float
    warmup_epochs: int
    steps_per_epoch: int
    max_steps_per_epoch: int | None
    patience: int
    seed: int
    eval_batch: int
    torch_threads: int
    bf16: bool
    mlflow_env: Mapping[str, str]
    progress: Any = None  # the driver's progress actor handle; None draws nothing

    @property
    def warmup_steps(self) -> int:
        return self.warmup_epochs * self.steps_per_epoch

    @property
    def windows_per_step(self) -> int:
        """Model windows one optimiser step takes over all workers (a 5-s model sees each
        10-s corpus row as two windows)."""
        return self.global_batch * (corpus.WINDOW_SECONDS // self.window_seconds)

    def as_loop_config(self) -> dict[str, PretrainWorkerSpec]:
        """The trainer's ``train_loop_config``: this spec as its only entry."""
        return {SPEC_KEY: self}


def worker_spec(
    cfg: PretrainConfig,
    plan: runtime.ResourcePlan,
    root: str,
    train_days: Mapping[str, list[epochs.SubjectDay]],
    heldout: ray.ObjectRef | None,
    run_id: str,
    uri: str,
    run_dir: str,
    environ: Mapping[str, str],
    progress: Any = None,
) -> PretrainWorkerSpec:
    """The spec of this run's workers; of the driver's environment ``environ`` only
    :data:`WORKER_MLFLOW_SETTINGS` go in, never credentials."""
    return PretrainWorkerSpec(
        corpus=root,
        train_days=train_days,
        heldout=heldout,
        run_id=run_id,
        tracking_uri=uri,
        run_dir=run_dir,
        window_seconds=cfg.window_seconds,
        tasks=tuple(cfg.tasks),
        augment=cfg.augment,
        weighted=cfg.sampling.weighted,
        windows_per_subject=cfg.sampling.windows_per_subject,
        read_cpus=cfg.sampling.read_cpus,
        shuffle_buffer=cfg.sampling.shuffle_buffer,
        worker_batch=cfg.worker_batch,
        global_batch=cfg.global_batch,
        epochs=cfg.optim.epochs,
        base_lr=cfg.optim.lr,
        peak_lr=scaled_peak_lr(cfg),
        warmup_epochs=cfg.optim.warmup_epochs,
        steps_per_epoch=steps_per_epoch(cfg, len(train_days)),
        max_steps_per_epoch=cfg.optim.max_steps_per_epoch,
        patience=cfg.optim.patience,
        seed=cfg.optim.seed,
        eval_batch=cfg.eval.batch_size,
        torch_threads=plan.torch_threads,
        bf16=cfg.runtime.bf16,
        mlflow_env={k: environ[k] for k in WORKER_MLFLOW_SETTINGS if k in environ},
        progress=progress,
    )
