"""The explanation's figures: relevance over example windows, masking curves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from wearssl.config.explain import (
    Attribution,
)
from wearssl.explain.explanation import RANDOM_ORDER, Explanation
from wearssl.explain.network import prediction_confidence
from wearssl.explain.relevance import attribute
from wearssl.pretrain.transforms import (
    N_SEGMENTS,
    draw_segment_lengths,
    draw_segment_orders,
    reverse_time,
    segment_permutation_index,
)

AXES = ("x", "y", "z")


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


# One style per attribution method: a colour of the Okabe-Ito palette (told apart with
# colour-blindness too), a line style and a marker, so curves stay apart in grey print and
# where they overlap. The random-order reference is black, dashed, with circles.
METHOD_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
METHOD_LINESTYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
METHOD_MARKERS = ("s", "^", "D", "v")
RANDOM_STYLE = {"color": "black", "linestyle": "--", "marker": "o"}


def method_style(index: int) -> dict[str, object]:
    """Colour, line style and marker of the ``index``-th method's masking curve: the four
    methods (:data:`wearssl.config.explain.MethodName`) share none of them."""
    return {
        "color": METHOD_COLOURS[index % len(METHOD_COLOURS)],
        "linestyle": METHOD_LINESTYLES[index % len(METHOD_LINESTYLES)],
        "marker": METHOD_MARKERS[index % len(METHOD_MARKERS)],
    }


def plot_masking_curves(explanation: Explanation, title: str) -> Figure:
    """Mean confidence in the original prediction against the fraction of time points
    removed, most relevant first, per method, and in random order (the reference)."""
    figure = Figure(figsize=(8.5, 4), layout="tight")
    ax = figure.subplots()
    percent = 100 * explanation.fractions
    ax.plot(
        percent,
        explanation.curve(RANDOM_ORDER),
        markersize=4,
        linewidth=1.5,
        label="random order",
        **RANDOM_STYLE,
    )
    for index, method in enumerate(explanation.methods):
        ax.plot(
            percent,
            explanation.curve(method),
            markersize=4,
            linewidth=1.5,
            label=f"{method} (area {explanation.area(method):+.3f})",
            **method_style(index),
        )
    ax.set_xlabel("time points removed, most relevant first (%)")
    ax.set_ylabel("mean confidence in the original prediction")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    # beside the axes: inside, it would cover curves that stay high
    ax.legend(
        fontsize=8,
        title="removal order",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
    )
    ax.set_title(title, fontsize=10)
    return figure
