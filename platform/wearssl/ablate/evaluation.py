"""The downstream evaluation inside an ablation trial: every arm on every fold of every
labelled set, each one :func:`wearssl.downstream.trial.run_trial`, in a Ray task with its
own CPUs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from wearssl.ablate.points import AblationTrial
from wearssl.config import ConfigError
from wearssl.config.ablate import AblateConfig
from wearssl.config.vocabulary import PRETRAINED_ARMS
from wearssl.data.splits import subset_subjects
from wearssl.downstream.datasets import (
    DatasetPlan,
    evaluation_folds,
    labelled_subject_column,
    labelled_window_seconds,
    plan_dataset,
)
from wearssl.downstream.metrics import summarise
from wearssl.downstream.trial import TrialSettings, TrialSpec, run_trial

SCORE_SUMMARY = ("f1_mean", "f1_sd", "kappa_mean", "kappa_sd", "accuracy_mean")


@dataclass(frozen=True)
class EvaluationPlan:
    """The labelled sets, the training settings, and the evaluation task's resources."""

    datasets: tuple[DatasetPlan, ...]
    settings: TrialSettings
    cpus: float
    gpus: float  # 0 where the cluster has no GPU


def evaluation_plan(
    cfg: AblateConfig, datasets: tuple[DatasetPlan, ...], cluster: dict[str, float]
) -> EvaluationPlan:
    evaluation, resources = cfg.evaluation, cfg.resources
    settings = TrialSettings(
        evaluation.protocol,
        evaluation.finetune,
        evaluation.forest.n_estimators,
        threads=max(1, int(resources.eval_cpus)),
    )
    gpus = resources.eval_gpus if float(cluster.get("GPU", 0.0)) > 0 else 0.0
    return EvaluationPlan(datasets, settings, resources.eval_cpus, gpus)


def evaluate_arms(
    plan: EvaluationPlan,
    arms: tuple[str, ...],
    init: str | None,
    training_subjects: int | None,
    seed: int,
) -> pd.DataFrame:
    """Train every arm on every fold of every dataset; per-test-subject scores."""
    settings = plan.settings
    frames = []
    for dataset in plan.datasets:
        data = dataset.load(settings.protocol.split_seed)
        for index, fold in enumerate(evaluation_folds(data.subjects, settings.protocol)):
            for arm in arms:
                spec = TrialSpec(
                    dataset,
                    arm,
                    fold.name,
                    index,
                    seed,
                    settings,
                    init=init if arm in PRETRAINED_ARMS else None,
                    training_subjects=training_subjects,
                )
                outcome = run_trial(spec, data)
                scores = outcome.scores.copy()
                for column, value in (("seed", seed), ("fold", fold.name), ("arm", arm)):
                    scores.insert(0, column, value)
                scores.insert(0, "dataset", dataset.name)
                scores["n_train"] = len(outcome.fold.train)
                frames.append(scores)
    return pd.concat(frames, ignore_index=True)


_evaluate_remote = ray.remote(evaluate_arms)


def evaluate_in_task(plan: EvaluationPlan, spec: AblationTrial, init: str | None) -> pd.DataFrame:
    """:func:`evaluate_arms` as a Ray task holding its own CPUs, outside the trial's
    placement group (a child of a Tune trial would otherwise be confined to it)."""
    task = _evaluate_remote.options(
        num_cpus=plan.cpus, num_gpus=plan.gpus, scheduling_strategy="DEFAULT"
    )
    return ray.get(task.remote(plan, spec.arms, init, spec.training_subjects, spec.seed))


def score_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arm): mean and SD over the score rows (test subjects x folds x seeds)."""
    return summarise(
        scores[["dataset", "arm", "fold", "seed", "subject", "f1_macro", "kappa", "accuracy"]]
    )


def fewest_training_subjects(subjects: np.ndarray, cfg: AblateConfig) -> int:
    folds = evaluation_folds(subjects, cfg.evaluation.protocol)
    return min(len(np.unique(subjects[f.train])) for f in folds)


def prepare_datasets(
    cfg: AblateConfig, output: Path, window_seconds: int | None
) -> tuple[DatasetPlan, ...]:
    """Materialise every labelled set and check it up front: its windows fit the models a
    pre-training sweep makes, and a labelled-subjects sweep's counts fit every fold."""
    plans = []
    for dataset in cfg.evaluation.datasets:
        plan = plan_dataset(dataset, output / "data")
        plans.append(plan)
        seconds = labelled_window_seconds(plan.path)
        if window_seconds is not None and seconds != window_seconds:
            raise ConfigError(
                f"evaluation.datasets {dataset.name!r} has {seconds}-s windows but the sweep "
                f"pre-trains {window_seconds}-s models (pretrain window_seconds)"
            )
        if cfg.sweep.kind != "labelled_subjects":
            continue
        subjects = labelled_subject_column(plan.path)
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
    return tuple(plans)
