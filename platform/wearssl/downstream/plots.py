"""The evaluation's figures: a confusion matrix per arm and the UMAP of raw windows,
untrained and pre-trained features."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from wearssl.data.labelled_set import LabelledSet
from wearssl.downstream.results import TrialRun, read_predictions
from wearssl.models.harnet import harnet


def confusion_figure(predictions: pd.DataFrame, label_names: list[str], title: str) -> Figure:
    """Confusion matrix coloured by the share of each true class (rows sum to 1), each
    cell showing its count of windows."""
    k = len(label_names)
    counts = confusion_matrix(predictions["y_true"], predictions["y_pred"], labels=list(range(k)))
    totals = counts.sum(axis=1, keepdims=True)
    matrix = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = 1.2 + 0.6 * k
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    for i in range(k):
        for j in range(k):
            colour = "white" if matrix[i, j] > 0.5 else "black"
            ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(k), label_names, rotation=45, ha="right")
    ax.set_yticks(range(k), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    return fig


def confusion_plots(
    runs: list[TrialRun],
    dataset: str,
    label_names: list[str],
    out_dir: Path,
    f1_by_arm: dict[str, float],
) -> list[Path]:
    """One matrix per arm over all its (selected) trials' test windows, titled with the
    arm's mean macro F1 over test subjects (``f1_by_arm``)."""
    paths = []
    arms = sorted({r.record["arm"] for r in runs if r.record["dataset"] == dataset})
    for arm in arms:
        frames = [
            read_predictions(r.record["predictions"])
            for r in runs
            if r.record["dataset"] == dataset and r.record["arm"] == arm
        ]
        predictions = pd.concat(frames, ignore_index=True)
        title = f"{dataset}: {arm}, macro F1 {f1_by_arm[arm]:.3f}"
        out = out_dir / f"confusion-{arm}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        confusion_figure(predictions, label_names, title).savefig(out, dpi=120)
        paths.append(out)
    return paths


@torch.no_grad()
def network_features(
    model: torch.nn.Module, windows: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    model.eval()
    return torch.cat(
        [
            model.features(torch.from_numpy(windows[start : start + batch_size]))
            for start in range(0, len(windows), batch_size)
        ]
    ).numpy()


def umap_title(dataset: str, drawn: int, asked: int) -> str:
    """The UMAP figure's title: how many windows it drew, and that it is fewer than asked
    when the set holds fewer."""
    if drawn < asked:
        return f"{dataset}: UMAP of {drawn:,} windows (all the set holds; {asked:,} asked)"
    return f"{dataset}: UMAP of {drawn:,} windows"


def umap_figure(data: LabelledSet, pretrained: Path | None, max_windows: int, seed: int) -> Figure:
    """UMAP of flattened raw windows, untrained harnet features and pre-trained features
    (when given), on at most ``max_windows`` windows drawn at random, coloured by activity."""
    import umap

    rng = np.random.default_rng(seed)
    chosen = np.sort(
        rng.choice(len(data.labels), min(max_windows, len(data.labels)), replace=False)
    )
    windows, labels = data.windows[chosen], data.labels[chosen]
    torch.manual_seed(seed)
    panels = {
        "raw windows (flattened)": windows.reshape(len(windows), -1),
        "untrained harnet features": network_features(harnet(data.window_seconds), windows),
    }
    if pretrained is not None:
        panels["pre-trained harnet features"] = network_features(
            harnet(data.window_seconds, pretrained=pretrained), windows
        )
    fig = Figure(figsize=(5 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colours = matplotlib.colormaps["tab10"]
    for ax, (title, values) in zip(axes[0], panels.items(), strict=True):
        with warnings.catch_warnings():
            # a fixed random_state makes UMAP single-threaded, and it says so every time
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            embedding = umap.UMAP(n_neighbors=15, random_state=seed).fit_transform(values)
        for index, name in enumerate(data.label_names):
            mask = labels == index
            ax.scatter(*embedding[mask].T, s=4, color=colours(index % 10), label=name)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(markerscale=3, fontsize=8, loc="best")
    fig.suptitle(umap_title(data.name, len(chosen), max_windows))
    fig.tight_layout()
    return fig


def umap_plot(
    data: LabelledSet, pretrained: Path | None, max_windows: int, seed: int, out: Path
) -> Path:
    """:func:`umap_figure` saved to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    umap_figure(data, pretrained, max_windows, seed).savefig(out, dpi=110)
    return out
