"""Self-supervised multi-task pre-training on Ray Train.

The driver (:func:`run_pretraining`) prepares the corpus, the resource plan and the MLflow
run, then runs a ``TorchTrainer``. Each worker (:func:`train_loop`) streams its shard of
every epoch's std-weighted windows, applies the pretext transforms on its own device,
and optimises the mean of the enabled tasks' cross-entropies with DDP. After each epoch
the held-out subjects' loss and per-task accuracy are computed, a checkpoint is
reported, and only then does rank 0 log the epoch to MLflow: a logged epoch always has
a checkpoint, so a resumed run logs each epoch exactly once.
"""

from __future__ import annotations

import json
import logging
import math
import os
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

from wearssl.config import flatten
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
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
MODEL_FILE = "harnet.pt"
RUN_RECORD = "mlflow_run.json"
UNLOGGED_FILE = "unlogged_metrics.json"
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
        shard = _epoch_shard(config, epoch, rank, world)
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
            loss, hits = pretext_loss(ddp_model, x, tasks, generator, config["augment"], autocast)
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
        elapsed = time.perf_counter() - started
        reduced = allreduce_sum([seen, float(train_loss), steps, *train_hits.tolist()], device)
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
    logger = tracking.ResilientLogger(run_id, uri, pending=pending)
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


def mlflow_run_for(cfg: PretrainConfig, uri: str, tags: dict[str, str]) -> str:
    """The MLflow run of this pre-training: the one a previous attempt recorded, or a new one."""
    fs, record = _run_record_path(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri)
    if corpus.exists(fs, record):
        with fs.open_input_stream(record) as f:
            previous = json.loads(f.read())
        if previous.get("tracking_uri") == uri:
            try:
                client.get_run(previous["run_id"])
                client.update_run(previous["run_id"], status="RUNNING")
                return previous["run_id"]
            except mlflow.exceptions.MlflowException:
                log.warning(
                    "recorded MLflow run %s is gone; starting a new one", previous["run_id"]
                )
    if cfg.tracking.parent_run_id:
        tags = {**tags, "mlflow.parentRunId": cfg.tracking.parent_run_id}
    experiment = tracking.experiment_id(cfg.tracking.experiment, uri)
    run = client.create_run(experiment, run_name=cfg.name, tags=tags)
    params = tracking.params_for_mlflow(flatten(cfg))
    client.log_batch(
        run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()]
    )
    corpus.atomic_write_bytes(
        fs, record, json.dumps({"run_id": run.info.run_id, "tracking_uri": uri}).encode()
    )
    return run.info.run_id


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


def run_pretraining(cfg: PretrainConfig) -> PretrainResult:
    """Pre-train per ``cfg`` on the connected Ray cluster; resumes a run of the same name."""
    cluster = runtime.connect(cfg.runtime.address)
    plan = runtime.plan_resources(
        cfg.runtime.num_workers,
        cfg.runtime.cpus_per_worker,
        cfg.runtime.data_cpus,
        cfg.runtime.use_gpu,
        cluster,
    )
    root = ensure_corpus(cfg)
    manifest = corpus.read_manifest(root)
    train_days = epochs.subset(
        epochs.subject_days(manifest, "train"),
        cfg.subset.subjects,
        cfg.subset.data_ratio,
        cfg.subset.seed,
    )
    test_days = epochs.subject_days(manifest, "test")
    if not train_days or not test_days:
        raise ValueError(
            f"corpus {root} needs subjects in both splits with worn windows; "
            f"found {len(train_days)} train and {len(test_days)} test subjects"
        )
    uri = tracking.configure(cfg.tracking.tracking_uri)
    tags = {
        "git_commit": tracking.git_commit(),
        "corpus_manifest_hash": corpus.manifest_hash(manifest),
        "workers": str(plan.num_workers),
        "worker_kind": "gpu" if plan.use_gpu else "cpu",
        "cluster_cpus": f"{cluster.get('CPU', 0):g}",
        "cluster_gpus": f"{cluster.get('GPU', 0):g}",
    }
    run_id = mlflow_run_for(cfg, uri, tags)
    print(f"MLflow run {run_id} at {uri}", flush=True)
    heldout = epochs.heldout_windows(
        root, test_days, cfg.eval.max_subjects, cfg.eval.windows_per_subject, cfg.optim.seed
    )
    loop_config = train_loop_config(
        cfg, plan, root, train_days, ray.put(heldout), run_id, uri, os.environ
    )
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
    result = trainer.fit()
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if _is_number(v)}
    unlogged = _retry_unlogged(_run_dir(cfg), run_id, uri)
    checkpoint_path, version = result.checkpoint.path if result.checkpoint else "", None
    try:
        checkpoint_path, version = _finish_run(cfg, run_id, uri, result.checkpoint)
        mlflow.MlflowClient(tracking_uri=uri).set_terminated(run_id, "FINISHED")
    except Exception as err:  # noqa: BLE001 - training is done; say what was not recorded
        unlogged = f"{unlogged}\nfinal model, artifacts and run status not logged to {uri}: {err}"
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
