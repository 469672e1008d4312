"""The pre-training of a sweep's points: the base config every point starts from, each
trial's own config, and the pre-training stage of a trial."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.train import Checkpoint

from wearssl.ablate.points import AblationTrial, sweep_points
from wearssl.config import ConfigError, load_config
from wearssl.config.ablate import AblateConfig
from wearssl.config.base import with_settings
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.infra.files import write_json
from wearssl.models.export import PRETRAINED_FILE
from wearssl.pretrain.train import run_pretraining

PRETRAIN_FILE = "pretrain.json"


def base_pretrain_config(cfg: AblateConfig, uri: str, experiment: str) -> PretrainConfig:
    """The pre-training every point starts from: the configured file and overrides, with
    the budget applied and the runs tracked under ``experiment``, unregistered."""
    base = cfg.pretrain
    try:
        pretrain = load_config(PretrainConfig, base.config, base.overrides)
    except ConfigError as err:
        raise ConfigError(f"pretrain.config / pretrain.overrides: {err}") from None
    settings: dict[str, Any] = {
        "tracking.tracking_uri": uri,
        "tracking.experiment": experiment,
        "tracking.registered_model": None,
    }
    if cfg.budget.max_epochs is not None:
        settings["optim.epochs"] = min(pretrain.optim.epochs, cfg.budget.max_epochs)
    cap = cfg.budget.max_steps_per_epoch
    if cap is not None:
        current = pretrain.optim.max_steps_per_epoch
        settings["optim.max_steps_per_epoch"] = cap if current is None else min(current, cap)
    return with_settings(pretrain, settings, "pretrain")


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
    available = len(epochs.subject_days(corpus.read_manifest(root), "train"))
    too_many = sorted(n for n in counts if n > available)
    if too_many:
        raise ConfigError(
            f"unlabelled subject counts {too_many} (sweep values or pretrain subset.subjects) "
            f"exceed the {available} training subjects of corpus {root}"
        )


@dataclass(frozen=True)
class PretrainPlan:
    """What every trial's pre-training starts from: the base config (checked by the driver),
    the sweep's experiment (it names the runs), their storage, and the driver's roots."""

    base: PretrainConfig
    experiment: str
    storage: str
    roots: tuple[str, ...] | None


def trial_pretrain_config(
    plan: PretrainPlan, spec: AblationTrial, parent_run_id: str | None = None
) -> PretrainConfig:
    """The point's pre-training: its settings, its seed (the subset draw and the training
    seed), its own run name and storage, nested under the trial's MLflow run."""
    settings = {
        **spec.pretrain,
        "name": f"{plan.experiment}-{spec.stem}",
        "runtime.storage_path": plan.storage,
        "tracking.parent_run_id": parent_run_id,
        "subset.seed": spec.seed,
        "optim.seed": plan.base.optim.seed + spec.seed,
    }
    # A trial runs in Tune's trial folder, maybe on another node: the driver's roots decide
    # (the driver checked every trial's config), plus the folder relative paths resolve in.
    roots = None if plan.roots is None else [*plan.roots, os.getcwd()]
    return with_settings(plan.base, settings, f"trial {spec.key}", roots)


def pretrain_stage(
    plan: PretrainPlan, spec: AblationTrial, folder: Path, run_id: str
) -> dict[str, Any]:
    """Pre-train the point's model (nested under the trial's run) and keep its weights in
    the trial folder; an earlier execution's finished pre-training is reused."""
    done = folder / PRETRAIN_FILE
    if done.is_file():
        return json.loads(done.read_text())
    cfg = trial_pretrain_config(plan, spec, run_id)
    started = time.time()
    result = run_pretraining(cfg)
    if not result.checkpoint_path:
        raise RuntimeError(f"trial {spec.key}: pre-training {cfg.name} left no checkpoint")
    weights = folder / PRETRAINED_FILE
    with Checkpoint(result.checkpoint_path).as_directory() as directory:
        shutil.copyfile(Path(directory) / PRETRAINED_FILE, weights)
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
