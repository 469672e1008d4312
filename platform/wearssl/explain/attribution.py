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

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import yaml
from matplotlib.figure import Figure

from wearssl.config import ConfigError, flatten
from wearssl.config.explain import (
    ExplainConfig,
)
from wearssl.data import corpus
from wearssl.explain.explanation import RANDOM_ORDER, Explanation, explain_windows
from wearssl.explain.network import CLASSIFIER_HEAD, default_heads, explained_network, model_heads
from wearssl.explain.plots import example_forms, plot_masking_curves, plot_relevance_examples
from wearssl.explain.windows import corpus_windows, labelled_windows, pretext_windows
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.infra.mlflow_runs import job_tags
from wearssl.models.export import load_classifier
from wearssl.models.harnet import (
    CheckpointError,
    HarNet,
)
from wearssl.models.resolve import resolve_weights

PRETEXT_CLASS_NAMES: dict[str, tuple[str, str]] = {
    "aot": ("forward", "reversed"),
    "permute": ("in order", "permuted"),
    "time_warp": ("unwarped", "warped"),
    "scale": ("unscaled", "scaled"),
}
EXPERIMENT = "explain"


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
    step the fraction of time points removed in per mille. Names are grouped, as MLflow's
    chart sections show them: ``windows/`` (what was explained), ``area/`` (faithfulness),
    ``relevance/`` (conservation) and ``masking/`` (the curves)."""
    explanation, head = result.explanation, result.head
    values = {f"windows/{head}.count": float(len(explanation.predicted))}
    if result.accuracy is not None:
        values[f"windows/{head}.accuracy"] = result.accuracy
    values[f"windows/{head}.confidence_mean"] = float(explanation.confidence.mean())
    curves: dict[int, dict[str, float]] = {}
    for order in [RANDOM_ORDER, *explanation.methods]:
        for fraction, value in zip(explanation.fractions, explanation.curve(order), strict=True):
            step = curves.setdefault(round(1000 * fraction), {})
            step[f"masking/{head}.{order}.confidence"] = float(value)
    for method in explanation.methods:
        areas = explanation.window_areas(method)
        values[f"area/{head}.{method}"] = float(areas.mean())
        values[f"area/{head}.{method}.sd"] = float(areas.std())
        values[f"relevance/{head}.{method}.over_output_median"] = float(
            np.median(explanation.relevance_over_output(method))
        )
    return values, curves


def run_description(cfg: ExplainConfig, heads: list[str], windows: int) -> str:
    """The run's description in the MLflow UI (Markdown): what was explained, how, where."""
    figures = ", ".join(f"masking_{head}.png" for head in heads)
    return (
        f"Relevance of the heads {', '.join(heads)} of `{cfg.model}` on {windows} drawn windows "
        f"({', '.join(cfg.attribution.methods)}), and its faithfulness: the confidence "
        "left as the most relevant time points are removed, against a random order "
        f"({figures}; metrics area/ and masking/). Figures and summary: "
        f"{Path(cfg.output_dir) / cfg.name}."
    )


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
    cluster = runtime.connect(cfg.resources.address)
    runtime.require_task_fits("resources.cpus_per_task", cfg.resources.cpus_per_task, cluster)
    tags = {
        **job_tags(cluster, EXPERIMENT),
        "model": cfg.model,
        tracking.DESCRIPTION_TAG: run_description(cfg, heads, len(drawn)),
        tracking.STARTED_AT_TAG: tracking.utc_timestamp(),
    }
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
        mlflow.set_tag(tracking.FINISHED_AT_TAG, tracking.utc_timestamp())
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
