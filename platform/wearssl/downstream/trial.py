"""One trial of the downstream protocol, the same for the evaluation and the ablations.

A :class:`TrialSpec` says everything a trial depends on (the labelled set, the fold, the
arm, the seed, the weights it starts from and the training settings); it is validated by
the driver and crosses the Ray boundary as it is. :func:`run_trial` loads the set, builds
the fold, trains the arm and scores every test subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from wearssl.config.evaluate import Finetune, Protocol
from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold
from wearssl.downstream.datasets import (
    DatasetPlan,
    check_weights_fit,
    evaluation_folds,
    with_training_subjects,
)
from wearssl.downstream.finetune import ArmOutcome, train_arm
from wearssl.downstream.metrics import per_subject_scores


@dataclass(frozen=True)
class TrialSettings:
    """How every trial of a job trains: the protocol, the neural arms' training, the
    forest's size, and the threads a trial may use."""

    protocol: Protocol
    finetune: Finetune
    n_estimators: int
    threads: int = 1

    def decisive(self) -> dict[str, Any]:
        """What decides a trial's result (threads do not: the forest is seeded per tree)."""
        return {
            "protocol": self.protocol.model_dump(mode="json"),
            "finetune": self.finetune.model_dump(mode="json"),
            "forest": {"n_estimators": self.n_estimators},
        }


@dataclass(frozen=True)
class TrialSpec:
    """One arm trained on one fold of one labelled set with one seed.

    ``init`` is the weights file an initialised arm starts from; ``training_subjects``
    keeps only that many of the fold's training subjects (drawn nested by ``seed``).
    """

    dataset: DatasetPlan
    arm: str
    fold: str
    fold_index: int
    seed: int
    settings: TrialSettings
    init: str | None = None
    training_subjects: int | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset.name}/{self.arm}/{self.fold}/s{self.seed}"

    @property
    def stem(self) -> str:
        return f"{self.arm}-{self.fold}-s{self.seed}"

    def labels(self) -> dict[str, Any]:
        """The trial's place in the plan, as tables, records and runs name it."""
        return {
            "dataset": self.dataset.name,
            "arm": self.arm,
            "fold": self.fold,
            "fold_index": self.fold_index,
            "seed": self.seed,
        }

    def decisive(self) -> dict[str, Any]:
        """What decides the trial's result, for an experiment's digest."""
        return {
            **self.labels(),
            "dataset_plan": vars(self.dataset),
            "training_subjects": self.training_subjects,
            "settings": self.settings.decisive(),
        }


@dataclass(frozen=True)
class TrialOutcome:
    """A trained arm's test predictions and per-test-subject scores."""

    data: LabelledSet
    fold: Fold
    arm: ArmOutcome
    scores: pd.DataFrame  # per test subject: subject, n_windows, f1_macro, kappa, accuracy


def trial_specs(
    plan: DatasetPlan,
    folds: list[Fold],
    arms: list[str],
    seeds: list[int],
    settings: TrialSettings,
    init: dict[str, str],
    training_subjects: int | None = None,
) -> list[TrialSpec]:
    """Every arm x fold x seed of one labelled set; ``init`` maps an arm to its weights."""
    return [
        TrialSpec(plan, arm, fold.name, index, seed, settings, init.get(arm), training_subjects)
        for arm in arms
        for index, fold in enumerate(folds)
        for seed in seeds
    ]


def trial_fold(spec: TrialSpec, data: LabelledSet) -> Fold:
    """The spec's fold of ``data``, reduced to its training subjects when the spec says so."""
    fold = evaluation_folds(data.subjects, spec.settings.protocol)[spec.fold_index]
    if fold.name != spec.fold:
        raise RuntimeError(f"trial {spec.key}: fold {spec.fold_index} is now {fold.name}")
    if spec.training_subjects is not None:
        fold = with_training_subjects(data.subjects, fold, spec.training_subjects, spec.seed)
    return fold


def run_trial(spec: TrialSpec, data: LabelledSet | None = None) -> TrialOutcome:
    """Train ``spec``'s arm on its fold and score its test subjects.

    ``data`` is the spec's labelled set when the caller holds it already (a loop over the
    folds and arms of one set); otherwise it is loaded from the spec's plan.
    """
    settings = spec.settings
    torch.set_num_threads(settings.threads)
    if data is None:
        data = spec.dataset.load(settings.protocol.split_seed)
    fold = trial_fold(spec, data)
    if spec.init is not None:
        check_weights_fit(data, f"the weights {spec.init} of arm {spec.arm!r}", spec.init)
    outcome = train_arm(
        spec.arm,
        data,
        fold,
        spec.seed,
        settings.finetune,
        n_estimators=settings.n_estimators,
        n_jobs=settings.threads,
        init=spec.init,
    )
    scores = per_subject_scores(
        data.labels[fold.test],
        outcome.probabilities.argmax(axis=1),
        data.subjects[fold.test],
        labels=list(range(len(data.label_names))),
    )
    return TrialOutcome(data, fold, outcome, scores)
