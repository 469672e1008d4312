"""Schema of the pre-training job (``jobs/pretrain.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from wearssl.config.base import (
    NAME_PATTERN,
    ConfigPath,
    Seed,
    StrictModel,
    TrackingUri,
    require_distinct,
)

TaskName = Literal["aot", "permute", "time_warp", "scale"]


def default_registered_model(window_seconds: int, name: str) -> str:
    """Registered-model names are ``<network>-<stage>-<config name>``; ``ssl`` for pre-training."""
    return f"harnet{window_seconds}-ssl-{name}"


class SyntheticCorpus(StrictModel):
    """Corpus generated when none is configured (the embedded default)."""

    subjects: int = Field(12, ge=2)
    days: int = Field(1, ge=1)
    seed: Seed = 0
    out: ConfigPath = "data/synthetic"


class Subset(StrictModel):
    """A reproducible, nested part of the corpus, for the data-scaling ablations."""

    subjects: int | None = Field(None, ge=1, description="training subjects kept; None = all")
    data_ratio: float = Field(1.0, gt=0, le=1.0, description="share of each subject-day kept")
    seed: Seed = 0


class Sampling(StrictModel):
    weighted: bool = True
    windows_per_subject: int = Field(1500, ge=1)
    subjects_per_batch: int = Field(4, ge=1)
    shuffle_buffer: int = Field(
        6000, ge=0, description="windows in each worker's local shuffle buffer"
    )
    read_cpus: float = Field(1.0, gt=0, description="CPUs reserved per read task")


class Optimisation(StrictModel):
    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0, le=1.0, description="base learning rate at batch 512")
    lr_reference_batch: int = Field(512, ge=1)
    warmup_epochs: int = Field(5, ge=0)
    patience: int = Field(
        5, ge=1, description="epochs without held-out improvement before stopping"
    )
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for quick runs")
    seed: Seed = 42


class Evaluation(StrictModel):
    max_subjects: int = Field(200, ge=1, description="held-out subjects evaluated each epoch")
    windows_per_subject: int = Field(500, ge=1)
    batch_size: int = Field(512, ge=1)


class Runtime(StrictModel):
    address: str | None = Field(None, description="Ray cluster address; None starts a local Ray")
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    data_cpus: float = Field(
        1.0, gt=0, description="CPUs kept free of training workers for Ray Data"
    )
    storage_path: ConfigPath = "runs"
    max_failures: int = Field(2, ge=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        "PACK", description="PACK for multi-GPU nodes; SPREAD puts workers on different nodes"
    )
    bf16: bool = Field(True, description="bf16 autocast on GPU workers")


class Tracking(StrictModel):
    tracking_uri: TrackingUri | None = None
    registered_model: str | None = Field(
        None,
        description="registered-model name of the final model; null registers none. Unset: "
        "harnet<window_seconds>-ssl-<name>, e.g. harnet10-ssl-quickstart",
        validate_default=False,
    )
    log_model: bool = Field(True, description="log the final model with mlflow.pytorch")
    experiment: str = Field("pretrain", min_length=1, description="job kind of the experiment")
    parent_run_id: str | None = Field(None, description="nest the run under a sweep's run")


class PretrainConfig(StrictModel):
    name: str = Field("quickstart", min_length=1, pattern=NAME_PATTERN)
    corpus: ConfigPath | None = Field(
        None, description="corpus root; None generates a synthetic one"
    )
    synthetic: SyntheticCorpus = SyntheticCorpus()
    window_seconds: Literal[5, 10] = Field(
        10, description="10-s corpus rows feed 10-s models, or two 5-s windows each"
    )
    tasks: list[TaskName] = ["aot", "permute", "time_warp"]
    augment: bool = True
    sampling: Sampling = Sampling()
    subset: Subset = Subset()
    optim: Optimisation = Optimisation()
    eval: Evaluation = Evaluation()
    runtime: Runtime = Runtime()
    tracking: Tracking = Tracking()
    resume_with_changes: bool = Field(
        False,
        description="continue a run of this name whose config differs (recorded in its run); "
        "otherwise such a rerun is refused, listing the differing keys",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks_unique_nonempty(cls, tasks: list[str]) -> list[str]:
        require_distinct(tasks, "tasks")
        return tasks

    @model_validator(mode="after")
    def _registered_model_named_by_the_scheme(self) -> PretrainConfig:
        """An unset ``tracking.registered_model`` is ``harnet<N>-ssl-<name>``."""
        if "registered_model" not in self.tracking.model_fields_set:
            self.tracking.registered_model = default_registered_model(
                self.window_seconds, self.name
            )
        return self

    @model_validator(mode="after")
    def _batch_splits_over_workers(self) -> PretrainConfig:
        if self.global_batch < self.runtime.num_workers:
            raise ValueError(
                f"sampling.subjects_per_batch x sampling.windows_per_subject = {self.global_batch} "
                f"is smaller than runtime.num_workers = {self.runtime.num_workers}"
            )
        return self

    @property
    def global_batch(self) -> int:
        return self.sampling.subjects_per_batch * self.sampling.windows_per_subject

    @property
    def worker_batch(self) -> int:
        return self.global_batch // self.runtime.num_workers

    @property
    def peak_lr(self) -> float:
        """Linear lr scaling for large batches (lr x batch / 512), reached by warm-up."""
        return self.optim.lr * self.global_batch / self.optim.lr_reference_batch
