"""The ablation's figure: downstream F1 against the swept quantity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from wearssl.ablate.points import REFERENCE
from wearssl.config.ablate import COUNT_KINDS, AblateConfig

REFERENCE_STYLE = {"scratch": ("dimgray", "--"), "forest": ("darkgoldenrod", ":")}
AXIS_TITLE = {
    "unlabelled_subjects": "unlabelled subjects in pre-training",
    "data_ratio": "share of each subject-day used in pre-training",
    "labelled_subjects": "labelled training subjects per fold",
    "weighted_sampling": "std-weighted sampling in pre-training",
    "tasks": "pretext tasks",
}


def band(mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean +- SD band of an F1, clipped to the scores' range [0, 1]."""
    return np.clip(mean - sd, 0.0, 1.0), np.clip(mean + sd, 0.0, 1.0)


def plot_sweep(summary: pd.DataFrame, cfg: AblateConfig, out: Path) -> Path:
    """:func:`sweep_figure` saved to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_figure(summary, cfg).savefig(out, dpi=110)
    return out


def sweep_figure(summary: pd.DataFrame, cfg: AblateConfig) -> Figure:
    """Downstream F1 against the swept quantity: a panel per dataset, a line per arm (and
    series value) with its +-SD band; reference arms as horizontal lines and bands. Every
    band is in the legend and clipped to [0, 1]."""
    kind = cfg.sweep.kind
    datasets = list(dict.fromkeys(summary["dataset"]))
    fig = Figure(figsize=(5.5 * len(datasets), 4.2))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    points = summary[summary["x_label"] != REFERENCE]
    categorical = kind not in COUNT_KINDS and kind != "data_ratio"
    labels = list(dict.fromkeys(points["x_label"]))
    for ax, dataset in zip(axes, datasets, strict=True):
        rows = points[points["dataset"] == dataset]
        for (arm, series), line in rows.groupby(["arm", "series"], sort=False):
            xs = (
                [labels.index(x) for x in line["x_label"]]
                if categorical
                else line["x"].astype(float)
            )
            mean, sd = line["f1_mean"].to_numpy(), line["f1_sd"].to_numpy()
            name = f"{arm}, {cfg.sweep.series.kind} {series}" if series else arm
            (drawn,) = ax.plot(xs, mean, marker="o", label=name)
            low, high = band(mean, sd)
            ax.fill_between(
                xs, low, high, color=drawn.get_color(), alpha=0.15, label=f"{name} ± SD"
            )
        reference = summary[(summary["x_label"] == REFERENCE) & (summary["dataset"] == dataset)]
        for row in reference.itertuples():
            colour, style = REFERENCE_STYLE[row.arm]
            ax.axhline(
                row.f1_mean, color=colour, linestyle=style, label=f"{row.arm} (no pre-training)"
            )
            low, high = band(np.array([row.f1_mean]), np.array([row.f1_sd]))
            ax.axhspan(
                low[0], high[0], color=colour, alpha=0.08, label=f"{row.arm} (no pre-training) ± SD"
            )
        if categorical:
            ax.set_xticks(range(len(labels)), labels, rotation=20)
        elif kind in COUNT_KINDS:
            ax.set_xscale("log")
            ax.minorticks_off()
            ticks = sorted(set(points["x"].astype(float)))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(AXIS_TITLE[kind])
        ax.set_ylabel("macro F1 (mean ± SD over test subjects)")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
    fig.suptitle(f"{cfg.name}: downstream F1 vs {kind.replace('_', ' ')}")
    fig.tight_layout()
    return fig
