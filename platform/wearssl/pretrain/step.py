"""One pre-training step and the held-out evaluation, free of Ray and MLflow.

The Ray Train worker (:mod:`wearssl.pretrain.worker`) runs these on each batch it streams;
benchmarks run the very same functions in a bare loop on any device, so a figure measured
there is the step the platform trains with. Under DDP the sums are all-reduced across
workers; in a single process they are returned as they are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from wearssl.data import corpus
from wearssl.pretrain.transforms import pretext_step


def lr_at(step: int, base_lr: float, peak_lr: float, warmup_steps: int) -> float:
    """Linear warm-up from the base lr to the batch-scaled peak, then constant (never beyond)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return peak_lr
    return base_lr + (peak_lr - base_lr) * step / warmup_steps


def model_windows(rows: torch.Tensor, window_seconds: int) -> torch.Tensor:
    """Corpus rows (10-s windows) -> the model's windows: a 5-s model sees each row as two
    consecutive windows, ``(B, 3, 300) -> (2B, 3, 150)``."""
    parts = corpus.WINDOW_SECONDS // window_seconds
    if parts == 1:
        return rows
    batch, channels, length = rows.shape
    split = rows.reshape(batch, channels, parts, length // parts).transpose(1, 2)
    return split.reshape(batch * parts, channels, length // parts)


def pretext_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    tasks: list[str],
    generator: torch.Generator,
    augment: bool,
    autocast: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform a batch, forward once; (mean of the tasks' cross-entropies, each task's
    number of correct predictions as a ``(len(tasks),)`` tensor).

    Both stay on the device: callers sum them over an epoch and read them back once, so a
    GPU step never waits for the host."""
    x, labels = pretext_step(x, generator, tasks=tuple(tasks), augment_orientation=augment)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
    losses = [F.cross_entropy(logits[t].float(), labels[t]) for t in tasks]
    hits = torch.stack([(logits[t].argmax(1) == labels[t]).sum() for t in tasks])
    return torch.stack(losses).mean(), hits


def allreduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def gather_sets(values: set[str]) -> set[str]:
    if not (dist.is_available() and dist.is_initialized()):
        return set(values)
    gathered: list[set[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    return set().union(*gathered)


def evaluate_heldout(
    model: torch.nn.Module,
    windows: np.ndarray,
    tasks: list[str],
    batch_size: int,
    device: torch.device,
    seed: int,
    autocast: bool,
    window_seconds: int,
) -> dict[str, float]:
    """Loss and per-task accuracy on this worker's share of the held-out windows, all-reduced.

    The pretext labels come from a fixed generator, so every epoch sees the same problems."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hit_sums = torch.zeros(len(tasks), dtype=torch.int64, device=device)
    count = 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            # a copy: the held-out windows come read-only from Ray's object store
            rows = torch.tensor(windows[start : start + batch_size], device=device).float()
            x = model_windows(rows, window_seconds)
            loss, hits = pretext_loss(model, x, tasks, generator, False, autocast)
            loss_sum += loss * len(x)
            hit_sums += hits
            count += len(x)
    reduced = allreduce_sum([float(loss_sum), count, *hit_sums.tolist()], device)
    total = max(reduced[1], 1.0)
    metrics = {"val/loss": reduced[0] / total}
    metrics.update({f"val/{t}_acc": h / total for t, h in zip(tasks, reduced[2:], strict=True)})
    model.train()
    return metrics
