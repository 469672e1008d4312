"""The learning curves of a pre-training run (``curves.png``), drawn from its MLflow history.

Drawn from what the store holds, not from one attempt's memory, so a resumed run's figure
shows every epoch. Matplotlib's Agg canvas is used directly: no display, no global state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

CURVES_ARTIFACT = "curves.png"
LOSS_KEYS = ("train/loss", "val/loss")


def accuracy_keys(metric_keys: list[str]) -> list[str]:
    """The held-out task accuracies among a run's metric keys (``val/<task>_acc``)."""
    return sorted(k for k in metric_keys if k.startswith("val/") and k.endswith("_acc"))


def curves_figure(history: dict[str, list[tuple[int, float]]]) -> Figure:
    """Loss (train and held-out) and held-out task accuracy by epoch; ``history`` maps a
    metric key to its (step, value) points. Epochs are shown counted from 1."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss, accuracy = figure.subplots(1, 2)
    for key in LOSS_KEYS:
        _plot(loss, history.get(key, []), key)
    for key in accuracy_keys(list(history)):
        _plot(accuracy, history[key], key.removeprefix("val/").removesuffix("_acc"))
    accuracy.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    loss.set(title="pretext loss", xlabel="epoch", ylabel="cross-entropy")
    accuracy.set(title="held-out task accuracy", xlabel="epoch", ylabel="accuracy")
    for axes in (loss, accuracy):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
        axes.grid(alpha=0.3)
    return figure


def _plot(axes, points: list[tuple[int, float]], label: str) -> None:
    points = sorted(points)
    axes.plot([s + 1 for s, _ in points], [v for _, v in points], marker="o", label=label)


def run_history(client: mlflow.MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """The losses' and held-out accuracies' (step, value) points the run holds."""
    keys = list(client.get_run(run_id).data.metrics)
    wanted = [k for k in LOSS_KEYS if k in keys] + accuracy_keys(keys)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in wanted
    }


def log_curves(client: mlflow.MlflowClient, run_id: str) -> None:
    """Draw the run's learning curves and log them as its ``curves.png`` artifact."""
    figure = curves_figure(run_history(client, run_id))
    with tempfile.TemporaryDirectory() as staging:
        path = Path(staging) / CURVES_ARTIFACT
        figure.savefig(path, dpi=100)
        client.log_artifact(run_id, str(path))
