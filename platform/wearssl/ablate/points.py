"""A sweep's points and the trials that run them.

A point is ``{kind: value}`` (the swept kind first, then the series kind). Each point and
seed is one :class:`AblationTrial`; a pre-training sweep adds, per seed, one *reference*
trial for the arms that need no pre-trained model (forest, scratch), rather than
repeating them at every point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wearssl.config.ablate import AblateConfig, Sweep

REFERENCE = "reference"
# The pre-training config key each pre-training kind sets.
PRETRAIN_SETTING = {
    "unlabelled_subjects": "subset.subjects",
    "data_ratio": "subset.data_ratio",
    "weighted_sampling": "sampling.weighted",
    "tasks": "tasks",
}
TOKEN_PREFIX = {
    "unlabelled_subjects": "subjects",
    "labelled_subjects": "labelled",
    "data_ratio": "ratio",
    "weighted_sampling": "weighted-",
    "tasks": "tasks-",
}


@dataclass(frozen=True)
class AblationTrial:
    """One point of the sweep (or the reference) with one seed.

    ``pretrain`` holds the pre-training config keys the point sets (None: the trial
    pre-trains nothing); ``training_subjects`` the labelled training subjects per fold of
    a labelled-subjects sweep.
    """

    key: str
    stem: str
    role: str  # "point" or REFERENCE
    point: dict[str, Any]
    seed: int
    arms: tuple[str, ...]
    pretrain: dict[str, Any] | None
    training_subjects: int | None

    def labels(self) -> dict[str, Any]:
        """The trial as records and tables name it."""
        return {
            "key": self.key,
            "stem": self.stem,
            "role": self.role,
            "point": self.point,
            "seed": self.seed,
            "arms": list(self.arms),
            "training_subjects": self.training_subjects,
        }

    def decisive(self) -> dict[str, Any]:
        return {**self.labels(), "pretrain": self.pretrain}


def value_label(kind: str, value: Any) -> str:
    """How a point's value reads in tables and on the x-axis."""
    if kind == "tasks":
        return "+".join(value)
    if kind == "weighted_sampling":
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def value_token(kind: str, value: Any) -> str:
    """A file- and run-name-safe token for a point's value."""
    return TOKEN_PREFIX[kind] + value_label(kind, value).replace("+", "-")


def sweep_points(sweep: Sweep) -> list[dict[str, Any]]:
    """Every point, ``{kind: value}`` (swept kind first, then the series kind)."""
    if sweep.series is None:
        return [{sweep.kind: value} for value in sweep.values]
    return [
        {sweep.kind: value, sweep.series.kind: other}
        for other in sweep.series.values
        for value in sweep.values
    ]


def point_settings(point: dict[str, Any]) -> dict[str, Any]:
    """The pre-training config keys a point sets (dotted key -> value)."""
    return {
        PRETRAIN_SETTING[kind]: value for kind, value in point.items() if kind in PRETRAIN_SETTING
    }


def trial_specs(cfg: AblateConfig) -> list[AblationTrial]:
    """One trial per point and seed, plus a reference trial per seed for the arms of a
    pre-training sweep that need no pre-trained model."""
    specs = []
    evaluation, pretrains = cfg.evaluation, cfg.sweep.pretrains
    for seed in range(cfg.sweep.seeds):
        for point in sweep_points(cfg.sweep):
            name = "_".join(value_token(kind, value) for kind, value in point.items())
            specs.append(
                AblationTrial(
                    key=f"{name}/seed{seed}",
                    stem=f"{name}_seed{seed}",
                    role="point",
                    point=point,
                    seed=seed,
                    arms=tuple(evaluation.pretrained_arms if pretrains else evaluation.arms),
                    pretrain=point_settings(point) if pretrains else None,
                    training_subjects=point.get("labelled_subjects"),
                )
            )
        if pretrains and evaluation.reference_arms:
            specs.append(
                AblationTrial(
                    key=f"{REFERENCE}/seed{seed}",
                    stem=f"{REFERENCE}_seed{seed}",
                    role=REFERENCE,
                    point={},
                    seed=seed,
                    arms=tuple(evaluation.reference_arms),
                    pretrain=None,
                    training_subjects=None,
                )
            )
    return specs
