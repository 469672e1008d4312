"""Schema of the data-scaling ablation job (``jobs/ablate.py``).

A sweep varies one quantity (``sweep.kind`` over ``sweep.values``), optionally crossed
with a second one drawn as separate lines (``sweep.series``), each point repeated for
``sweep.seeds`` seeds. Pre-training kinds pre-train a model per point (the ``pretrain``
base config plus the point's settings) and evaluate it downstream; the labelled-subjects
kind fine-tunes one given model (or none: scratch and forest) on n labelled subjects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from wearssl.config.base import (
    NAME_PATTERN,
    ConfigPath,
    StrictModel,
    TrackingUri,
    WeightsSpec,
)
from wearssl.config.evaluate import Arms, Datasets, Finetune, Forest, Protocol
from wearssl.config.pretrain import TaskName

SweepKind = Literal[
    "unlabelled_subjects", "data_ratio", "labelled_subjects", "weighted_sampling", "tasks"
]
PRETRAINING_KINDS = ("unlabelled_subjects", "data_ratio", "weighted_sampling", "tasks")
COUNT_KINDS = ("unlabelled_subjects", "labelled_subjects")
AblationArm = Literal["forest", "linear_probe", "scratch", "frozen", "finetune"]
PRETRAINED_ARMS = ("linear_probe", "frozen", "finetune")

_VALUE_TYPES: dict[str, TypeAdapter] = {
    "unlabelled_subjects": TypeAdapter(list[int]),
    "labelled_subjects": TypeAdapter(list[int]),
    "data_ratio": TypeAdapter(list[float]),
    "weighted_sampling": TypeAdapter(list[bool]),
    "tasks": TypeAdapter(list[list[TaskName]]),
}


def _check_value(kind: str, value: Any) -> str | None:
    """Why ``value`` is not a valid point of ``kind`` (None when it is)."""
    if kind in COUNT_KINDS and value < 1:
        return "a subject count must be at least 1"
    if kind == "data_ratio" and not 0 < value <= 1:
        return "a data ratio must lie in (0, 1]"
    if kind == "tasks" and (not value or len(set(value)) != len(value)):
        return "a task set must be non-empty without repeats"
    return None


class Axis(StrictModel):
    """One swept quantity and its values."""

    kind: SweepKind
    values: list[Any] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _values_fit_kind(cls, values: list[Any], info) -> list[Any]:
        kind = info.data.get("kind")
        if kind is None:
            return values
        try:
            typed = _VALUE_TYPES[kind].validate_python(values)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(
                f"{kind} value {where} (got {first.get('input')!r}): {first['msg']}"
            ) from None
        for index, value in enumerate(typed):
            problem = _check_value(kind, value)
            if problem:
                raise ValueError(f"{kind} value {index} (got {value!r}): {problem}")
        keys = [tuple(v) if isinstance(v, list) else v for v in typed]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{kind} values listed twice: {typed}")
        return typed


class Sweep(Axis):
    seeds: int = Field(1, ge=1, description="repeats of every point (subset draw and training)")
    series: Axis | None = Field(
        None, description="a second pre-training quantity, one line per value (e.g. data_ratio)"
    )

    @model_validator(mode="after")
    def _series_is_another_pretraining_kind(self) -> Sweep:
        if self.series is None:
            return self
        if self.kind not in PRETRAINING_KINDS or self.series.kind not in PRETRAINING_KINDS:
            raise ValueError(
                f"sweep.series needs two pre-training kinds {PRETRAINING_KINDS}; "
                f"got {self.kind} and {self.series.kind}"
            )
        if self.series.kind == self.kind:
            raise ValueError(f"sweep.series repeats the swept kind {self.kind}")
        return self

    @property
    def pretrains(self) -> bool:
        return self.kind in PRETRAINING_KINDS


class PretrainBase(StrictModel):
    """The pre-training every point starts from (pre-training kinds only)."""

    config: ConfigPath = Field(
        "configs/pretrain/quickstart.yaml", description="pre-training YAML (jobs/pretrain.py)"
    )
    overrides: list[str] = Field(
        default_factory=list, description="key=value overrides on it, e.g. optim.lr=3e-4"
    )


class Evaluation(StrictModel):
    """The downstream evaluation run in every trial (the evaluate job's protocol)."""

    datasets: Datasets
    arms: Arms[AblationArm] = ["scratch", "finetune"]
    pretrained: WeightsSpec | None = Field(
        None,
        description="weights of frozen/finetune in a labelled_subjects sweep "
        "(models:/NAME/VERSION, runs:/RUN_ID or a file); pre-training sweeps use their own",
    )
    protocol: Protocol = Protocol()
    finetune: Finetune = Finetune()
    forest: Forest = Forest()

    @property
    def pretrained_arms(self) -> list[str]:
        return [arm for arm in self.arms if arm in PRETRAINED_ARMS]

    @property
    def reference_arms(self) -> list[str]:
        return [arm for arm in self.arms if arm not in PRETRAINED_ARMS]


class Budget(StrictModel):
    max_epochs: int | None = Field(None, ge=1, description="caps optim.epochs of every trial")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="caps pre-training steps")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="None: as many as the cluster's CPUs hold"
    )


class Resources(StrictModel):
    address: str | None = Field(None, description="Ray cluster; None: RAY_ADDRESS or a local Ray")
    trial_cpus: float = Field(
        0.01,
        gt=0,
        description="CPUs held by a trial's own process; its pre-training workers and the "
        "evaluation task reserve theirs separately",
    )
    eval_cpus: float = Field(1.0, gt=0, description="CPUs of a trial's evaluation task")
    eval_gpus: float = Field(0.0, ge=0, le=1, description="GPU share of it, where GPUs exist")
    max_failures: int = Field(2, ge=0, description="retries of a failed trial")
    storage_path: ConfigPath | None = Field(
        None, description="Ray Tune and pre-training storage; None: OUTPUT/runs"
    )


class Tracking(StrictModel):
    tracking_uri: TrackingUri | None = None


class AblateConfig(StrictModel):
    name: str = Field("mini", min_length=1, pattern=NAME_PATTERN)
    output_dir: ConfigPath = Field("outputs/ablate", description="results go to OUTPUT_DIR/NAME")
    sweep: Sweep
    pretrain: PretrainBase = PretrainBase()
    evaluation: Evaluation
    budget: Budget = Budget()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()

    @model_validator(mode="after")
    def _arms_fit_the_sweep(self) -> AblateConfig:
        needing = self.evaluation.pretrained_arms
        if self.sweep.pretrains:
            if not needing:
                raise ValueError(
                    f"a {self.sweep.kind} sweep pre-trains a model per point: evaluation.arms "
                    f"needs frozen or finetune (got {self.evaluation.arms})"
                )
            if self.evaluation.pretrained is not None:
                raise ValueError(
                    f"evaluation.pretrained is for labelled_subjects sweeps; a {self.sweep.kind} "
                    "sweep evaluates the model it pre-trains at each point"
                )
        elif needing and self.evaluation.pretrained is None:
            raise ValueError(f"arms {needing} need evaluation.pretrained (a weights spec)")
        return self
