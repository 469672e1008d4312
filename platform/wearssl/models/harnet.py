"""The harnet network: a 1-D pre-activation ResNet on 30 Hz tri-axial wrist acceleration.

The layout (module names, order, shapes) is that of the published UK Biobank pre-trained
models, so their checkpoint files load unchanged and give the same numbers. Two model
flavours share one feature extractor: the self-supervised multi-task model (one binary
head per pretext task) and the downstream classifier (``Linear(C, 512) → ReLU →
Linear(512, k)``).

Checkpoints come in two kinds:

* published files: a bare ``torch.save``d state dict whose keys carry a leading
  ``module.`` (saved from DistributedDataParallel); only the feature extractor is used;
* our checkpoints (:func:`save_checkpoint`): a dict of plain values and tensors marked
  with ``format``/``version``, holding the window length, class count, labels and the
  full state dict; everything that matches by name and shape is used.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wearssl.config.vocabulary import WINDOW_LENGTHS
from wearssl.data.corpus import window_samples
from wearssl.errors import CheckpointError as CheckpointError
from wearssl.infra.files import write_atomically

TASK_HEADS: dict[str, str] = {
    "aot": "aot_h",
    "scale": "scale_h",
    "permute": "permute_h",
    "time_warp": "time_w_h",
}

CHECKPOINT_FORMAT = "wearssl-checkpoint"
CHECKPOINT_VERSION = 1
CLASSIFIER_HIDDEN = 512
FEATURE_PREFIX = "feature_extractor."
DDP_PREFIX = "module."
_RESERVED_CHECKPOINT_KEYS = frozenset(
    {"format", "version", "window_seconds", "n_classes", "labels", "state_dict"}
)
_SHOWN_KEYS = 5


class StageSpec(NamedTuple):
    """One feature-extractor stage, as the published architecture table gives it."""

    out_channels: int
    conv_kernel: int
    resblocks: int
    res_kernel: int
    down_factor: int
    down_order: int


ARCHITECTURES: dict[int, tuple[StageSpec, ...]] = {
    5: (
        StageSpec(64, 5, 2, 5, 2, 2),
        StageSpec(128, 5, 2, 5, 2, 2),
        StageSpec(256, 5, 2, 5, 3, 1),
        StageSpec(256, 5, 2, 5, 3, 1),
        StageSpec(512, 5, 0, 5, 3, 1),
    ),
    10: (
        StageSpec(64, 5, 2, 5, 2, 2),
        StageSpec(128, 5, 2, 5, 2, 2),
        StageSpec(256, 5, 2, 5, 5, 1),
        StageSpec(512, 5, 2, 5, 5, 1),
        StageSpec(1024, 5, 0, 5, 3, 1),
    ),
    30: (
        StageSpec(64, 5, 2, 5, 3, 1),
        StageSpec(128, 5, 2, 5, 3, 1),
        StageSpec(256, 5, 2, 5, 5, 1),
        StageSpec(512, 5, 2, 5, 5, 1),
        StageSpec(1024, 5, 0, 5, 4, 0),
    ),
}
INPUT_CHANNELS = 3


def _circular_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv1d:
    """A length-preserving convolution that wraps around the window ends."""
    return nn.Conv1d(
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=(kernel_size - 1) // 2,
        bias=False,
        padding_mode="circular",
    )


def antialias_kernel(factor: int, order: int) -> Tensor:
    """A box filter of length ``factor`` convolved with itself ``order`` times, summing to 1.

    Computed in float64 on the default device and returned as float32, so the same
    ``(factor, order)`` always gives the same values.
    """
    box = torch.ones(1, 1, factor, dtype=torch.float64)
    kernel = box
    for _ in range(order):
        kernel = F.conv1d(kernel, box, padding=factor - 1)
    return (kernel / kernel.sum()).reshape(-1).to(torch.float32)


class Downsample(nn.Module):
    """Fixed anti-aliasing low-pass filter and decimation by ``factor`` (one filter per channel)."""

    def __init__(self, channels: int, factor: int, order: int) -> None:
        super().__init__()
        self.channels = channels
        self.factor = factor
        self.padding = order * (factor - 1) // 2
        kernel = antialias_kernel(factor, order)
        self.register_buffer("kernel", kernel.expand(channels, 1, -1).clone(), persistent=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(
            x, self.kernel, stride=self.factor, padding=self.padding, groups=self.channels
        )


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm1d(channels)
        self.bn2 = nn.BatchNorm1d(channels)
        self.conv1 = _circular_conv(channels, channels, kernel_size)
        self.conv2 = _circular_conv(channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return x + out


def _stage(in_channels: int, spec: StageSpec) -> nn.Sequential:
    return nn.Sequential(
        _circular_conv(in_channels, spec.out_channels, spec.conv_kernel),
        *(ResBlock(spec.out_channels, spec.res_kernel) for _ in range(spec.resblocks)),
        nn.BatchNorm1d(spec.out_channels),
        nn.ReLU(),
        Downsample(spec.out_channels, spec.down_factor, spec.down_order),
    )


def _feature_extractor(stages: tuple[StageSpec, ...]) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = INPUT_CHANNELS
    for index, spec in enumerate(stages, start=1):
        layers[f"layer{index}"] = _stage(in_channels, spec)
        in_channels = spec.out_channels
    return nn.Sequential(layers)


class TaskHead(nn.Module):
    """One pretext task's binary head."""

    def __init__(self, feature_size: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(feature_size, 2)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear1(features)


class ClassifierHead(nn.Module):
    """Downstream head: ``Linear(C, 512) → ReLU → Linear(512, n_classes)``."""

    def __init__(self, feature_size: int, n_classes: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(feature_size, CLASSIFIER_HIDDEN)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(CLASSIFIER_HIDDEN, n_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear2(self.relu(self.linear1(features)))


class HarNet(nn.Module):
    """harnet for one window length, either self-supervised (``n_classes=None``) or a classifier.

    The self-supervised model's ``forward`` returns ``{task: logits (N, 2)}`` for the tasks
    of :data:`TASK_HEADS`; the classifier's returns logits ``(N, n_classes)``.
    """

    def __init__(self, window_seconds: int, n_classes: int | None = None) -> None:
        super().__init__()
        _check_window_seconds(window_seconds)
        _check_n_classes(n_classes)
        stages = ARCHITECTURES[window_seconds]
        self.window_seconds = window_seconds
        self.window_samples = window_samples(window_seconds)
        self.feature_size = stages[-1].out_channels
        self.n_classes = n_classes
        self.feature_extractor = _feature_extractor(stages)
        if n_classes is None:
            for head_name in TASK_HEADS.values():
                setattr(self, head_name, TaskHead(self.feature_size))
        else:
            self.classifier = ClassifierHead(self.feature_size, n_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming-normal (fan-out) convolutions, as published; heads keep PyTorch's default.

        The published code also draws every Linear layer Kaiming-normal (fan-out). For a
        head with 2 or k outputs that gives initial logits with an SD of ~8 and an initial
        loss of ~10-14: at lr 1e-3 the pretext tasks stayed at chance for 51k windows on
        CPU, and at the downstream lr 1e-4 the first epochs are spent undoing it. The
        default (uniform in +-1/sqrt(fan_in)) starts at uniform class probabilities. The
        fixture is unaffected: it loads published weights.
        """
        for module in self.feature_extractor.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _check_input(self, x: Tensor) -> None:
        expected = (INPUT_CHANNELS, self.window_samples)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"harnet{self.window_seconds} expects input of shape (N, {expected[0]}, "
                f"{expected[1]}) ({self.window_seconds}-s windows at 30 Hz), "
                f"got {tuple(x.shape)}"
            )

    def features(self, x: Tensor) -> Tensor:
        """The ``(N, feature_size)`` representation of windows ``x`` of shape ``(N, 3, L)``."""
        self._check_input(x)
        return self.feature_extractor(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        features = self.features(x)
        if self.n_classes is not None:
            return self.classifier(features)
        return {task: getattr(self, head)(features) for task, head in TASK_HEADS.items()}


def harnet(
    window_seconds: int,
    n_classes: int | None = None,
    pretrained: str | os.PathLike | None = None,
) -> HarNet:
    """Build harnet for ``window_seconds`` (5, 10 or 30), optionally loading ``pretrained``.

    ``pretrained`` is a published checkpoint (feature extractor loaded) or one of ours from
    :func:`save_checkpoint` (feature extractor plus every other entry that matches in
    name and shape). Raises :class:`CheckpointError` when the file does not fit.
    """
    model = HarNet(window_seconds, n_classes)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def _check_window_seconds(window_seconds: object) -> None:
    if isinstance(window_seconds, bool) or window_seconds not in WINDOW_LENGTHS:
        raise ValueError(
            f"window_seconds must be one of {list(WINDOW_LENGTHS)}, got {window_seconds!r}"
        )


def _check_n_classes(n_classes: object) -> None:
    if n_classes is None:
        return
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int or None, got {n_classes!r}")


def _strip_ddp_prefix(key: str) -> str:
    return key[len(DDP_PREFIX) :] if key.startswith(DDP_PREFIX) else key


def feature_extractor_state(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The ``feature_extractor.*`` entries of ``state_dict``, a leading ``module.`` removed."""
    stripped = {_strip_ddp_prefix(key): value for key, value in state_dict.items()}
    return {key: value for key, value in stripped.items() if key.startswith(FEATURE_PREFIX)}


@functools.cache
def _feature_extractor_shapes(window_seconds: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of a harnet's feature extractor, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = HarNet(window_seconds)
    return {
        FEATURE_PREFIX + key: tuple(value.shape)
        for key, value in model.feature_extractor.state_dict().items()
    }


def _shapes_of(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _window_by_shapes(shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """The window length whose feature extractor has exactly these keys and shapes, if any."""
    for window_seconds in WINDOW_LENGTHS:
        if _feature_extractor_shapes(window_seconds) == dict(shapes):
            return window_seconds
    return None


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return f"{shown} (and {more} more)" if more > 0 else shown


def _check_feature_state(path: Path, model: HarNet, state: Mapping[str, Tensor]) -> None:
    """Raise unless ``state`` (``feature_extractor.*`` keys) fits ``model`` key for key."""
    expected = _feature_extractor_shapes(model.window_seconds)
    found = _shapes_of(state)
    if not found:
        raise CheckpointError(f"{path}: holds no '{FEATURE_PREFIX}*' entries; not a harnet file")
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    wrong_shape = [key for key in expected if key in found and found[key] != expected[key]]
    if not (missing or unexpected or wrong_shape):
        return
    asked = (
        f"harnet{model.window_seconds} ({model.window_seconds}-s windows, "
        f"{model.window_samples} samples)"
    )
    looks_like = _window_by_shapes(found)
    if looks_like is not None:
        raise CheckpointError(
            f"{path}: window length mismatch: this file looks like a {looks_like}-s model "
            f"(harnet{looks_like}), but {asked} was asked for"
            + (f"; e.g. {_shape_clash(wrong_shape[0], found, expected)}" if wrong_shape else "")
        )
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing)} feature-extractor entries of {asked} are missing: "
            f"{_listed(missing)}"
        )
    if unexpected:
        raise CheckpointError(
            f"{path}: {len(unexpected)} feature-extractor entries are not in {asked}: "
            f"{_listed(unexpected)}"
        )
    raise CheckpointError(
        f"{path}: shape mismatch for {asked}: {_shape_clash(wrong_shape[0], found, expected)}"
        + (f" ({len(wrong_shape)} keys differ)" if len(wrong_shape) > 1 else "")
    )


def _shape_clash(
    key: str, found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> str:
    return f"{key} has shape {found[key]} in the file, the model expects {expected[key]}"


def _read(path: Path) -> object:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many unrelated types for a bad file
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint of tensors "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from error


def _first_line(error: Exception) -> str:
    """torch.load's messages run to paragraphs; the first line says what went wrong."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _is_state_dict(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())
    )


def _is_our_checkpoint(value: object) -> bool:
    return isinstance(value, Mapping) and value.get("format") == CHECKPOINT_FORMAT


def _validate_our_checkpoint(path: Path, content: Mapping[str, Any]) -> None:
    if content.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {content.get('version')!r} is not supported "
            f"(expected {CHECKPOINT_VERSION})"
        )
    window_seconds = content.get("window_seconds")
    if isinstance(window_seconds, bool) or window_seconds not in WINDOW_LENGTHS:
        raise CheckpointError(
            f"{path}: window_seconds {window_seconds!r} is not one of {list(WINDOW_LENGTHS)}"
        )
    n_classes = content.get("n_classes")
    if n_classes is not None and (
        isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1
    ):
        raise CheckpointError(f"{path}: n_classes {n_classes!r} is not a positive int or None")
    labels = content.get("labels")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(label, str) for label in labels)
    ):
        raise CheckpointError(f"{path}: labels must be a list of str, got {labels!r}")
    if not _is_state_dict(content.get("state_dict")):
        raise CheckpointError(f"{path}: 'state_dict' is not a non-empty mapping of str to tensors")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read one of our checkpoints (written by :func:`save_checkpoint`) as a dict."""
    path = Path(path)
    content = _read(path)
    if not _is_our_checkpoint(content):
        kind = (
            "a bare state dict (a published harnet file?)"
            if _is_state_dict(content)
            else (f"a {type(content).__name__}")
        )
        raise CheckpointError(
            f"{path}: is {kind}, not a {CHECKPOINT_FORMAT} file; published weights are "
            f"loaded with harnet(..., pretrained=path)"
        )
    _validate_our_checkpoint(path, content)
    return dict(content)


def load_pretrained(model: HarNet, path: str | os.PathLike) -> None:
    """Load a published file or one of our checkpoints into ``model`` (see :func:`harnet`)."""
    path = Path(path)
    content = _read(path)
    if _is_our_checkpoint(content):
        _validate_our_checkpoint(path, content)
        if content["window_seconds"] != model.window_seconds:
            raise CheckpointError(
                f"{path}: window length mismatch: this file is a {content['window_seconds']}-s "
                f"model, but harnet{model.window_seconds} ({model.window_seconds}-s windows) "
                f"was asked for"
            )
        state = {_strip_ddp_prefix(k): v for k, v in content["state_dict"].items()}
        _load_matching(path, model, state, feature_extractor_only=False)
    elif _is_state_dict(content):
        _load_matching(path, model, dict(content), feature_extractor_only=True)
    else:
        raise CheckpointError(
            f"{path}: is a {type(content).__name__}, not a state dict (a mapping of str keys "
            f"to tensors) nor a {CHECKPOINT_FORMAT} file"
        )


def _load_matching(
    path: Path, model: HarNet, state: Mapping[str, Tensor], *, feature_extractor_only: bool
) -> None:
    """Load the whole feature extractor (strictly) and, unless told not to, any other
    entry of ``state`` that matches the model in name and shape. The downsample filters
    keep the model's own deterministic values; the file's need only have their shapes."""
    features = feature_extractor_state(state)
    _check_feature_state(path, model, features)
    merged = model.state_dict()
    fixed = _filter_keys(model)
    merged.update({key: value for key, value in features.items() if key not in fixed})
    if not feature_extractor_only:
        for key, value in state.items():
            if not key.startswith(FEATURE_PREFIX) and key in merged:
                if value.shape == merged[key].shape:
                    merged[key] = value
    model.load_state_dict(merged)


def _filter_keys(model: HarNet) -> set[str]:
    """State-dict keys of the fixed downsample filters."""
    return {
        f"{FEATURE_PREFIX}{name}.kernel"
        for name, module in model.feature_extractor.named_modules()
        if isinstance(module, Downsample)
    }


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _check_plain(value: object, where: str) -> None:
    """Raise unless ``value`` is something ``torch.load(weights_only=True)`` reads back."""
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"{where}: key {key!r} must be str or int")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(
        f"{where}: a {type(value).__name__} cannot be stored in a checkpoint "
        f"(only tensors, numbers, str, None and lists/tuples/dicts of them)"
    )


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    window_seconds: int,
    labels: list[str] | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``model`` (DDP/compile wrappers removed) as a wearssl checkpoint.

    ``extra`` entries are stored at the top level next to the reserved keys; they must be
    tensors or plain values so that the file loads with ``weights_only=True``. The file is
    written to a temporary name first and renamed, so a reader never sees half a file.
    """
    _check_window_seconds(window_seconds)
    inner = _unwrap(model)
    model_window = getattr(inner, "window_seconds", window_seconds)
    if model_window != window_seconds:
        raise ValueError(
            f"window_seconds={window_seconds} but the model is a {model_window}-s harnet"
        )
    n_classes = getattr(inner, "n_classes", None)
    if labels is not None:
        labels = list(labels)
        if not all(isinstance(label, str) for label in labels):
            raise ValueError(f"labels must be str, got {labels!r}")
        if n_classes is not None and len(labels) != n_classes:
            raise ValueError(f"{len(labels)} labels given for a model with {n_classes} classes")
    extra = dict(extra or {})
    clashes = sorted(_RESERVED_CHECKPOINT_KEYS & extra.keys())
    if clashes:
        raise ValueError(f"extra keys {clashes} are reserved checkpoint keys")
    _check_plain(extra, "extra")
    content = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "window_seconds": window_seconds,
        "n_classes": n_classes,
        "labels": labels,
        "state_dict": {
            key: value.detach().cpu().clone() for key, value in inner.state_dict().items()
        },
        **extra,
    }
    write_atomically(path, lambda partial: torch.save(content, partial))
