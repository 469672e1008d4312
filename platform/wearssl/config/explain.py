"""Schema of the explainability job (``jobs/explain.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from wearssl.config.base import (
    NAME_PATTERN,
    SEED_LIMIT,
    ConfigPath,
    Seed,
    StrictModel,
    TrackingUri,
    WeightsSpec,
)

MethodName = Literal["integrated_gradients", "deeplift", "input_x_gradient", "lrp"]
HeadName = Literal["classifier", "aot", "permute", "time_warp", "scale"]


class CorpusWindows(StrictModel):
    """Held-out subjects' windows of a corpus, drawn as the pre-training job's evaluation set."""

    path: ConfigPath = Field(min_length=1, description="corpus root (local path or URI)")
    split: Literal["test", "train"] = "test"
    max_subjects: int = Field(20, ge=1)
    windows_per_subject: int = Field(16, ge=1, description="std-weighted draws per subject-day")
    seed: Seed = 0


class LabelledWindows(StrictModel):
    """Windows of a labelled set, restricted to subjects a classifier did not train on."""

    path: ConfigPath = Field(min_length=1, description="labelled-set folder (local path or URI)")
    subjects: list[str] | None = Field(None, description="use only these subject pseudonyms")
    fold: int | None = Field(
        None, ge=0, description="use the test subjects of this fold of the evaluation protocol"
    )
    split_seed: int = Field(
        42, ge=0, lt=SEED_LIMIT, description="the protocol's split seed (with 'fold')"
    )
    max_windows: int | None = Field(256, ge=1, description="seeded random subset of this size")
    seed: Seed = 0

    @model_validator(mode="after")
    def _one_subject_rule(self) -> LabelledWindows:
        if self.subjects is not None and self.fold is not None:
            raise ValueError("give at most one of 'subjects' and 'fold'")
        if self.subjects is not None and not self.subjects:
            raise ValueError("'subjects' is empty")
        return self


class Data(StrictModel):
    corpus: CorpusWindows | None = None
    labelled: LabelledWindows | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Data:
        if (self.corpus is None) == (self.labelled is None):
            raise ValueError("give exactly one of 'corpus' and 'labelled'")
        return self


class Attribution(StrictModel):
    methods: list[MethodName] = Field(
        ["integrated_gradients", "deeplift", "lrp"],
        description="input_x_gradient is available too, but it is relative to an all-zero "
        "input, so gravity's constant 1 g spreads relevance over a still axis",
    )
    baseline: Literal["mean", "zero"] = Field(
        "mean",
        description="reference input of integrated gradients and DeepLift: the window's "
        "per-axis mean held constant (a still wrist), or all zeros",
    )
    ig_steps: int = Field(32, ge=2, description="integration steps of integrated gradients")
    lrp_epsilon: float = Field(
        0.1,
        gt=0,
        description="stabiliser of the LRP epsilon rule, relative to the root mean square of "
        "each layer's outputs in the window (towards 0, LRP approaches input x gradient)",
    )

    @field_validator("methods")
    @classmethod
    def _methods_unique_nonempty(cls, methods: list[str]) -> list[str]:
        if not methods:
            raise ValueError("at least one attribution method is needed")
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods listed twice: {methods}")
        return methods


class Masking(StrictModel):
    fractions: list[float] = Field(
        [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5],
        description="fractions of a window's time points removed, increasing",
    )
    fill: Literal["mean", "interpolate"] = Field(
        "mean",
        description="a removed sample becomes the window's per-axis mean, or is "
        "interpolated linearly from its nearest kept neighbours in time",
    )
    ranking: Literal["absolute", "positive"] = Field(
        "absolute",
        description="time points ranked by the sum over axes of |relevance|, or by the signed "
        "sum (most in favour of the prediction first; it leaves an oscillation's "
        "negatively attributed samples in place, and they can carry the evidence alone)",
    )
    seed: int = Field(
        0,
        ge=0,
        lt=SEED_LIMIT,
        description="seed of the random-order baseline, of the pretext transforms applied to "
        "the explained windows and of the figure's permutation",
    )

    @field_validator("fractions")
    @classmethod
    def _fractions_increasing(cls, fractions: list[float]) -> list[float]:
        if len(fractions) < 2:
            raise ValueError("at least two fractions are needed for an area between curves")
        if any(not 0 <= f <= 1 for f in fractions):
            raise ValueError(f"fractions must lie in [0, 1], got {fractions}")
        if any(b <= a for a, b in zip(fractions[:-1], fractions[1:], strict=True)):
            raise ValueError(f"fractions must be strictly increasing, got {fractions}")
        return fractions


class Plots(StrictModel):
    signal_examples: bool = Field(
        True,
        description="figures of relevance over one held-out window (its original, "
        "time-reversed and permuted forms), written to the output folder",
    )
    log_signal_examples: bool = Field(
        False,
        description="also log those figures to MLflow; off by default because they show "
        "a raw window of a subject's signal, and no raw signal goes to the tracking server",
    )


class Resources(StrictModel):
    address: str | None = Field(None, description="Ray cluster; None: RAY_ADDRESS or a local Ray")
    chunk_size: int = Field(32, ge=1, description="windows per Ray task")
    cpus_per_task: float = Field(1.0, gt=0)


class Tracking(StrictModel):
    tracking_uri: TrackingUri | None = None


class ExplainConfig(StrictModel):
    name: str = Field("quickstart", min_length=1, pattern=NAME_PATTERN)
    output_dir: ConfigPath = Field("outputs/explain", description="results go to OUTPUT_DIR/NAME")
    model: WeightsSpec = Field(
        min_length=1,
        description="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID or a wearssl "
        "checkpoint file (its heads are explained, so a bare published state dict will not do)",
    )
    heads: list[HeadName] | None = Field(
        None,
        description="heads to explain; None: 'classifier' for a classifier, the paper's "
        "pretext tasks (aot, permute, time_warp) for a self-supervised model",
    )
    transformed: bool = Field(
        True,
        description="for a pretext head, explain every window twice: as drawn and with the "
        "head's transform applied",
    )
    data: Data
    attribution: Attribution = Attribution()
    masking: Masking = Masking()
    plots: Plots = Plots()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()

    @field_validator("heads")
    @classmethod
    def _heads_unique_nonempty(cls, heads: list[str] | None) -> list[str] | None:
        if heads is not None and not heads:
            raise ValueError("at least one head is needed (or null for the model's default)")
        if heads is not None and len(set(heads)) != len(heads):
            raise ValueError(f"heads listed twice: {heads}")
        return heads
