"""Self-supervised multi-task pre-training on Ray Train.

The driver (:func:`run_pretraining`) prepares the corpus, the resource plan and the MLflow
run, then runs a ``TorchTrainer``. Each worker (:func:`train_loop`) streams its shard of
every epoch's std-weighted windows, applies the pretext transforms on its own device,
and optimises the mean of the enabled tasks' cross-entropies with DDP. After each epoch
the held-out subjects' loss and per-task accuracy are computed, a checkpoint is
reported, and only then does rank 0 log the epoch to MLflow: a logged epoch always has
a checkpoint, so a resumed run logs each epoch exactly once.

Faults stop the run, never train on silently (``docs/reliability.md``): an epoch whose
loss is not finite, that made no optimiser step, or whose reads hit an unreadable or
corrupt corpus file ends every worker's loop without a checkpoint; rank 0 writes the
fault to the run folder (``fault.txt``) and the driver raises :class:`PretrainingFault`
(no Ray Train retries: the same epoch would fail the same way). The MLflow run then
ends FAILED and no model is registered. A rerun of a ``name`` with another config is
refused unless ``resume_with_changes`` is set; raising ``optim.epochs`` extends a run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import ray
import ray.train
import torch
import torch.distributed as dist
import yaml
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from wearssl.config import ConfigError, flatten
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.errors import PretrainingFault as PretrainingFault
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.models.export import PRETRAINED_FILE as MODEL_FILE
from wearssl.models.harnet import TASK_HEADS, harnet, save_checkpoint
from wearssl.pretrain.step import (
    allreduce_sum,
    evaluate_heldout,
    gather_sets,
    lr_at,
    model_windows,
    pretext_loss,
)

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
RUN_RECORD = "mlflow_run.json"
UNLOGGED_FILE = "unlogged_metrics.json"
FAULT_FILE = "fault.txt"
# Keys a rerun may change without changing what is trained: where and how it runs, where
# it logs, and the flag that allows the other changes.
RERUN_FREE_KEYS = ("runtime.", "tracking.", "sampling.read_cpus", "resume_with_changes")
RESUME_CHANGES_TAG = "resumed_with_changes"
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
            f"final metrics: {shown}",
            f"checkpoint: {self.checkpoint_path}",
        ]
        if self.registered_version:
            lines.append(f"registered model version: {self.registered_version}")
        if self.unlogged:
            lines.append(self.unlogged)
        return "\n".join(lines)


# ---------------------------------------------------------------- learning-rate schedule


def scaled_peak_lr(cfg: PretrainConfig) -> float:
    """lr x batch / 512 for large batches; small batches keep the base lr (no down-scaling,
    which on a laptop-sized batch would leave the tasks at chance for the whole run)."""
    return max(cfg.optim.lr, cfg.peak_lr)


def steps_per_epoch(cfg: PretrainConfig, n_train_subjects: int) -> int:
    steps = max(1, math.ceil(n_train_subjects / cfg.sampling.subjects_per_batch))
    if cfg.optim.max_steps_per_epoch is not None:
        steps = min(steps, cfg.optim.max_steps_per_epoch)
    return steps


# ---------------------------------------------------------------- worker


def _epoch_shard(config: dict, epoch: int, rank: int, world: int) -> ray.data.DataIterator:
    """This worker's streaming split of the epoch's dataset (rank 0 builds and shares it)."""
    shards: list[Any] = [None]
    if rank == 0:
        plan = epochs.epoch_plan(config["train_days"], config["seed"], epoch)
        dataset = epochs.epoch_dataset(
            config["corpus"],
            plan,
            config["windows_per_subject"],
            config["weighted"],
            config["read_cpus"],
        )
        shards = [dataset.streaming_split(world, equal=True)] if world > 1 else [[dataset]]
    if world > 1:
        dist.broadcast_object_list(shards, src=0)
    shard = shards[0][rank]
    return shard.iterator() if isinstance(shard, ray.data.Dataset) else shard


def _restore(model, optimizer, checkpoint: Checkpoint | None) -> dict:
    if checkpoint is None:
        return {"epoch": -1, "step": 0, "history": [], "best_val_loss": math.inf, "bad_epochs": 0}
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    return state


def _report(metrics: dict, state: dict, model, optimizer, window_seconds: int, rank: int) -> None:
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **state},
            Path(directory) / STATE_FILE,
        )
        save_checkpoint(Path(directory) / MODEL_FILE, model, window_seconds=window_seconds)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))


def _log_history(logger: tracking.ResilientLogger | None, history: list[dict]) -> None:
    """Log the epochs MLflow does not hold yet (a resumed run re-logs none twice)."""
    if logger is None or not history:
        return
    present = logger.logged_steps("val_loss")
    for entry in history:
        if entry["epoch"] not in present:
            logger.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, entry["epoch"])


# How a CorpusError raised in a Ray Data task shows in the worker: Ray passes the task's
# traceback on as text (the exception object's cause does not cross processes).
_CORPUS_ERROR_LINE = re.compile(rf"{corpus.CorpusError.__name__}: (.+)")


def corpus_fault(error: BaseException) -> str | None:
    """The message of the :class:`corpus.CorpusError` behind ``error`` (raised here, or in
    a read task, whose error Ray re-raises with the task's traceback as text), or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, corpus.CorpusError) and not isinstance(seen, ray.exceptions.RayError):
            return str(seen)
        found = _CORPUS_ERROR_LINE.search(str(seen))
        if found:
            return found.group(1).strip()
        seen = seen.__cause__ or seen.__context__
    return None


def _stop_on_fault(message: str, epoch: int, rank: int, run_dir: str) -> None:
    """Rank 0 keeps the fault for the driver to raise (Ray Train's result holds only
    checkpointed reports); every worker then leaves its loop."""
    if rank != 0:
        return
    print(f"epoch {epoch + 1}: stopping: {message}", flush=True)
    fs, path = corpus.resolve(run_dir)
    corpus.atomic_write_bytes(fs, corpus.join(path, FAULT_FILE), message.encode())


def _take_fault(run_dir: str) -> str:
    """The fault the workers kept in ``run_dir`` ('' when none); it is removed."""
    fs, path = corpus.resolve(run_dir)
    record = corpus.join(path, FAULT_FILE)
    if not corpus.exists(fs, record):
        return ""
    with fs.open_input_stream(record) as f:
        message = f.read().decode()
    fs.delete_file(record)
    return message


def _epoch_fault(epoch: int, reduced: list[float], read_errors: set[str], batch: int) -> str:
    """Why the epoch cannot be kept ('' when it can): (seen, loss sum, steps, ...) reduced."""
    if read_errors:
        return "; ".join(sorted(read_errors))
    steps = int(reduced[2])
    if steps == 0:
        return (
            f"epoch {epoch + 1} made no optimiser step: its windows did not fill one batch of "
            f"{batch} (sampling.subjects_per_batch x sampling.windows_per_subject)"
        )
    loss = reduced[1] / steps
    if not math.isfinite(loss):
        return (
            f"epoch {epoch + 1}: the training loss is {loss} (not finite); the run stops "
            "without checkpointing it. Lower optim.lr, or look for extreme values in the corpus"
        )
    return ""


def train_loop(config: dict) -> None:
    """Ray Train worker: streamed epochs, DDP, pretext loss, held-out eval, checkpoints."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    os.environ.update(config["mlflow_env"])
    torch.set_num_threads(config["torch_threads"])
    device = ray.train.torch.get_device()
    autocast = device.type == "cuda" and config["bf16"]
    torch.manual_seed(config["seed"] + rank)

    model = harnet(config["window_seconds"]).to(device)
    for task, head in TASK_HEADS.items():
        if task not in config["tasks"]:
            getattr(model, head).requires_grad_(False)  # DDP would wait for its gradients
    optimizer = torch.optim.Adam(model.parameters(), lr=config["base_lr"])
    state = _restore(model, optimizer, ray.train.get_checkpoint())
    if rank == 0 and state["epoch"] >= 0:
        print(f"resuming after epoch {state['epoch'] + 1} from the latest checkpoint", flush=True)
    ddp_model = ray.train.torch.prepare_model(model) if world > 1 else model

    logger = None
    if rank == 0:
        logger = tracking.ResilientLogger(config["run_id"], config["tracking_uri"])
        _log_history(logger, state["history"])

    heldout = ray.get(config["heldout"])[rank::world]
    worker_nodes = len(gather_sets({ray.get_runtime_context().get_node_id()}))
    warmup_steps = config["warmup_epochs"] * config["steps_per_epoch"]
    tasks = config["tasks"]
    for epoch in range(state["epoch"] + 1, config["epochs"]):
        generator = torch.Generator(device=device).manual_seed(
            epochs._stable_seed("pretext", config["seed"], epoch, rank)
        )
        started, seen, steps = time.perf_counter(), 0, 0
        train_loss = torch.zeros((), dtype=torch.float64, device=device)
        train_hits = torch.zeros(len(tasks), dtype=torch.int64, device=device)
        read_nodes: set[str] = set()
        read_error = ""
        shard = _epoch_shard(config, epoch, rank, world)
        try:
            for batch in shard.iter_batches(
                batch_size=config["worker_batch"],
                batch_format="numpy",
                drop_last=True,
                local_shuffle_buffer_size=config["shuffle_buffer"] or None,
                local_shuffle_seed=config["seed"] + epoch if config["shuffle_buffer"] else None,
                prefetch_batches=2,
            ):
                read_nodes.update(batch["node"].tolist())
                lr = lr_at(state["step"], config["base_lr"], config["peak_lr"], warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                rows = torch.from_numpy(batch["window"]).to(device, non_blocking=True).float()
                x = model_windows(rows, config["window_seconds"])
                loss, hits = pretext_loss(
                    ddp_model, x, tasks, generator, config["augment"], autocast
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state["step"] += 1
                steps += 1
                seen += len(x)
                train_loss += loss.detach()
                train_hits += hits
                if steps >= config["steps_per_epoch_cap"]:
                    break
        except Exception as err:  # noqa: BLE001 - a corpus fault stops the run, others raise
            read_error = corpus_fault(err) or ""
            if not read_error:
                raise
        elapsed = time.perf_counter() - started
        reduced = allreduce_sum([seen, float(train_loss), steps, *train_hits.tolist()], device)
        fault = _epoch_fault(
            epoch, reduced, gather_sets({read_error} - {""}), config["global_batch"]
        )
        if fault:
            _stop_on_fault(fault, epoch, rank, config["run_dir"])
            break
        n_seen = max(reduced[0], 1)
        all_nodes = gather_sets(read_nodes)
        metrics = {
            "train_loss": reduced[1] / max(reduced[2], 1),
            **{f"train_acc_{t}": h / n_seen for t, h in zip(tasks, reduced[3:], strict=True)},
            **evaluate_heldout(
                model,
                heldout,
                tasks,
                config["eval_batch"],
                device,
                config["seed"],
                autocast,
                config["window_seconds"],
            ),
            "windows_per_s": reduced[0] / elapsed,
            "read_nodes": len(all_nodes),
            "worker_nodes": worker_nodes,
            "lr": lr_at(state["step"], config["base_lr"], config["peak_lr"], warmup_steps),
            "epoch_seconds": elapsed,
        }
        if not math.isfinite(metrics["val_loss"]):
            _stop_on_fault(
                f"epoch {epoch + 1}: the held-out loss is {metrics['val_loss']} (not finite); "
                "the run stops without checkpointing it",
                epoch,
                rank,
                config["run_dir"],
            )
            break
        improved = metrics["val_loss"] < state["best_val_loss"]
        state["best_val_loss"] = min(state["best_val_loss"], metrics["val_loss"])
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, **metrics})
        _report(
            {"epoch": epoch, **metrics}, state, model, optimizer, config["window_seconds"], rank
        )
        _log_history(logger, state["history"][-1:])
        if rank == 0:
            print(
                f"epoch {epoch + 1}/{config['epochs']}: "
                + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
                flush=True,
            )
        if state["bad_epochs"] >= config["patience"]:
            if rank == 0:
                print(f"early stopping: no held-out improvement for {config['patience']} epochs")
            break
    if logger is not None and logger.pending:
        logger.flush()
        _keep_unlogged(config["run_dir"], logger.pending)


def _keep_unlogged(run_dir: str, pending: list[tuple[str, float, int]]) -> None:
    """Persist metric values the tracking store refused, for the driver to retry and report."""
    fs, path = corpus.resolve(run_dir)
    corpus.atomic_write_bytes(fs, corpus.join(path, UNLOGGED_FILE), json.dumps(pending).encode())


def _retry_unlogged(run_dir: str, run_id: str, uri: str) -> str:
    """Log what the workers could not; returns a report of what still failed ("" if none)."""
    fs, path = corpus.resolve(run_dir)
    record = corpus.join(path, UNLOGGED_FILE)
    if not corpus.exists(fs, record):
        return ""
    with fs.open_input_stream(record) as f:
        pending = [tuple(item) for item in json.loads(f.read())]
    logger = tracking.ResilientLogger(run_id, uri, pending=pending, may_be_logged=True)
    logger.flush()
    if logger.pending:
        corpus.atomic_write_bytes(fs, record, json.dumps(logger.pending).encode())
        return logger.unlogged_report()
    fs.delete_file(record)
    return ""


# ---------------------------------------------------------------- driver


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


def _run_dir(cfg: PretrainConfig) -> str:
    """Where Ray Train keeps this run (checkpoints) and we keep its bookkeeping files."""
    return corpus.join(_storage_uri(cfg.runtime.storage_path), cfg.name)


def _run_record_path(cfg: PretrainConfig) -> tuple[Any, str]:
    fs, run_dir = corpus.resolve(_run_dir(cfg))
    return fs, corpus.join(run_dir, RUN_RECORD)


def read_run_record(cfg: PretrainConfig) -> dict | None:
    """What an earlier attempt of this run recorded (MLflow run, config, corpus), if any."""
    fs, record = _run_record_path(cfg)
    if not corpus.exists(fs, record):
        return None
    with fs.open_input_stream(record) as f:
        return json.loads(f.read())


def config_changes(cfg: PretrainConfig, record: dict, manifest_digest: str) -> list[str]:
    """``key: old -> new`` for each key (and the corpus content) that differs from the
    recorded run's; keys of :data:`RERUN_FREE_KEYS` and a raised ``optim.epochs`` are free.
    A record from before configs were recorded has nothing to compare."""
    if "config" not in record:
        return []
    old, new = record["config"], tracking.params_for_mlflow(flatten(cfg))
    changes = []
    for key in sorted(set(old) | set(new)):
        if key.startswith(RERUN_FREE_KEYS) or old.get(key) == new.get(key):
            continue
        if key == "optim.epochs" and int(new[key]) >= int(old.get(key, 0)):
            continue
        changes.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    if record.get("corpus_manifest_hash", manifest_digest) != manifest_digest:
        changes.append(
            f"corpus content (manifest hash): {record['corpus_manifest_hash']} -> {manifest_digest}"
        )
    return changes


def require_same_config(
    cfg: PretrainConfig, record: dict | None, manifest_digest: str
) -> list[str]:
    """The config changes of a rerun (see :func:`config_changes`); a ConfigError listing them
    unless ``resume_with_changes`` allows them."""
    changes = config_changes(cfg, record, manifest_digest) if record else []
    if changes and not cfg.resume_with_changes:
        raise ConfigError(
            f"run '{cfg.name}' in {_run_dir(cfg)} was started with another config "
            f"({'; '.join(changes)}); give another name to start a new run, or set "
            "resume_with_changes=true to continue it with this config (recorded in its run)"
        )
    return changes


def mlflow_run_for(
    cfg: PretrainConfig,
    uri: str,
    tags: dict[str, str],
    record: dict | None,
    changes: list[str],
) -> str:
    """The MLflow run of this pre-training: the one a previous attempt recorded, or a new
    one. Config ``changes`` allowed on a resume are added to its tag
    :data:`RESUME_CHANGES_TAG`. The record is rewritten with this attempt's config."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = None
    if record is not None and record.get("tracking_uri") == uri:
        try:
            run = client.get_run(record["run_id"])
            client.update_run(record["run_id"], status="RUNNING")
            run_id = record["run_id"]
        except mlflow.exceptions.MlflowException:
            log.warning("recorded MLflow run %s is gone; starting a new one", record["run_id"])
        else:
            if changes:
                earlier = run.data.tags.get(RESUME_CHANGES_TAG)
                noted = "\n".join(filter(None, [earlier, "; ".join(changes)]))
                client.set_tag(run_id, RESUME_CHANGES_TAG, noted[-tracking.MAX_TAG_LENGTH :])
    if run_id is None:
        if cfg.tracking.parent_run_id:
            tags = {**tags, "mlflow.parentRunId": cfg.tracking.parent_run_id}
        experiment = tracking.experiment_id(cfg.tracking.experiment, uri)
        run_id = client.create_run(experiment, run_name=cfg.name, tags=tags).info.run_id
        params = tracking.params_for_mlflow(flatten(cfg))
        client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])
    fs, path = _run_record_path(cfg)
    corpus.atomic_write_bytes(
        fs,
        path,
        json.dumps(
            {
                "run_id": run_id,
                "tracking_uri": uri,
                "config": tracking.params_for_mlflow(flatten(cfg)),
                "corpus_manifest_hash": tags["corpus_manifest_hash"],
            }
        ).encode(),
    )
    return run_id


def _finish_run(
    cfg: PretrainConfig, run_id: str, uri: str, checkpoint: Checkpoint | None
) -> tuple[str, str | None]:
    """Log the config, the final checkpoint and the model; register it. Returns (path, version)."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    with tempfile.TemporaryDirectory() as directory:
        config_path = Path(directory) / "config.yaml"
        config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run_id, str(config_path))
    if checkpoint is None:
        return "", None
    local = Path(checkpoint.to_directory()) / MODEL_FILE
    client.log_artifact(run_id, str(local), artifact_path="checkpoint")
    version = None
    if not cfg.tracking.log_model:
        return checkpoint.path, version
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        model = harnet(cfg.window_seconds, pretrained=local).eval()
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            registered_model_name=cfg.tracking.registered_model,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        if cfg.tracking.registered_model:
            version = str(info.registered_model_version)
    return checkpoint.path, version


def train_loop_config(
    cfg: PretrainConfig,
    plan: runtime.ResourcePlan,
    root: str,
    train_days: dict[str, list[epochs.SubjectDay]],
    heldout: ray.ObjectRef,
    run_id: str,
    uri: str,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The config every :func:`train_loop` worker gets; of the driver's environment
    ``environ`` only :data:`WORKER_MLFLOW_SETTINGS` go in, never credentials."""
    return {
        "corpus": root,
        "train_days": train_days,
        "heldout": heldout,
        "run_id": run_id,
        "tracking_uri": uri,
        "window_seconds": cfg.window_seconds,
        "tasks": list(cfg.tasks),
        "augment": cfg.augment,
        "weighted": cfg.sampling.weighted,
        "windows_per_subject": cfg.sampling.windows_per_subject,
        "read_cpus": cfg.sampling.read_cpus,
        "shuffle_buffer": cfg.sampling.shuffle_buffer,
        "worker_batch": cfg.worker_batch,
        "global_batch": cfg.global_batch,
        "epochs": cfg.optim.epochs,
        "base_lr": cfg.optim.lr,
        "peak_lr": scaled_peak_lr(cfg),
        "warmup_epochs": cfg.optim.warmup_epochs,
        "steps_per_epoch": steps_per_epoch(cfg, len(train_days)),
        "steps_per_epoch_cap": cfg.optim.max_steps_per_epoch or math.inf,
        "patience": cfg.optim.patience,
        "seed": cfg.optim.seed,
        "eval_batch": cfg.eval.batch_size,
        "torch_threads": plan.torch_threads,
        "bf16": cfg.runtime.bf16,
        "run_dir": _run_dir(cfg),
        "mlflow_env": {k: environ[k] for k in WORKER_MLFLOW_SETTINGS if k in environ},
    }


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
        "git_commit": tracking.git_commit(),
        "corpus_manifest_hash": manifest_digest,
        "workers": str(plan.num_workers),
        "worker_kind": "gpu" if plan.use_gpu else "cpu",
        "cluster_cpus": f"{cluster.get('CPU', 0):g}",
        "cluster_gpus": f"{cluster.get('GPU', 0):g}",
    }
    run_id = mlflow_run_for(cfg, uri, tags, record, changes)
    print(f"MLflow run {run_id} at {uri}", flush=True)
    with tracking.run_outcome(run_id, uri):
        loop_config = train_loop_config(
            cfg, plan, root, train_days, ray.put(heldout), run_id, uri, os.environ
        )
        return _train(cfg, plan, loop_config, run_id, uri)


def _train(
    cfg: PretrainConfig, plan: runtime.ResourcePlan, loop_config: dict, run_id: str, uri: str
) -> PretrainResult:
    """Fit, then log and register the final model; a worker's fault is raised here."""
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker={"CPU": plan.cpus_per_worker},
            placement_strategy=cfg.runtime.placement_strategy,
        ),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=_storage_uri(cfg.runtime.storage_path),
            failure_config=FailureConfig(max_failures=cfg.runtime.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    _take_fault(_run_dir(cfg))  # a fault of an earlier attempt, fixed since
    result = trainer.fit()
    unlogged = _retry_unlogged(_run_dir(cfg), run_id, uri)
    fault = _take_fault(_run_dir(cfg))
    if fault:
        raise PretrainingFault(f"pre-training run '{cfg.name}' stopped: {fault}")
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if _is_number(v)}
    checkpoint_path, version = result.checkpoint.path if result.checkpoint else "", None
    try:
        checkpoint_path, version = _finish_run(cfg, run_id, uri, result.checkpoint)
    except Exception as err:  # noqa: BLE001 - training is done; say what was not recorded
        unlogged = f"{unlogged}\nfinal model and artifacts not logged to {uri}: {err}"
    return PretrainResult(
        run_id=run_id,
        tracking_uri=uri,
        epochs_completed=int(metrics.get("epoch", -1)) + 1,
        metrics=metrics,
        checkpoint_path=checkpoint_path,
        registered_version=version,
        unlogged=unlogged.strip(),
    )


def _storage_uri(storage_path: str) -> str:
    return storage_path if "://" in storage_path else str(Path(storage_path).resolve())


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
