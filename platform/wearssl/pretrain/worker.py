"""The Ray Train worker of pre-training (:func:`train_loop`).

Each worker streams its shard of every epoch's std-weighted windows, applies the pretext
transforms on its own device, and optimises the mean of the enabled tasks' cross-entropies
with DDP. After each epoch the held-out subjects' loss and per-task accuracy are computed,
a checkpoint is reported, and only then does rank 0 log the epoch to MLflow: a logged epoch
always has a checkpoint, so a resumed run logs each epoch exactly once.

An epoch whose loss is not finite, that made no optimiser step, or whose reads hit an
unreadable or corrupt corpus file ends every worker's loop without a checkpoint; rank 0
keeps the fault for the driver (:mod:`wearssl.pretrain.faults`).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train import Checkpoint

from wearssl.data import sampler as epochs
from wearssl.infra import tracking
from wearssl.models.export import PRETRAINED_FILE as MODEL_FILE
from wearssl.models.harnet import TASK_HEADS, harnet, save_checkpoint
from wearssl.pretrain import faults
from wearssl.pretrain.progress import WorkerProgress
from wearssl.pretrain.spec import SPEC_KEY, PretrainWorkerSpec
from wearssl.pretrain.step import (
    allreduce_sum,
    evaluate_heldout,
    gather_sets,
    lr_at,
    model_windows,
    pretext_loss,
)

STATE_FILE = "state.pt"
# Metric names of checkpoints written before metrics were grouped by stage.
_OLD_METRIC_NAMES = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "windows_per_s": "train/windows_per_s",
    "read_nodes": "train/read_nodes",
    "worker_nodes": "train/worker_nodes",
    "lr": "train/lr",
    "epoch_seconds": "time/epoch_s",
}
# The MLflow key every epoch logs, whose steps tell which epochs the store holds already.
EPOCH_KEY = "val/loss"


@dataclass
class EpochSums:
    """One worker's running sums over an epoch's steps (on the device until reduced)."""

    seen: int
    steps: int
    loss: torch.Tensor
    hits: torch.Tensor
    nodes: set[str]


def _epoch_shard(spec: PretrainWorkerSpec, epoch: int, rank: int, world: int) -> Any:
    """This worker's streaming split of the epoch's dataset (rank 0 builds and shares it)."""
    shards: list[Any] = [None]
    if rank == 0:
        plan = epochs.epoch_plan(dict(spec.train_days), spec.seed, epoch)
        dataset = epochs.epoch_dataset(
            spec.corpus, plan, spec.windows_per_subject, spec.weighted, spec.read_cpus
        )
        shards = [dataset.streaming_split(world, equal=True)] if world > 1 else [[dataset]]
    if world > 1:
        dist.broadcast_object_list(shards, src=0)
    shard = shards[0][rank]
    return shard.iterator() if isinstance(shard, ray.data.Dataset) else shard


def stage_metric_name(key: str) -> str:
    """``key`` as metrics are named now (``val/aot_acc``), given an older name (``val_acc_aot``)."""
    if key in _OLD_METRIC_NAMES:
        return _OLD_METRIC_NAMES[key]
    for stage in ("train", "val"):
        if key.startswith(f"{stage}_acc_"):
            return f"{stage}/{key.removeprefix(f'{stage}_acc_')}_acc"
    return key


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"epoch": -1, "step": 0, "history": [], "best_val_loss": math.inf, "bad_epochs": 0}
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    state["history"] = [{stage_metric_name(k): v for k, v in e.items()} for e in state["history"]]
    return state


def _report(
    metrics: dict, state: dict, model: torch.nn.Module, optimizer, window_seconds: int, rank: int
) -> None:
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
    present = logger.logged_steps(EPOCH_KEY)
    for entry in history:
        if entry["epoch"] not in present:
            logger.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, entry["epoch"])


def _stop_on_fault(message: str, rank: int, spec: PretrainWorkerSpec, say: WorkerProgress) -> None:
    """Rank 0 keeps the fault for the driver to raise (Ray Train's result holds only
    checkpointed reports); every worker then leaves its loop."""
    if rank != 0:
        return
    say.say(f"stopping: {message}")
    faults.keep_fault(spec.run_dir, message)


def epoch_line(epoch: int, epochs_total: int, metrics: dict[str, float]) -> str:
    """The console line of a finished epoch (counted from 1, as every console line)."""
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return f"epoch {epoch + 1}/{epochs_total}: {shown}"


def _model(spec: PretrainWorkerSpec, device: torch.device) -> torch.nn.Module:
    model = harnet(spec.window_seconds).to(device)
    for task, head in TASK_HEADS.items():
        if task not in spec.tasks:
            getattr(model, head).requires_grad_(False)  # DDP would wait for its gradients
    return model


def batch_rows(batch: dict[str, np.ndarray], device: torch.device) -> torch.Tensor:
    """A batch's windows as float32 on ``device``. Ray Data hands out read-only arrays
    (views of Arrow buffers), which ``torch.from_numpy`` may not share: they are copied
    here on the host (the copy ``.float()`` would make anyway)."""
    rows = np.require(batch["window"], dtype=np.float32, requirements="W")
    return torch.from_numpy(rows).to(device, non_blocking=True)


def _train_epoch(
    spec: PretrainWorkerSpec,
    epoch: int,
    ddp_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict,
    device: torch.device,
    autocast: bool,
    progress: WorkerProgress,
) -> tuple[EpochSums, str]:
    """Optimise over this worker's shard of ``epoch``; (its sums, a corpus fault or '')."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    generator = torch.Generator(device=device).manual_seed(
        epochs._stable_seed("pretext", spec.seed, epoch, rank)
    )
    sums = EpochSums(
        seen=0,
        steps=0,
        loss=torch.zeros((), dtype=torch.float64, device=device),
        hits=torch.zeros(len(spec.tasks), dtype=torch.int64, device=device),
        nodes=set(),
    )
    cap = spec.max_steps_per_epoch or math.inf
    try:
        for batch in _epoch_shard(spec, epoch, rank, world).iter_batches(
            batch_size=spec.worker_batch,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=spec.shuffle_buffer or None,
            local_shuffle_seed=spec.seed + epoch if spec.shuffle_buffer else None,
            prefetch_batches=2,
        ):
            sums.nodes.update(batch["node"].tolist())
            lr = lr_at(state["step"], spec.base_lr, spec.peak_lr, spec.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = model_windows(batch_rows(batch, device), spec.window_seconds)
            loss, hits = pretext_loss(
                ddp_model, x, list(spec.tasks), generator, spec.augment, autocast
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            sums.steps += 1
            sums.seen += len(x)
            sums.loss += loss.detach()
            sums.hits += hits
            progress.step(epoch, sums.steps)
            if sums.steps >= cap:
                break
    except Exception as err:  # noqa: BLE001 - a corpus fault stops the run, others raise
        read_error = faults.corpus_fault(err)
        if not read_error:
            raise
        return sums, read_error
    return sums, ""


def train_loop(config: dict[str, PretrainWorkerSpec]) -> None:
    """Ray Train worker: streamed epochs, DDP, pretext loss, held-out eval, checkpoints."""
    spec = config[SPEC_KEY]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    os.environ.update(spec.mlflow_env)
    torch.set_num_threads(spec.torch_threads)
    device = ray.train.torch.get_device()
    autocast = device.type == "cuda" and spec.bf16
    torch.manual_seed(spec.seed + rank)
    progress = WorkerProgress(spec.progress if rank == 0 else None, spec.windows_per_step)

    model = _model(spec, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.base_lr)
    state = _restore(model, optimizer)
    if state["epoch"] >= 0:
        progress.say(f"resuming after epoch {state['epoch'] + 1} from the latest checkpoint")
    ddp_model = ray.train.torch.prepare_model(model) if world > 1 else model

    logger = None
    if rank == 0:
        logger = tracking.ResilientLogger(spec.run_id, spec.tracking_uri)
        _log_history(logger, state["history"])

    heldout = ray.get(spec.heldout)[rank::world]
    worker_nodes = len(gather_sets({ray.get_runtime_context().get_node_id()}))
    tasks = list(spec.tasks)
    for epoch in range(state["epoch"] + 1, spec.epochs):
        started = time.perf_counter()
        sums, read_error = _train_epoch(
            spec, epoch, ddp_model, optimizer, state, device, autocast, progress
        )
        elapsed = time.perf_counter() - started
        reduced = allreduce_sum(
            [sums.seen, float(sums.loss), sums.steps, *sums.hits.tolist()], device
        )
        fault = faults.epoch_fault(
            epoch, reduced, gather_sets({read_error} - {""}), spec.global_batch
        )
        if fault:
            _stop_on_fault(fault, rank, spec, progress)
            break
        n_seen = max(reduced[0], 1)
        metrics = {
            "train/loss": reduced[1] / max(reduced[2], 1),
            **{f"train/{t}_acc": h / n_seen for t, h in zip(tasks, reduced[3:], strict=True)},
            **evaluate_heldout(
                model,
                heldout,
                tasks,
                spec.eval_batch,
                device,
                spec.seed,
                autocast,
                spec.window_seconds,
            ),
            "train/windows_per_s": reduced[0] / elapsed,
            "train/read_nodes": len(gather_sets(sums.nodes)),
            "train/worker_nodes": worker_nodes,
            "train/lr": lr_at(state["step"] - 1, spec.base_lr, spec.peak_lr, spec.warmup_steps),
            "time/epoch_s": elapsed,
        }
        if not math.isfinite(metrics["val/loss"]):
            _stop_on_fault(
                f"epoch {epoch + 1}: the held-out loss is {metrics['val/loss']} (not finite); "
                "the run stops without checkpointing it",
                rank,
                spec,
                progress,
            )
            break
        improved = metrics["val/loss"] < state["best_val_loss"]
        state["best_val_loss"] = min(state["best_val_loss"], metrics["val/loss"])
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, **metrics})
        _report({"epoch": epoch, **metrics}, state, model, optimizer, spec.window_seconds, rank)
        _log_history(logger, state["history"][-1:])
        progress.say(epoch_line(epoch, spec.epochs, metrics))
        if state["bad_epochs"] >= spec.patience:
            progress.say(f"early stopping: no held-out improvement for {spec.patience} epochs")
            break
    if logger is not None and logger.pending:
        logger.flush()
        faults.keep_unlogged(spec.run_dir, logger.pending)
