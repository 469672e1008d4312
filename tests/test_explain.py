"""Explainability: attribution methods, LRP conservation, masking faithfulness, the job."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wearssl.config import ConfigError, load_config
from wearssl.config.explain import Attribution, ExplainConfig, LabelledWindows, Masking
from wearssl.data.labelled_set import LabelledSet, write_labelled_set
from wearssl.explain.attribution import load_explained_model, run_explain
from wearssl.explain.explanation import (
    RANDOM_ORDER,
    Explanation,
    explain_chunk,
    explain_windows,
)
from wearssl.explain.masking import area_between, mask_time_points, time_scores, top_time_points
from wearssl.explain.network import explained_network, model_heads, prediction_confidence
from wearssl.explain.plots import example_forms, plot_masking_curves
from wearssl.explain.relevance import METHODS, attribute, lrp
from wearssl.explain.windows import labelled_windows, pretext_windows
from wearssl.models.harnet import CheckpointError, harnet, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
BURST = slice(60, 90)  # 30 of harnet5's 150 samples: 20 % of the window
BURST_SAMPLES = 150
BURST_PERIOD = 6  # samples: a 5 Hz oscillation at 30 Hz


@pytest.fixture(autouse=True)
def _one_thread():
    """The attribution tests are many small passes; one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _windows(n: int, length: int, seed: int) -> torch.Tensor:
    """Gravity on z plus noise: stand-in wrist windows."""
    generator = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.randn(n, 3, length, generator=generator)
    x[:, 2] += 1.0
    return x


# ---------------------------------------------------------------- the explained network


def test_explained_network_gives_each_heads_own_probabilities():
    torch.manual_seed(0)
    x = _windows(3, 150, seed=1)
    ssl = harnet(5).eval()
    classifier = harnet(5, n_classes=4).eval()
    with torch.no_grad():
        for head in model_heads(ssl):
            margins = explained_network(ssl, head)(x)
            expected = ssl(x)[head].softmax(dim=1)
            assert torch.allclose(prediction_confidence(margins), expected, atol=1e-6)
        margins = explained_network(classifier, "classifier")(x)
        logits = classifier(x)
        assert torch.allclose(prediction_confidence(margins), logits.softmax(dim=1), atol=1e-6)
        # a margin is the logit minus the mean of the other logits
        others = (logits.sum(dim=1, keepdim=True) - logits) / 3
        assert torch.allclose(margins, logits - others, atol=1e-4)


def test_explained_network_refuses_a_head_the_model_lacks_and_leaves_the_model_alone():
    ssl = harnet(5)
    with pytest.raises(ValueError, match="classifier"):
        explained_network(ssl, "classifier")
    explained_network(ssl, "aot")
    assert ssl.training and all(p.requires_grad for p in ssl.parameters())


# ---------------------------------------------------------------- attribution


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_per_sample_per_axis_relevance(method):
    torch.manual_seed(0)
    network = explained_network(harnet(5).eval(), "permute")
    x = _windows(2, 150, seed=2)
    target = torch.tensor([0, 1])
    relevance = attribute(network, x, target, method, Attribution(ig_steps=4))
    assert relevance.shape == (2, 3, 150)
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    assert not x.requires_grad


def _scaled_batch_norms(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every batch norm non-trivial statistics and scales but no net shift
    (``bias = weight * running_mean / std``), so the network stays bias-free."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=generator))
            std = (module.running_var + module.eps).sqrt()
            module.bias.data.copy_(module.weight * module.running_mean / std)


def test_lrp_conserves_relevance_and_equals_input_times_gradient_without_biases():
    """Without biases (head biases zero, batch norm scaling only) harnet is positively
    homogeneous: as epsilon goes to 0, LRP must sum to the explained output (relevance
    conserved through every residual sum; handing the full relevance to both terms of a
    sum would double it per block) and equal input x gradient (a known identity).

    Tolerance: in float64 the stabiliser (1e-12 of each layer's RMS) takes about 1e-12
    of the relevance per layer and rounding ~1e-16 per operation over ~30 layers, so
    1e-6 relative leaves a wide margin while any rule error is of order 1."""
    generator = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    model = harnet(5, n_classes=3).eval()
    _scaled_batch_norms(model, generator)
    network = explained_network(model, "classifier").double()
    for layer in network.head:
        if isinstance(layer, torch.nn.Linear):
            layer.bias.data.zero_()
    x = _windows(4, 150, seed=5).double()
    with torch.no_grad():
        output = network(x)
    target = output.argmax(dim=1)
    explained = output.gather(1, target[:, None])[:, 0]
    relevance = lrp(network, x, target, epsilon=1e-12)
    assert torch.allclose(relevance.sum(dim=(1, 2)), explained, rtol=1e-6)
    gradient_times_input = attribute(network, x, target, "input_x_gradient", Attribution())
    assert torch.allclose(relevance, gradient_times_input, rtol=1e-6, atol=1e-9)


def test_lrp_epsilon_absorbs_relevance_but_keeps_its_sign():
    """A larger epsilon only takes relevance away: the sum shrinks towards 0 without
    changing sign (on the bias-free network, where epsilon is the only sink)."""
    torch.manual_seed(6)
    network = explained_network(harnet(5, n_classes=2).eval(), "classifier")
    x = _windows(3, 150, seed=6)
    with torch.no_grad():
        target = network(x).argmax(dim=1)
    sums = [lrp(network, x, target, epsilon).sum(dim=(1, 2)) for epsilon in (1e-9, 0.1, 1.0)]
    assert (sums[0] > sums[1]).all() and (sums[1] > sums[2]).all() and (sums[2] > 0).all()


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize("fill", ["mean", "interpolate"])
def test_masking_changes_exactly_the_chosen_time_points(fill):
    x = _windows(5, 300, seed=6)
    scores = torch.rand(5, 300, generator=torch.Generator().manual_seed(7))
    masked = top_time_points(scores, 0.2)
    assert (masked.sum(dim=1) == 60).all()
    out = mask_time_points(x, masked, fill)
    kept = ~masked[:, None, :].expand_as(x)
    assert torch.equal(out[kept], x[kept])
    changed = masked[:, None, :].expand_as(x)
    assert (out[changed] != x[changed]).all()
    if fill == "mean":
        means = x.mean(dim=2, keepdim=True).expand_as(x)
        assert torch.equal(out[changed], means[changed])


def test_interpolation_fill_restores_a_straight_line_and_holds_the_ends():
    ramp = torch.linspace(-1, 2, 100).expand(2, 3, 100).clone()
    masked = torch.zeros(2, 100, dtype=torch.bool)
    masked[0, 10:40] = True  # interior gap: the line is restored
    masked[1, :5] = True  # leading gap: the first kept sample is held
    out = mask_time_points(ramp, masked, "interpolate")
    assert torch.allclose(out[0], ramp[0], atol=1e-6)
    assert torch.allclose(out[1, :, :5], ramp[1, :, 5:6].expand(3, 5))


def test_top_time_points_are_nested_and_follow_the_score():
    scores = torch.tensor([[0.1, 5.0, -2.0, 3.0, 0.0]])
    assert top_time_points(scores, 0.4).tolist() == [[False, True, False, True, False]]
    previous = torch.zeros_like(scores, dtype=torch.bool)
    for fraction in (0.0, 0.2, 0.4, 0.6, 1.0):
        current = top_time_points(scores, fraction)
        assert (previous <= current).all()
        previous = current


def test_time_scores_sum_over_axes_signed_or_absolute():
    relevance = torch.tensor([[[1.0, -2.0], [1.0, 1.0], [-3.0, 0.0]]])
    assert time_scores(relevance, "positive").tolist() == [[-1.0, -1.0]]
    assert time_scores(relevance, "absolute").tolist() == [[5.0, 3.0]]


def test_area_between_curves_is_the_mean_gap_over_the_fractions():
    fractions = np.array([0.0, 0.1, 0.25, 0.5])
    random = np.ones(4)
    assert area_between(fractions, random, 1 - fractions) == pytest.approx(0.25)
    assert area_between(fractions, random, random) == 0
    assert area_between(fractions, 1 - fractions, random) == pytest.approx(-0.25)


def test_explain_chunk_curves_start_at_the_original_confidence():
    torch.manual_seed(0)
    network = explained_network(harnet(5).eval(), "aot")
    x = _windows(3, 150, seed=8).numpy()
    masking = Masking(fractions=[0.0, 0.1, 0.5])
    result = explain_chunk(
        network, x, np.random.default_rng(0).random((3, 150)), Attribution(methods=["lrp"]), masking
    )
    assert result.relevance["lrp"].shape == (3, 3, 150)
    for order in (RANDOM_ORDER, "lrp"):
        assert result.masked_confidence[order].shape == (3, 3)
        assert np.allclose(result.masked_confidence[order][:, 0], result.confidence, atol=1e-6)


# ---------------------------------------------------------------- windows and forms


def test_pretext_windows_pair_each_window_with_its_transform():
    x = _windows(4, 300, seed=9).numpy()
    windows, labels = pretext_windows(x, "aot", transformed=True, seed=0)
    assert labels.tolist() == [0] * 4 + [1] * 4
    assert np.array_equal(windows[:4], x) and np.array_equal(windows[4:], x[:, :, ::-1])
    windows, labels = pretext_windows(x, "permute", transformed=False, seed=0)
    assert np.array_equal(windows, x) and labels.tolist() == [0] * 4


def test_masking_curves_differ_in_colour_line_style_and_marker_and_are_labelled():
    methods = ["integrated_gradients", "deeplift", "input_x_gradient", "lrp"]
    fractions = np.array([0.0, 0.1, 0.5])
    falling = np.tile(np.array([0.9, 0.6, 0.3]), (4, 1))
    explanation = Explanation(
        fractions=fractions,
        predicted=np.zeros(4, dtype=int),
        confidence=np.full(4, 0.9),
        explained_output=np.ones(4),
        relevance={method: np.zeros((4, 3, 8)) for method in methods},
        masked_confidence={order: falling for order in [RANDOM_ORDER, *methods]},
    )
    ax = plot_masking_curves(explanation, "tiny").axes[0]
    lines = ax.get_lines()
    assert len(lines) == 5
    assert len({line.get_color() for line in lines}) == 5
    assert len({line.get_marker() for line in lines}) == 5
    solid_or_dotted = [line.get_linestyle() for line in lines[1:4]]
    assert lines[0].get_linestyle() == "--" and len({"--", *solid_or_dotted}) == 4
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0] == "random order"
    assert [label.split(" ")[0] for label in legend[1:]] == methods
    assert ax.get_xlabel() and ax.get_ylabel()


def test_permuted_example_is_its_segments_reordered_at_the_marked_cuts():
    window = np.arange(3 * 300, dtype=np.float32).reshape(3, 300)
    forms = example_forms(window, seed=3)
    assert forms.names == ("original", "time-reversed", "permuted")
    permuted = forms.windows[2]
    starts = [*forms.permuted_cuts, 300]
    assert starts[0] == 0
    for start, end in zip(starts[:-1], starts[1:], strict=True):
        assert end - start >= 10  # the transform's minimum segment length
        segment = permuted[0, start:end]
        assert np.all(np.diff(segment) == 1)  # a contiguous piece of the original
    jumps = np.flatnonzero(np.diff(permuted[0]) != 1) + 1
    assert set(jumps) <= set(forms.permuted_cuts[1:].tolist())
    assert sorted(forms.permuted_sources.tolist()) == [0, 1, 2, 3]
    assert np.array_equal(forms.windows[1], window[:, ::-1])


def _labelled_set(path: Path, window_seconds: int = 5) -> None:
    subjects = np.array(["pa"] * 4 + ["pb"] * 4 + ["pc"] * 4, dtype=object)
    write_labelled_set(
        str(path),
        LabelledSet(
            name="tiny",
            window_seconds=window_seconds,
            label_names=["still", "moving"],
            windows=_windows(12, 30 * window_seconds, seed=10).numpy(),
            labels=np.arange(12) % 2,
            subjects=subjects,
            times_ms=np.arange(12, dtype=np.int64) * 1000 * window_seconds,
        ),
    )


def test_labelled_windows_keep_only_the_chosen_subjects(tmp_path):
    _labelled_set(tmp_path / "set")
    settings = LabelledWindows(path=str(tmp_path / "set"), subjects=["pb"], max_windows=None)
    windows, labels, names = labelled_windows(settings, window_seconds=5)
    assert windows.shape == (4, 3, 150) and labels.tolist() == [0, 1, 0, 1]
    assert names == ["still", "moving"]
    capped = LabelledWindows(path=str(tmp_path / "set"), max_windows=5)
    assert len(labelled_windows(capped, window_seconds=5)[0]) == 5
    with pytest.raises(ConfigError, match="data.labelled.subjects"):
        labelled_windows(settings.model_copy(update={"subjects": ["pz"]}), window_seconds=5)
    with pytest.raises(ConfigError, match="data.labelled.path"):
        labelled_windows(settings, window_seconds=10)


def test_a_published_state_dict_is_refused_naming_the_model_key(tmp_path):
    path = tmp_path / "published.mdl"
    torch.save({f"module.{k}": v for k, v in harnet(5).state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="^model: .*wearssl checkpoint"):
        load_explained_model(str(path), tmp_path, "sqlite:///unused.db")


# ---------------------------------------------------------------- configuration


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_errors_name_the_key(tmp_path):
    base = "model: m.pt\ndata:\n  corpus:\n    path: c\n"
    good = load_config(ExplainConfig, _write(tmp_path / "ok.yaml", base))
    assert good.masking.fractions[0] == 0.0 and good.heads is None
    with pytest.raises(ConfigError, match="attribution.ig_stepz"):
        load_config(ExplainConfig, tmp_path / "ok.yaml", ["attribution.ig_stepz=3"])
    with pytest.raises(ConfigError, match="attribution.methods"):
        load_config(ExplainConfig, tmp_path / "ok.yaml", ["attribution.methods=[shap]"])
    with pytest.raises(ConfigError, match="masking.fractions"):
        load_config(ExplainConfig, tmp_path / "ok.yaml", ["masking.fractions=[0.2,0.1]"])
    with pytest.raises(ConfigError, match="heads"):
        load_config(ExplainConfig, tmp_path / "ok.yaml", ["heads=[aot,aot]"])
    with pytest.raises(ConfigError, match="exactly one of 'corpus' and 'labelled'"):
        load_config(ExplainConfig, tmp_path / "ok.yaml", ["data.labelled.path=x"])
    with pytest.raises(ConfigError, match="'model'"):
        load_config(ExplainConfig, _write(tmp_path / "no_model.yaml", "data: {corpus: {path: c}}"))


def test_quickstart_config_is_valid():
    cfg = load_config(ExplainConfig, REPO / "configs" / "explain" / "quickstart.yaml")
    assert cfg.data.corpus is not None and cfg.heads


# ---------------------------------------------------------------- a model with a known answer


def _burst_windows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise around gravity; odd windows (class 1) carry a 1.5 g, 5 Hz burst in samples 60-90."""
    generator = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 3, BURST_SAMPLES, generator=generator)
    x[:, 2] += 1.0
    labels = torch.arange(n) % 2
    time = torch.arange(BURST.stop - BURST.start, dtype=torch.float32)
    phase = 2 * math.pi * torch.rand(n, 3, 1, generator=generator)
    burst = 1.5 * torch.sin(2 * math.pi * time / BURST_PERIOD + phase)
    x[labels == 1, :, BURST] += burst[labels == 1]
    return x, labels


def _recalibrate_batch_norm(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Running statistics as the plain average over ``x``: after a handful of steps the
    default momentum leaves them far from the training batches' and eval mode fails."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.fixture(scope="module")
def burst_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    x, y = _burst_windows(192, seed=0)
    model = harnet(5, n_classes=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            batch = order[start : start + 32]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        _recalibrate_batch_norm(model, x)
        check_x, check_y = _burst_windows(64, seed=1)
        with torch.no_grad():
            accuracy = (model(check_x).argmax(dim=1) == check_y).float().mean()
        if accuracy > 0.95:
            return model
    pytest.fail(f"the burst classifier did not learn (held-out accuracy {accuracy:.2f})")


@pytest.mark.slow
def test_relevance_concentrates_on_the_burst_and_masking_it_is_faithful(
    burst_classifier, ray_local
):
    """The default methods, on Ray, for windows whose class is the burst: most relevance
    lies on the burst, and removing the top-ranked samples (the burst's size and a bit
    more) flips the prediction where removing as many random samples does not."""
    x, y = _burst_windows(64, seed=2)
    bursts = x[y == 1].numpy()
    network = explained_network(burst_classifier, "classifier")
    attribution = Attribution(ig_steps=16)
    masking = Masking()
    explanation = explain_windows(network, bursts, attribution, masking, chunk_size=16)
    assert (explanation.predicted == 1).all()
    beyond_burst = masking.fractions.index(0.3)
    assert explanation.curve(RANDOM_ORDER)[beyond_burst] > 0.75
    for method in attribution.methods:
        mass = np.abs(explanation.relevance[method]).sum(axis=1)
        inside = np.median(mass[:, BURST].sum(axis=1) / mass.sum(axis=1))
        assert inside > 0.5, f"{method}: {inside:.2f} of the relevance on the burst"
        assert explanation.curve(method)[beyond_burst] < 0.25, method
        assert explanation.area(method) > 0.3, method


@pytest.mark.slow
def test_job_writes_figures_summary_and_an_mlflow_run(
    tmp_path, synthetic_corpus, sqlite_tracking, ray_local
):
    torch.manual_seed(0)
    checkpoint = tmp_path / "harnet.pt"
    save_checkpoint(checkpoint, harnet(10), window_seconds=10)
    cfg = load_config(
        ExplainConfig,
        overrides=[
            f"model={checkpoint}",
            f"output_dir={tmp_path / 'out'}",
            "name=tiny",
            "heads=[aot]",
            f"data.corpus.path={synthetic_corpus}",
            "data.corpus.windows_per_subject=3",
            "attribution.methods=[input_x_gradient,lrp]",
            "masking.fractions=[0,0.1,0.5]",
            "resources.chunk_size=4",
        ],
    )
    result = run_explain(cfg)
    out = tmp_path / "out" / "tiny"
    assert {"summary.md", "metrics.json", "masking_aot.png", "relevance_aot.png"} <= {
        p.name for p in out.iterdir()
    }
    assert "| lrp |" in (out / "summary.md").read_text()
    run = mlflow.MlflowClient(sqlite_tracking).get_run(result.run_id)
    assert run.data.params["attribution.methods"] == "['input_x_gradient', 'lrp']"
    assert math.isfinite(run.data.metrics["area/aot.lrp"])
    assert run.data.metrics["windows/aot.count"] == 6  # 3 held-out windows, each also reversed
    groups = {name.split("/")[0] for name in run.data.metrics}
    assert groups == {"windows", "area", "relevance", "masking"}
    history = mlflow.MlflowClient(sqlite_tracking).get_metric_history(
        result.run_id, "masking/aot.random.confidence"
    )
    assert sorted(m.step for m in history) == [0, 100, 500]
    tags = run.data.tags
    assert "aot" in tags["mlflow.note.content"] and "lrp" in tags["mlflow.note.content"]
    started = datetime.fromisoformat(tags["started_at"])
    assert started.tzinfo is not None
    assert started <= datetime.fromisoformat(tags["finished_at"])
    assert tags["mlflow.source.name"] == "wearssl explain"
    assert tags["mlflow.source.type"] == "JOB"
    logged = {a.path for a in mlflow.MlflowClient(sqlite_tracking).list_artifacts(result.run_id)}
    assert "masking_aot.png" in logged
    assert "relevance_aot.png" not in logged  # it pictures a raw window: local only by default
