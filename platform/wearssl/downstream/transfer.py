"""The transfer arm's source model: a classifier trained supervised on another labelled
set, once per source and settings, as a Ray task with one trial's resources."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import ray
import torch

from wearssl.config.evaluate import EvaluateConfig
from wearssl.downstream.datasets import (
    DatasetPlan,
    dataset_digest,
    evaluation_folds,
    plan_dataset,
    value_digest,
)
from wearssl.downstream.finetune import train_transfer_source
from wearssl.downstream.trial import TrialSettings


@dataclass(frozen=True)
class TransferSource:
    """The source labelled set and the model file trained on it."""

    dataset: DatasetPlan
    model: Path


@ray.remote
def _train_source_remote(source: TransferSource, settings: TrialSettings) -> str:
    torch.set_num_threads(settings.threads)
    data = source.dataset.load(settings.protocol.split_seed)
    first_fold = evaluation_folds(data.subjects, settings.protocol)[0]
    return str(train_transfer_source(data, first_fold, settings.finetune, 0, source.model))


def plan_transfer_source(cfg: EvaluateConfig, output: Path, windows: set[int]) -> TransferSource:
    """The transfer arm's source; the model file's name carries a digest of the source data
    and training settings, so it is trained once and reused by every fold, dataset and
    later run with the same settings."""
    source = cfg.transfer_source
    # dataset.batch_size is for evaluated sets; the source trains with finetune's settings
    plan = replace(plan_dataset(source, output / "data" / "source"), batch_size=None)
    data = plan.load(cfg.protocol.split_seed)
    mismatched = sorted(w for w in windows if w != data.window_seconds)
    if mismatched:
        raise ValueError(
            f"transfer_source {source.name!r} has {data.window_seconds}-s windows, but datasets "
            f"with {mismatched}-s windows use the transfer arm; the window lengths must match"
        )
    settings = {
        "source": source.model_dump(mode="json"),
        "data_digest": dataset_digest(plan.path),
        "protocol": cfg.protocol.model_dump(mode="json"),
        "finetune": cfg.finetune.model_dump(mode="json"),
    }
    model = output / "transfer" / f"{source.name}-{value_digest(settings)[:10]}.pt"
    return TransferSource(plan, model)


def ensure_transfer_source(
    source: TransferSource, settings: TrialSettings, cpus: float, gpus: float
) -> None:
    """Train the transfer source model as a Ray task with ``cpus`` and ``gpus``, unless its
    file exists."""
    if source.model.is_file():
        return
    print(
        f"training the transfer source model on {source.dataset.name} -> {source.model}", flush=True
    )
    remote = _train_source_remote.options(num_cpus=cpus, num_gpus=gpus)
    ray.get(remote.remote(source, settings))
