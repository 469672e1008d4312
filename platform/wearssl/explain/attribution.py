"""Which samples of a window drive a head's prediction, and is that attribution faithful.

Attribution
    A head (a pretext task's or the activity classifier) is explained through one
    network, :func:`explained_network`: the feature extractor with every residual block
    laid out as ``x + branch(x)`` and its ReLUs as modules (so hook- and rule-based
    methods see every layer), then the head. The explained output is the predicted
    class's *margin*, its logit minus the mean of the other logits (for a binary pretext
    head, the log-odds of the prediction): softmax ignores a constant added to every
    logit, so the raw logit would carry relevance for something that does not change
    the prediction. The head's last linear layer is replaced by one that computes the
    margins of all classes, and the softmax probabilities are recovered from them
    exactly (:func:`prediction_confidence`).

    Methods (all give per-sample, per-axis relevance ``(N, 3, L)``):

    * ``integrated_gradients`` and ``deeplift`` (Captum, Rescale rule): relative to a
      reference window, by default the window's per-axis mean held constant (a still
      wrist in the same posture), the same signal the masking test puts in;
    * ``lrp``: layer-wise relevance propagation, our own implementation (:func:`lrp`).
      Captum's cannot follow the residual additions inside the blocks (relevance
      reaching ``x + f(x)`` would be handed to both terms in full) and has no rules for
      1-D convolutions, 1-D batch norm or the anti-aliasing filter;
    * ``input_x_gradient`` (Captum), not a default: relative to an all-zero input, it
      spreads relevance over whatever axis carries gravity.

Faithfulness by masking
    Time points are ranked by relevance summed over the three axes (``absolute``: sum of
    |relevance|; ``positive``: signed sum, most in favour of the prediction first); the
    top fraction of them is removed (all three axes set to the window's per-axis mean,
    or linearly interpolated from the nearest kept samples), and the head's softmax
    probability of its original prediction is recorded, for increasing fractions. The
    same is done in a random order. A method's score is the area between the random
    curve and its own, normalised by the span of fractions: the mean extra drop in
    confidence that relevance-ordered removal causes over random removal. Positive is
    faithful.

Windows are explained in chunks, one Ray task per chunk (the network travels once
through the object store). :func:`run_explain` is the job: windows of held-out subjects,
all heads and methods, plots, a Markdown summary, and an MLflow run in the ``explain``
experiment.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import ray
import torch
import yaml
from captum.attr import DeepLift, InputXGradient, IntegratedGradients
from matplotlib.figure import Figure
from torch import Tensor, nn

from wearssl.config import ConfigError, flatten
from wearssl.config.explain import (
    Attribution,
    CorpusWindows,
    ExplainConfig,
    LabelledWindows,
    Masking,
)
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.data.labelled_set import read_labelled_set
from wearssl.data.splits import protocol_folds
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.models.export import load_classifier
from wearssl.models.harnet import (
    TASK_HEADS,
    CheckpointError,
    Downsample,
    HarNet,
    ResBlock,
)
from wearssl.models.resolve import resolve_weights
from wearssl.pretrain.transforms import (
    N_SEGMENTS,
    draw_segment_lengths,
    draw_segment_orders,
    permute_segments,
    reverse_time,
    scale,
    segment_permutation_index,
    time_warp,
)

CLASSIFIER_HEAD = "classifier"
PAPER_PRETEXT_HEADS = ("aot", "permute", "time_warp")
PRETEXT_CLASS_NAMES: dict[str, tuple[str, str]] = {
    "aot": ("forward", "reversed"),
    "permute": ("in order", "permuted"),
    "time_warp": ("unwarped", "warped"),
    "scale": ("unscaled", "scaled"),
}
RANDOM_ORDER = "random"
EXPERIMENT = "explain"
AXES = ("x", "y", "z")


# ---------------------------------------------------------------- the explained network


class Residual(nn.Module):
    """``x + branch(x)``: a residual block with its branch as a plain module sequence."""

    def __init__(self, branch: nn.Sequential) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _residual(block: ResBlock) -> Residual:
    """The block's own layers (shared, not copied), its two functional ReLUs as modules."""
    return Residual(
        nn.Sequential(block.bn1, nn.ReLU(), block.conv1, block.bn2, nn.ReLU(), block.conv2)
    )


def _laid_out(module: nn.Module) -> nn.Module:
    if isinstance(module, ResBlock):
        return _residual(module)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(
            OrderedDict((name, _laid_out(child)) for name, child in module.named_children())
        )
    return module


def _margin_linear(linear: nn.Linear) -> nn.Linear:
    """``linear`` followed by ``z_j - mean_{i != j} z_i``, folded into one linear layer.

    With k classes the margins are ``k / (k - 1) * (z - mean(z))``, a linear map of the
    logits, so weights and bias transform alike.
    """
    k = linear.out_features
    if k < 2:
        raise ValueError(f"a head with {k} output cannot be explained as a class decision")
    margin = nn.Linear(linear.in_features, k)
    with torch.no_grad():
        margin.weight.copy_(k / (k - 1) * (linear.weight - linear.weight.mean(0, keepdim=True)))
        margin.bias.copy_(k / (k - 1) * (linear.bias - linear.bias.mean()))
    return margin


def model_heads(model: HarNet) -> tuple[str, ...]:
    """The heads ``model`` has: ``classifier``, or the pretext tasks of :data:`TASK_HEADS`."""
    return (CLASSIFIER_HEAD,) if model.n_classes is not None else tuple(TASK_HEADS)


def default_heads(model: HarNet) -> list[str]:
    return [CLASSIFIER_HEAD] if model.n_classes is not None else list(PAPER_PRETEXT_HEADS)


def _head_layers(model: HarNet, head: str) -> list[nn.Module]:
    if head == CLASSIFIER_HEAD:
        classifier = model.classifier
        return [classifier.linear1, classifier.relu, _margin_linear(classifier.linear2)]
    return [_margin_linear(getattr(model, TASK_HEADS[head]).linear1)]


def explained_network(model: HarNet, head: str) -> nn.Sequential:
    """A copy of ``model`` (eval mode, no parameter gradients) mapping windows to the
    ``(N, k)`` class margins of ``head``; ``model`` itself is left as it is."""
    if head not in model_heads(model):
        raise ValueError(f"head {head!r}: this model has the heads {list(model_heads(model))}")
    model = copy.deepcopy(model).eval()
    network = nn.Sequential(
        OrderedDict(
            features=_laid_out(model.feature_extractor),
            flatten=nn.Flatten(),
            head=nn.Sequential(*_head_layers(model, head)),
        )
    )
    return network.eval().requires_grad_(False)


def prediction_confidence(margins: Tensor) -> Tensor:
    """Softmax probabilities ``(N, k)`` of the head from its margins (exact: the logits
    are ``margins * (k - 1) / k`` plus a per-window constant that softmax ignores)."""
    k = margins.shape[1]
    return torch.softmax(margins * (k - 1) / k, dim=1)


def _confidence_in(network: nn.Module, windows: Tensor, predicted: Tensor) -> Tensor:
    with torch.no_grad():
        return prediction_confidence(network(windows)).gather(1, predicted[:, None])[:, 0]


# ---------------------------------------------------------------- layer-wise relevance propagation

_AFFINE_LAYERS = (nn.Conv1d, nn.Linear, Downsample, nn.BatchNorm1d)


def _stabilised(z: Tensor, epsilon: float) -> Tensor:
    """``z + e * sign(z)`` (sign(0) = 1) with ``e`` = ``epsilon`` times the root mean square
    of ``z`` over each window's units: one relative epsilon suits every layer, whatever
    its activations' scale. Never zero where ``z`` has any non-zero unit, and |.| only grows.
    """
    units = tuple(range(1, z.dim()))
    scale = z.detach().square().mean(dim=units, keepdim=True).sqrt()
    step = epsilon * scale + torch.finfo(z.dtype).tiny
    return torch.where(z >= 0, z + step, z - step)


def _epsilon_rule(layer: nn.Module, a: Tensor, relevance: Tensor, epsilon: float) -> Tensor:
    """``R_i = a_i * sum_j w_ji * R_j / stab(z_j)`` for an affine layer ``z = layer(a)``.

    The sum is the gradient of ``z`` against the constant ``R / stab(z)``, so one rule
    serves every affine layer: convolutions (circular padding included), fully connected
    layers, the fixed anti-aliasing filter and batch norm in eval mode (``z = w a + b``
    per channel). A bias keeps its share ``b_j R_j / stab(z_j)``, the stabiliser the rest.
    """
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        z = layer(a)
        (weighted,) = torch.autograd.grad(z, a, grad_outputs=relevance / _stabilised(z, epsilon))
    return a.detach() * weighted


def _relevance(module: nn.Module, a: Tensor, relevance: Tensor, epsilon: float) -> Tensor:
    """Relevance of ``module``'s input ``a`` given the relevance of its output."""
    if isinstance(module, nn.Sequential):
        inputs = []
        with torch.no_grad():
            for layer in module:
                inputs.append(a)
                a = layer(a)
        for layer, layer_input in zip(reversed(module), reversed(inputs), strict=True):
            relevance = _relevance(layer, layer_input, relevance, epsilon)
        return relevance
    if isinstance(module, Residual):
        with torch.no_grad():
            branch = module.branch(a)
            share = relevance / _stabilised(a + branch, epsilon)
        return a * share + _relevance(module.branch, a, branch * share, epsilon)
    if isinstance(module, _AFFINE_LAYERS):
        return _epsilon_rule(module, a, relevance, epsilon)
    if isinstance(module, nn.ReLU):
        return relevance
    if isinstance(module, nn.Flatten):
        return relevance.reshape(a.shape)
    raise TypeError(f"LRP has no rule for a {type(module).__name__} layer")


def lrp(network: nn.Module, windows: Tensor, target: Tensor, epsilon: float = 0.1) -> Tensor:
    """LRP-epsilon relevance ``(N, 3, L)`` of the ``target`` class's output of ``network``.

    Rules: the epsilon rule (:func:`_epsilon_rule`, relative epsilon, see
    :func:`_stabilised`) for every affine layer, batch norm included; ReLU passes
    relevance through; a residual sum ``y = x + f`` splits it in proportion to the two
    terms, ``R_x = x R_y / y`` and ``R_f = f R_y / y``, so nothing is counted twice.
    Relevance is conserved (the input's sums to the explained output) up to what the
    biases and batch-norm shifts keep and what the stabiliser absorbs.

    Batch norm cannot be folded into a convolution here (in a pre-activation block it
    follows a residual sum, and a ReLU separates it from the next convolution). Passing
    relevance through it unchanged would conserve it exactly, but relevance computed
    from the shifted output is then divided by the unshifted input, which lies near
    zero where the shift dominates: on a trained harnet, at epsilon 1e-6, that blew
    relevance up to 7e31 for an output of 206. As epsilon goes to 0 these rules give
    input x gradient; a larger epsilon keeps the strong, consistent contributions and
    drops the weak, noisy ones.
    """
    with torch.no_grad():
        output = network(windows)
    start = torch.zeros_like(output).scatter_(1, target[:, None], output.gather(1, target[:, None]))
    return _relevance(network, windows.detach(), start, epsilon)


# ---------------------------------------------------------------- Captum methods


def reference_windows(windows: Tensor, baseline: str) -> Tensor:
    """The reference input: each window's per-axis mean held constant, or zeros."""
    if baseline == "mean":
        return windows.mean(dim=2, keepdim=True).expand_as(windows).contiguous()
    if baseline == "zero":
        return torch.zeros_like(windows)
    raise ValueError(f"baseline must be 'mean' or 'zero', got {baseline!r}")


def _integrated_gradients(
    network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution
) -> Tensor:
    return IntegratedGradients(network).attribute(
        windows,
        baselines=reference_windows(windows, settings.baseline),
        target=target,
        n_steps=settings.ig_steps,
        internal_batch_size=len(windows),
    )


def _deeplift(network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        return DeepLift(network).attribute(
            windows, baselines=reference_windows(windows, settings.baseline), target=target
        )


def _input_x_gradient(
    network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution
) -> Tensor:
    return InputXGradient(network).attribute(windows, target=target)


def _lrp(network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution) -> Tensor:
    return lrp(network, windows, target, settings.lrp_epsilon)


METHODS: dict[str, Callable[[nn.Module, Tensor, Tensor, Attribution], Tensor]] = {
    "integrated_gradients": _integrated_gradients,
    "deeplift": _deeplift,
    "input_x_gradient": _input_x_gradient,
    "lrp": _lrp,
}


def attribute(
    network: nn.Module, windows: Tensor, target: Tensor, method: str, settings: Attribution
) -> Tensor:
    """Relevance ``(N, 3, L)`` of each window's ``target`` margin by ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {sorted(METHODS)}")
    windows = windows.detach().requires_grad_(True)
    return METHODS[method](network, windows, target, settings).detach()


# ---------------------------------------------------------------- masking


def time_scores(relevance: Tensor, ranking: str) -> Tensor:
    """One score per time point ``(N, L)``: relevance summed over axes, or of its |.|."""
    if ranking == "positive":
        return relevance.sum(dim=1)
    if ranking == "absolute":
        return relevance.abs().sum(dim=1)
    raise ValueError(f"ranking must be 'positive' or 'absolute', got {ranking!r}")


def top_time_points(scores: Tensor, fraction: float) -> Tensor:
    """Boolean ``(N, L)``: the ``round(fraction * L)`` highest-scoring time points of each
    window (ties in time order). Masks of one score are nested as the fraction grows."""
    n_masked = round(fraction * scores.shape[1])
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :n_masked]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)


def _interpolated(windows: Tensor, kept: Tensor) -> Tensor:
    """Every sample linearly interpolated in time from the nearest kept samples on either
    side (the nearest one where there is only one side); windows without a kept sample
    get their per-axis mean."""
    length = windows.shape[-1]
    time = torch.arange(length, device=windows.device).expand_as(kept)
    before = torch.where(kept, time, -1).cummax(dim=1).values
    after = torch.where(kept, time, length).flip(1).cummin(dim=1).values.flip(1)
    low = torch.where(before >= 0, before, after).clamp(0, length - 1)
    high = torch.where(after < length, after, before).clamp(0, length - 1)
    weight = ((time - low) / (high - low).clamp(min=1)).clamp(0, 1).to(windows.dtype)
    gather = lambda index: windows.gather(2, index[:, None, :].expand_as(windows))  # noqa: E731
    filled = torch.lerp(gather(low), gather(high), weight[:, None, :])
    none_kept = ~kept.any(dim=1)
    return torch.where(
        none_kept[:, None, None], windows.mean(dim=2, keepdim=True).expand_as(windows), filled
    )


def mask_time_points(windows: Tensor, masked: Tensor, fill: str) -> Tensor:
    """``windows`` with the ``masked`` time points ``(N, L)`` removed on all axes: set to
    the window's per-axis mean (of the original window), or interpolated linearly from
    the kept samples. Kept samples are returned unchanged; the input is not modified."""
    if masked.shape != (windows.shape[0], windows.shape[2]):
        raise ValueError(
            f"mask shape {tuple(masked.shape)} does not fit windows {tuple(windows.shape)}"
        )
    if fill == "mean":
        filled = windows.mean(dim=2, keepdim=True).expand_as(windows)
    elif fill == "interpolate":
        filled = _interpolated(windows, ~masked)
    else:
        raise ValueError(f"fill must be 'mean' or 'interpolate', got {fill!r}")
    return torch.where(masked[:, None, :], filled, windows)


def masking_curves(
    network: nn.Module,
    windows: Tensor,
    predicted: Tensor,
    scores: Tensor,
    fractions: list[float],
    fill: str,
) -> Tensor:
    """Confidence ``(N, K)`` in each window's original prediction with the top
    ``fractions[k]`` of its time points by ``scores`` removed."""
    columns = [
        _confidence_in(
            network, mask_time_points(windows, top_time_points(scores, f), fill), predicted
        )
        for f in fractions
    ]
    return torch.stack(columns, dim=1)


def area_between(fractions: np.ndarray, random: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Trapezoid area between the random and relevance-ordered curves ``(..., K)`` over
    the fractions, divided by their span: the mean extra drop in confidence."""
    fractions = np.asarray(fractions, dtype=np.float64)
    gap = np.asarray(random, dtype=np.float64) - np.asarray(ordered, dtype=np.float64)
    widths = np.diff(fractions)
    area = ((gap[..., 1:] + gap[..., :-1]) / 2 * widths).sum(axis=-1)
    return area / (fractions[-1] - fractions[0])


# ---------------------------------------------------------------- explaining windows


@dataclass
class Explanation:
    """Attribution and masking results for a set of windows (one head)."""

    fractions: np.ndarray  # (K,)
    predicted: np.ndarray  # (N,) the head's prediction
    confidence: np.ndarray  # (N,) its softmax probability
    explained_output: np.ndarray  # (N,) the predicted class's margin, what is explained
    relevance: dict[str, np.ndarray]  # method -> (N, 3, L)
    masked_confidence: dict[str, np.ndarray]  # method or "random" -> (N, K)

    @property
    def methods(self) -> list[str]:
        return list(self.relevance)

    def curve(self, order: str) -> np.ndarray:
        """Mean confidence over windows ``(K,)`` for a method's order or ``"random"``."""
        return self.masked_confidence[order].mean(axis=0)

    def window_areas(self, method: str) -> np.ndarray:
        """Area between curves per window ``(N,)``; its mean is :meth:`area`."""
        return area_between(
            self.fractions, self.masked_confidence[RANDOM_ORDER], self.masked_confidence[method]
        )

    def area(self, method: str) -> float:
        return float(self.window_areas(method).mean())

    def relevance_over_output(self, method: str) -> np.ndarray:
        """Summed relevance over the explained output, per window (1 when conserved)."""
        return self.relevance[method].sum(axis=(1, 2)) / self.explained_output

    @staticmethod
    def concatenate(parts: list[Explanation]) -> Explanation:
        first = parts[0]
        return Explanation(
            fractions=first.fractions,
            predicted=np.concatenate([p.predicted for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            explained_output=np.concatenate([p.explained_output for p in parts]),
            relevance={m: np.concatenate([p.relevance[m] for p in parts]) for m in first.relevance},
            masked_confidence={
                o: np.concatenate([p.masked_confidence[o] for p in parts])
                for o in first.masked_confidence
            },
        )


def explain_chunk(
    network: nn.Module,
    windows: np.ndarray,
    random_scores: np.ndarray,
    attribution: Attribution,
    masking: Masking,
) -> Explanation:
    """Explain ``windows`` ``(n, 3, L)`` in this process: every method's relevance, and
    the masking curves of every method's order and of ``random_scores`` ``(n, L)``."""
    x = torch.tensor(windows, dtype=torch.float32)  # a copy: Ray hands over read-only arrays
    with torch.no_grad():
        margins = network(x)
    predicted = margins.argmax(dim=1)
    confidence = prediction_confidence(margins).gather(1, predicted[:, None])[:, 0]
    curves = {
        RANDOM_ORDER: masking_curves(
            network, x, predicted, torch.tensor(random_scores), masking.fractions, masking.fill
        )
    }
    relevance = {}
    for method in attribution.methods:
        relevance[method] = attribute(network, x, predicted, method, attribution)
        scores = time_scores(relevance[method], masking.ranking)
        curves[method] = masking_curves(
            network, x, predicted, scores, masking.fractions, masking.fill
        )
    return Explanation(
        fractions=np.asarray(masking.fractions, dtype=np.float64),
        predicted=predicted.numpy(),
        confidence=confidence.numpy(),
        explained_output=margins.gather(1, predicted[:, None])[:, 0].numpy(),
        relevance={m: r.numpy() for m, r in relevance.items()},
        masked_confidence={o: c.numpy() for o, c in curves.items()},
    )


@ray.remote
def _explain_chunk_task(
    network: nn.Module,
    windows: np.ndarray,
    random_scores: np.ndarray,
    attribution: Attribution,
    masking: Masking,
    threads: int,
) -> Explanation:
    torch.set_num_threads(threads)
    return explain_chunk(network, windows, random_scores, attribution, masking)


def random_time_scores(n_windows: int, length: int, seed: int) -> np.ndarray:
    """Scores ``(n, L)`` whose ranking is a uniformly random order of each window's time
    points; drawn once for all windows, so results do not depend on the chunking."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n_windows, length, generator=generator).numpy()


def explain_windows(
    network: nn.Module,
    windows: np.ndarray,
    attribution: Attribution,
    masking: Masking,
    chunk_size: int = 32,
    cpus_per_task: float = 1.0,
) -> Explanation:
    """Explain ``windows`` ``(N, 3, L)`` on the connected Ray cluster, one task per chunk
    of ``chunk_size`` windows, each holding ``cpus_per_task`` CPUs."""
    if windows.ndim != 3 or len(windows) == 0:
        raise ValueError(f"windows must be a non-empty (N, 3, L) array, got {windows.shape}")
    scores = random_time_scores(len(windows), windows.shape[2], masking.seed)
    network_ref = ray.put(network)
    task = _explain_chunk_task.options(num_cpus=cpus_per_task)
    threads = max(1, int(cpus_per_task))
    refs = [
        task.remote(
            network_ref,
            windows[start : start + chunk_size],
            scores[start : start + chunk_size],
            attribution,
            masking,
            threads,
        )
        for start in range(0, len(windows), chunk_size)
    ]
    return Explanation.concatenate(ray.get(refs))


# ---------------------------------------------------------------- windows to explain

_PRETEXT_TRANSFORMS: dict[str, Callable[[Tensor, Tensor, torch.Generator], Tensor]] = {
    "aot": lambda x, mask, generator: reverse_time(x, mask),
    "permute": permute_segments,
    "time_warp": time_warp,
    "scale": scale,
}


def pretext_windows(
    windows: np.ndarray, head: str, transformed: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The windows a pretext head is explained on, with the head's true labels: the
    windows as drawn (label 0), followed, if ``transformed``, by each window with the
    head's transform applied (label 1)."""
    original = np.asarray(windows, dtype=np.float32)
    labels = np.zeros(len(original), dtype=np.int64)
    if not transformed:
        return original, labels
    x = torch.from_numpy(original)
    generator = torch.Generator().manual_seed(seed)
    changed = _PRETEXT_TRANSFORMS[head](x, torch.ones(len(x), dtype=torch.bool), generator)
    return (
        np.concatenate([original, changed.numpy()]),
        np.concatenate([labels, np.ones(len(original), dtype=np.int64)]),
    )


def _fit_window_length(windows: np.ndarray, samples: int, source: str) -> np.ndarray:
    """10-s corpus windows as the model's windows: as they are, or each as its two 5-s halves."""
    length = windows.shape[2]
    if samples == length:
        return windows
    if length % samples == 0:
        pieces = np.split(windows, length // samples, axis=2)
        return np.concatenate(pieces)
    raise ConfigError(
        f"{source}: holds {length}-sample windows; a model of {samples}-sample windows "
        f"cannot be explained on them (use a labelled set of that window length)"
    )


def corpus_windows(settings: CorpusWindows, window_samples: int) -> np.ndarray:
    """Std-weighted windows of the subjects of one split (held-out: ``test``), float32."""
    manifest = corpus.read_manifest(settings.path)
    days = epochs.subject_days(manifest, settings.split)
    if not days:
        raise ConfigError(
            f"data.corpus: corpus {settings.path} has no subject with worn windows in split "
            f"{settings.split!r} (key data.corpus.split)"
        )
    windows = epochs.heldout_windows(
        settings.path, days, settings.max_subjects, settings.windows_per_subject, settings.seed
    )
    return _fit_window_length(windows.astype(np.float32), window_samples, f"corpus {settings.path}")


def labelled_windows(
    settings: LabelledWindows, window_seconds: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Windows, labels and label names of the labelled set's chosen subjects."""
    labelled = read_labelled_set(settings.path)
    if labelled.window_seconds != window_seconds:
        raise ConfigError(
            f"data.labelled.path: {settings.path} holds {labelled.window_seconds}-s windows, "
            f"the model takes {window_seconds}-s windows"
        )
    rows = np.arange(len(labelled.labels))
    if settings.subjects is not None:
        missing = sorted(set(settings.subjects) - set(labelled.subjects.tolist()))
        if missing:
            raise ConfigError(f"data.labelled.subjects: {missing} are not in {settings.path}")
        rows = np.flatnonzero(np.isin(labelled.subjects, settings.subjects))
    if settings.fold is not None:
        folds = protocol_folds(labelled.subjects, seed=settings.split_seed)
        if settings.fold >= len(folds):
            raise ConfigError(
                f"data.labelled.fold: {settings.fold} is out of range; {settings.path} has "
                f"{len(folds)} folds"
            )
        rows = folds[settings.fold].test
    if settings.max_windows is not None and len(rows) > settings.max_windows:
        rng = np.random.default_rng(settings.seed)
        rows = np.sort(rng.choice(rows, settings.max_windows, replace=False))
    return labelled.windows[rows], labelled.labels[rows], list(labelled.label_names)


# ---------------------------------------------------------------- plots


def _relevance_panel(ax, window: np.ndarray, scores: np.ndarray) -> None:
    """The three axes as lines over a colour band of the time points' relevance."""
    time = np.arange(window.shape[1])
    for axis, name in enumerate(AXES):
        ax.plot(time, window[axis], linewidth=0.8, label=name)
    low, high = ax.get_ylim()
    limit = float(np.abs(scores).max()) or 1.0
    ax.imshow(
        scores[None, :],
        aspect="auto",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        extent=(-0.5, len(time) - 0.5, low, high),
        alpha=0.55,
        zorder=0,
        interpolation="nearest",
    )
    ax.set_ylim(low, high)
    ax.set_xlim(-0.5, len(time) - 0.5)


@dataclass(frozen=True)
class ExampleForms:
    """One window in the forms the relevance figure shows."""

    names: tuple[str, ...]
    windows: np.ndarray  # (F, 3, L)
    permuted_cuts: np.ndarray  # output sample index where each permuted segment starts
    permuted_sources: np.ndarray  # which source segment each permuted segment is


def example_forms(window: np.ndarray, seed: int) -> ExampleForms:
    """``window`` as drawn, time-reversed, and cut into segments and reordered."""
    x = torch.from_numpy(np.asarray(window, dtype=np.float32))[None]
    length = x.shape[2]
    generator = torch.Generator().manual_seed(seed)
    lengths = draw_segment_lengths(1, length, generator)
    order = draw_segment_orders(1, N_SEGMENTS, generator)
    index = segment_permutation_index(lengths, order, length)
    permuted = x.gather(2, index[:, None, :].expand_as(x))
    reversed_ = reverse_time(x, torch.ones(1, dtype=torch.bool))
    output_lengths = lengths.gather(1, order)[0]
    return ExampleForms(
        names=("original", "time-reversed", "permuted"),
        windows=torch.cat([x, reversed_, permuted]).numpy(),
        permuted_cuts=(output_lengths.cumsum(0) - output_lengths).numpy(),
        permuted_sources=order[0].numpy(),
    )


def plot_relevance_examples(
    network: nn.Module,
    forms: ExampleForms,
    attribution: Attribution,
    class_names: list[str],
    title: str,
) -> Figure:
    """Rows: the window's forms; columns: methods. Each panel: the three axes over the
    time points' relevance (red: for the prediction, blue: against)."""
    x = torch.from_numpy(forms.windows)
    with torch.no_grad():
        margins = network(x)
    predicted = margins.argmax(dim=1)
    confidence = prediction_confidence(margins).gather(1, predicted[:, None])[:, 0]
    methods = attribution.methods
    figure = Figure(figsize=(3.6 * len(methods), 2.3 * len(forms.names)), layout="tight")
    axes = figure.subplots(len(forms.names), len(methods), squeeze=False, sharex=True)
    for column, method in enumerate(methods):
        scores = attribute(network, x, predicted, method, attribution).sum(dim=1)
        for row, name in enumerate(forms.names):
            ax = axes[row][column]
            _relevance_panel(ax, forms.windows[row], scores[row].numpy())
            if name == "permuted":
                _mark_segments(ax, forms)
            if row == 0:
                ax.set_title(method, fontsize=10)
            if column == 0:
                label = class_names[int(predicted[row])]
                ax.set_ylabel(
                    f"{name}\npredicted {label} ({float(confidence[row]):.2f})", fontsize=9
                )
    axes[0][0].legend(loc="upper left", fontsize=7, ncol=3)
    for ax in axes[-1]:
        ax.set_xlabel("sample (30 Hz)")
    figure.suptitle(title, fontsize=11)
    return figure


def _mark_segments(ax, forms: ExampleForms) -> None:
    """Dashed lines at the permuted window's cut points, each segment labelled with the
    position it had in the original window."""
    low, high = ax.get_ylim()
    ends = [*forms.permuted_cuts[1:], forms.windows.shape[2]]
    for start, end, source in zip(forms.permuted_cuts, ends, forms.permuted_sources, strict=True):
        if start > 0:
            ax.axvline(start - 0.5, color="black", linestyle="--", linewidth=1)
        middle = (start + end) / 2
        ax.text(middle, high, f"seg {int(source) + 1}", ha="center", va="top", fontsize=7)


def plot_masking_curves(explanation: Explanation, title: str) -> Figure:
    """Mean confidence in the original prediction against the fraction removed."""
    figure = Figure(figsize=(6, 4), layout="tight")
    ax = figure.subplots()
    percent = 100 * explanation.fractions
    ax.plot(
        percent,
        explanation.curve(RANDOM_ORDER),
        color="black",
        linestyle="--",
        marker="o",
        markersize=3,
        label="random order",
    )
    for method in explanation.methods:
        ax.plot(
            percent,
            explanation.curve(method),
            marker="o",
            markersize=3,
            label=f"{method} (area {explanation.area(method):+.3f})",
        )
    ax.set_xlabel("time points removed (%)")
    ax.set_ylabel("confidence in original prediction")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return figure


# ---------------------------------------------------------------- the job


@dataclass
class HeadResult:
    head: str
    explanation: Explanation
    accuracy: float | None
    figures: list[str]
    signal_figures: list[str]  # pictures of a raw window: kept locally, logged only on request


@dataclass
class ExplainResult:
    run_id: str
    tracking_uri: str
    output_dir: str
    heads: list[HeadResult]

    def summary(self) -> str:
        lines = [f"explained in MLflow run {self.run_id}; summary in {self.output_dir}/summary.md"]
        for result in self.heads:
            areas = ", ".join(
                f"{m} {result.explanation.area(m):+.3f}" for m in result.explanation.methods
            )
            lines.append(f"{result.head}: area between masking curves: {areas}")
        return "\n".join(lines)


def load_explained_model(
    spec: str, download_dir: Path, tracking_uri: str
) -> tuple[HarNet, list[str] | None, str | None]:
    """The model behind ``spec`` with its trained heads, its class labels and its run id."""
    resolved = resolve_weights(spec, download_dir, tracking_uri)
    try:
        model, content = load_classifier(resolved.path)
    except CheckpointError as err:
        raise CheckpointError(
            f"model: {err} (explain needs a wearssl checkpoint: it explains the heads, which "
            f"are not loaded from a published state dict)"
        ) from None
    return model.eval(), content["labels"], resolved.run_id


def _chosen_heads(cfg: ExplainConfig, model: HarNet) -> list[str]:
    heads = cfg.heads if cfg.heads is not None else default_heads(model)
    missing = [head for head in heads if head not in model_heads(model)]
    if missing:
        raise ConfigError(
            f"heads: {missing} are not heads of model {cfg.model}; it has "
            f"{list(model_heads(model))}"
        )
    return heads


def _windows_for(
    cfg: ExplainConfig, head: str, drawn: np.ndarray, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    if head == CLASSIFIER_HEAD:
        return drawn, labels
    return pretext_windows(drawn, head, cfg.transformed, cfg.masking.seed)


def _class_names(head: str, model_labels: list[str] | None, n_classes: int) -> list[str]:
    if head != CLASSIFIER_HEAD:
        return list(PRETEXT_CLASS_NAMES[head])
    return list(model_labels) if model_labels else [f"class {i}" for i in range(n_classes)]


def _most_active(windows: np.ndarray) -> np.ndarray:
    """The window whose vector magnitude varies most: movement shows its structure."""
    return windows[int(np.argmax(corpus.window_std(windows)))]


def _save(figure: Figure, path: Path) -> str:
    figure.savefig(path, dpi=110)
    return path.name


def _head_metrics(result: HeadResult) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """``{name: value}`` summaries, and the curves as ``{step: {name: value}}`` with the
    step the fraction of time points removed in per mille."""
    explanation, head = result.explanation, result.head
    values = {f"{head}.windows": float(len(explanation.predicted))}
    if result.accuracy is not None:
        values[f"{head}.accuracy"] = result.accuracy
    values[f"{head}.confidence_mean"] = float(explanation.confidence.mean())
    curves: dict[int, dict[str, float]] = {}
    for order in [RANDOM_ORDER, *explanation.methods]:
        for fraction, value in zip(explanation.fractions, explanation.curve(order), strict=True):
            step = curves.setdefault(round(1000 * fraction), {})
            step[f"{head}.{order}.confidence"] = float(value)
    for method in explanation.methods:
        areas = explanation.window_areas(method)
        values[f"{head}.{method}.area"] = float(areas.mean())
        values[f"{head}.{method}.area_sd"] = float(areas.std())
        values[f"{head}.{method}.relevance_over_output_median"] = float(
            np.median(explanation.relevance_over_output(method))
        )
    return values, curves


def summary_markdown(cfg: ExplainConfig, run_id: str, results: list[HeadResult]) -> str:
    """The human-readable summary written next to the figures."""
    fractions = results[0].explanation.fractions if results else np.array([])
    header = " | ".join(f"{100 * f:g}%" for f in fractions)
    lines = [
        f"# Explanations: {cfg.name}",
        "",
        f"- model: `{cfg.model}`",
        f"- MLflow run: `{run_id}` (experiment `{tracking.EXPERIMENT_PREFIX}{EXPERIMENT}`)",
        f"- methods: {', '.join(cfg.attribution.methods)}; reference input "
        f"`{cfg.attribution.baseline}`; masking fill `{cfg.masking.fill}`, ranking "
        f"`{cfg.masking.ranking}`",
        "",
        "Area between curves = mean extra drop in confidence in the original prediction "
        "when time points are removed in the method's relevance order rather than at random "
        "(over the masked fractions). Positive: the relevance points at what the head uses.",
        "",
        "Relevance figures: the drawn window with the most movement (largest standard "
        "deviation of the vector magnitude) as drawn, time-reversed and permuted (cut points "
        "dashed, each segment labelled with its place in the original window).",
    ]
    for result in results:
        explanation = result.explanation
        accuracy = "" if result.accuracy is None else f", accuracy {result.accuracy:.3f}"
        lines += [
            "",
            f"## Head `{result.head}`",
            "",
            f"{len(explanation.predicted)} windows{accuracy}, mean confidence "
            f"{explanation.confidence.mean():.3f}.",
            "",
            f"| order | area (mean ± SD over windows) | relevance sum / output (median) | "
            f"{header} |",
            "|---|---|---|" + "---|" * len(fractions),
        ]
        for order in [*explanation.methods, RANDOM_ORDER]:
            curve = " | ".join(f"{value:.3f}" for value in explanation.curve(order))
            if order == RANDOM_ORDER:
                lines.append(f"| random | – | – | {curve} |")
                continue
            areas = explanation.window_areas(order)
            ratio = np.median(explanation.relevance_over_output(order))
            lines.append(
                f"| {order} | {areas.mean():+.3f} ± {areas.std():.3f} | {ratio:.3f} | {curve} |"
            )
        lines += [""] + [f"![{name}]({name})" for name in result.figures + result.signal_figures]
    return "\n".join(lines) + "\n"


def _explain_head(
    cfg: ExplainConfig,
    model: HarNet,
    head: str,
    drawn: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str],
    out: Path,
) -> HeadResult:
    network = explained_network(model, head)
    windows, truth = _windows_for(cfg, head, drawn, labels)
    print(f"explaining head {head} on {len(windows)} windows", flush=True)
    explanation = explain_windows(
        network,
        windows,
        cfg.attribution,
        cfg.masking,
        cfg.resources.chunk_size,
        cfg.resources.cpus_per_task,
    )
    accuracy = None if truth is None else float((explanation.predicted == truth).mean())
    figures = [
        _save(
            plot_masking_curves(explanation, f"{cfg.name}: head {head}, masking"),
            out / f"masking_{head}.png",
        )
    ]
    signal_figures = []
    if cfg.plots.signal_examples:
        forms = example_forms(_most_active(drawn), cfg.masking.seed)
        figure = plot_relevance_examples(
            network,
            forms,
            cfg.attribution,
            class_names,
            f"{cfg.name}: head {head}, relevance per time point summed over axes "
            f"(red: for the prediction, blue: against)",
        )
        signal_figures.append(_save(figure, out / f"relevance_{head}.png"))
    return HeadResult(head, explanation, accuracy, figures, signal_figures)


def _drawn_windows(
    cfg: ExplainConfig, model: HarNet, model_labels: list[str] | None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    if cfg.data.corpus is not None:
        return corpus_windows(cfg.data.corpus, model.window_samples), None, None
    windows, labels, names = labelled_windows(cfg.data.labelled, model.window_seconds)
    if model.n_classes is not None and len(names) != model.n_classes:
        raise ConfigError(
            f"data.labelled.path: {cfg.data.labelled.path} has {len(names)} labels, the "
            f"model {model.n_classes} classes"
        )
    if model_labels and names != model_labels:
        raise ConfigError(
            f"data.labelled.path: {cfg.data.labelled.path} has the labels {names}, the model "
            f"was trained on {model_labels}"
        )
    return windows, labels, names


def run_explain(cfg: ExplainConfig) -> ExplainResult:
    """Explain the configured model's heads on held-out windows; log everything to MLflow."""
    uri = tracking.configure(cfg.tracking.tracking_uri)
    out = Path(cfg.output_dir) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download_dir:
        model, model_labels, model_run = load_explained_model(cfg.model, Path(download_dir), uri)
    heads = _chosen_heads(cfg, model)
    drawn, labels, label_names = _drawn_windows(cfg, model, model_labels)
    if len(drawn) == 0:
        raise ConfigError("data: no windows to explain")
    runtime.connect(cfg.resources.address)
    tags = {"git_commit": tracking.git_commit(), "model": cfg.model}
    if model_run:
        tags["model_run_id"] = model_run
    with mlflow.start_run(
        experiment_id=tracking.experiment_id(EXPERIMENT, uri), run_name=cfg.name, tags=tags
    ) as run:
        mlflow.log_params(tracking.params_for_mlflow(flatten(cfg)))
        results = []
        for head in heads:
            names = _class_names(head, label_names or model_labels, model.n_classes or 2)
            result = _explain_head(cfg, model, head, drawn, labels, names, out)
            results.append(result)
            values, curves = _head_metrics(result)
            mlflow.log_metrics(values)
            for step, points in curves.items():
                mlflow.log_metrics(points, step=step)
        (out / "summary.md").write_text(summary_markdown(cfg, run.info.run_id, results))
        (out / "metrics.json").write_text(json.dumps(_curves_json(results), indent=2))
        config_text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        (out / "config.yaml").write_text(config_text)
        logged = ["summary.md", "metrics.json", "config.yaml"]
        for result in results:
            logged += result.figures
            logged += result.signal_figures if cfg.plots.log_signal_examples else []
        for name in logged:
            mlflow.log_artifact(str(out / name))
    return ExplainResult(run.info.run_id, uri, str(out), results)


def _curves_json(results: list[HeadResult]) -> dict:
    """Curves and areas per head and order, as written to ``metrics.json``."""
    return {
        result.head: {
            "fractions": result.explanation.fractions.tolist(),
            "windows": len(result.explanation.predicted),
            "accuracy": result.accuracy,
            "curves": {
                order: result.explanation.curve(order).tolist()
                for order in [RANDOM_ORDER, *result.explanation.methods]
            },
            "areas": {m: result.explanation.area(m) for m in result.explanation.methods},
        }
        for result in results
    }
