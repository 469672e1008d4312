"""Downstream evaluation: weights specs, config, trial plan, scores from predictions,
export; on Ray Tune (slow): every arm on a learnable synthetic set, MLflow runs, resume."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import ray
import torch
import yaml
from ray import tune
from sklearn.metrics import f1_score

from test_finetune import LEARNABLE_LABELS, learnable_set, one_torch_thread
from wearssl.cli import main
from wearssl.config import ConfigError, load_config
from wearssl.config.evaluate import EvaluateConfig, Export, Finetune, Protocol
from wearssl.data.labelled_set import write_labelled_set
from wearssl.data.privacy import KEY_ENV
from wearssl.data.splits import Fold, protocol_folds
from wearssl.data.synthetic import synth_recording
from wearssl.downstream import evaluate_trials
from wearssl.downstream.datasets import DatasetPlan, check_weights_fit
from wearssl.downstream.evaluate import run_evaluation
from wearssl.downstream.evaluate_trials import decisive_inputs, score_line, trial_folder
from wearssl.downstream.export import (
    CHALLENGER,
    CHAMPION,
    SCORE_TAG,
    ModelCard,
    alias_for,
    export_best_model,
    register_export,
)
from wearssl.downstream.finetune import train_transfer_source
from wearssl.downstream.plots import confusion_figure, confusion_plots, umap_figure, umap_title
from wearssl.downstream.results import (
    TrialRun,
    predictions_table,
    scores_from_predictions,
    select_runs,
)
from wearssl.downstream.trial import TrialSettings, TrialSpec, trial_specs
from wearssl.downstream.tune_run import TrialsFailed, experiment_name, failure_line
from wearssl.infra.files import write_parquet
from wearssl.infra.tune import TrialLines
from wearssl.models.export import CLASSIFIER_FILE
from wearssl.models.harnet import CheckpointError, harnet, load_checkpoint, save_checkpoint
from wearssl.models.hmm import checkpoint_hmm
from wearssl.models.resolve import (
    CHECKPOINT_ARTIFACT,
    WeightsError,
    parse_model_ref,
    resolve_weights,
)
from wearssl.predict.outputs import INFO_SUFFIX
from wearssl.predict.recordings import EXIT_OK

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- weights specs


def marked_model(value: float) -> torch.nn.Module:
    """harnet5 whose first convolution is filled with ``value``, to tell files apart."""
    model = harnet(5)
    with torch.no_grad():
        model.feature_extractor.layer1[0].weight.fill_(value)
    return model


def first_weight(path: Path) -> float:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    key = next(k for k in state if k.endswith("feature_extractor.layer1.0.weight"))
    return float(state[key].flatten()[0])


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A local MLflow store with two runs, each logging a checkpoint the way the
    pre-training job does, both registered under one name; version 1 has an alias."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("weights", artifact_location=(root / "art").as_uri())
    run_ids = []
    for version, value in ((1, 0.25), (2, 0.5)):
        model = marked_model(value)
        path = root / f"v{version}" / "harnet.pt"
        save_checkpoint(path, model, window_seconds=5)
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_artifact(str(path), artifact_path="checkpoint")
            mlflow.pytorch.log_model(
                model,
                name="model",
                registered_model_name="test-ssl",
                pip_requirements=["torch"],
                serialization_format="pickle",
            )
            run_ids.append(run.info.run_id)
    mlflow.MlflowClient(uri).set_registered_model_alias("test-ssl", "champion", "1")
    yield {"uri": uri, "runs": run_ids, "experiment": experiment}
    mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("models:/test-ssl/1", 0.25),
        ("models:/test-ssl/2", 0.5),
        ("models:/test-ssl/latest", 0.5),
        ("models:/test-ssl@champion", 0.25),
    ],
)
def test_registered_model_specs_resolve_to_their_checkpoint(registry, tmp_path, spec, expected):
    resolved = resolve_weights(spec, tmp_path, registry["uri"])
    assert resolved.path.is_file() and resolved.path.is_relative_to(tmp_path)
    assert first_weight(resolved.path) == expected
    assert resolved.run_id == registry["runs"][0 if expected == 0.25 else 1]
    harnet(5, n_classes=3, pretrained=resolved.path)


def test_run_specs_resolve_to_the_run_checkpoint(registry, tmp_path):
    run_id = registry["runs"][1]
    resolved = resolve_weights(f"runs:/{run_id}", tmp_path, registry["uri"])
    assert first_weight(resolved.path) == 0.5
    explicit = resolve_weights(f"runs:/{run_id}/{CHECKPOINT_ARTIFACT}", tmp_path, registry["uri"])
    assert first_weight(explicit.path) == 0.5


def test_local_files_resolve_as_they_are(tmp_path):
    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, marked_model(0.75), window_seconds=5)
    published = tmp_path / "harnet5.mdl"
    state = marked_model(0.125).state_dict()
    torch.save({f"module.{key}": value for key, value in state.items()}, published)
    for path, value in ((ours, 0.75), (published, 0.125)):
        resolved = resolve_weights(str(path), tmp_path / "downloads")
        assert resolved.path == path and resolved.run_id is None
        model = harnet(5, pretrained=resolved.path)
        assert float(model.feature_extractor.layer1[0].weight.detach().flatten()[0]) == value


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("models:/no-such-model/1", "not found in the MLflow registry"),
        ("models:/test-ssl@no-such-alias", "not found in the MLflow registry"),
        ("models:/test-ssl", "expected models:/NAME/VERSION"),
        ("runs:/0123456789abcdef", "cannot download"),
        ("s3://bucket/harnet.pt", "unsupported scheme"),
        ("/no/such/file.pt", "no such file"),
    ],
)
def test_unresolvable_specs_are_clear_errors(registry, tmp_path, spec, message):
    with pytest.raises(WeightsError, match=message) as caught:
        resolve_weights(spec, tmp_path, registry["uri"])
    assert spec in str(caught.value)


def test_model_refs_parse():
    assert parse_model_ref("models:/a-b/12").version == "12"
    assert parse_model_ref("models:/a@prod").alias == "prod"


# ---------------------------------------------------------------- config and plan


def config_dict(tmp_path: Path, **changes) -> dict:
    base = {
        "name": "t",
        "output_dir": str(tmp_path / "out"),
        "datasets": [{"name": "target", "path": str(tmp_path / "target")}],
        "arms": ["forest", "scratch"],
    }
    return {**base, **changes}


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config_dict(tmp_path)))
    assert load_config(EvaluateConfig, path).arms == ["forest", "scratch"]
    with pytest.raises(ConfigError, match="unknown key 'finetune.learning_rate'"):
        load_config(EvaluateConfig, path, ["finetune.learning_rate=1"])
    with pytest.raises(ConfigError, match="arms.0"):
        load_config(EvaluateConfig, path, ["arms=[linear]"])
    with pytest.raises(ConfigError, match="need 'pretrained'"):
        load_config(EvaluateConfig, path, ["arms=[frozen]"])
    with pytest.raises(ConfigError, match="needs 'transfer_source'"):
        load_config(EvaluateConfig, path, ["arms=[transfer]"])
    with pytest.raises(ConfigError, match="finetune.lr"):
        load_config(EvaluateConfig, path, ["finetune.lr=0"])
    arms_twice = "key 'arms': Value error, arms listed twice: ['scratch', 'forest', 'scratch']"
    with pytest.raises(ConfigError, match=re.escape(arms_twice)):
        load_config(EvaluateConfig, path, ["arms=[scratch, forest, scratch]"])
    names_twice = "key 'datasets': Value error, dataset names listed twice: ['a', 'a']"
    with pytest.raises(ConfigError, match=re.escape(names_twice)):
        load_config(EvaluateConfig, path, ["datasets=[{name: a, path: a}, {name: a, path: b}]"])


def test_shipped_configs_are_valid():
    for path in sorted((REPO / "configs" / "evaluate").glob("*.yaml")):
        cfg = load_config(EvaluateConfig, path)
        assert cfg.datasets and cfg.arms


SETTINGS = TrialSettings(Protocol(), Finetune(), n_estimators=10)


def forest_spec(path: str = "/data/target", fold: str = "loso-2", index: int = 2) -> TrialSpec:
    return TrialSpec(DatasetPlan("target", path), "forest", fold, index, 0, SETTINGS)


def test_every_arm_fold_and_seed_of_a_dataset_is_one_trial():
    folds = [Fold(f"f{i}", *(np.arange(1),) * 3) for i in range(3)]
    plan = DatasetPlan("a", "/data/a")
    init = {"finetune": "/weights.pt"}
    specs = trial_specs(plan, folds, ["forest", "finetune"], [0, 1], SETTINGS, init)
    assert len(specs) == 3 * 2 * 2
    assert len({spec.key for spec in specs}) == len(specs)
    assert {spec.init for spec in specs if spec.arm == "finetune"} == {"/weights.pt"}
    assert {spec.init for spec in specs if spec.arm == "forest"} == {None}


def test_experiment_name_follows_what_decides_the_results(tmp_path):
    write_labelled_set(str(tmp_path / "target"), learnable_set(n_subjects=3, per_class=2))
    specs = [forest_spec(str(tmp_path / "target"), "loso-0", 0)]
    name = experiment_name("t", decisive_inputs(specs))
    assert name.startswith("t-") and name == experiment_name("t", decisive_inputs(specs))
    faster = replace(SETTINGS, finetune=Finetune(lr=1e-3))
    changed = [replace(spec, settings=faster) for spec in specs]
    assert experiment_name("t", decisive_inputs(changed)) != name
    threads = [replace(spec, settings=replace(SETTINGS, threads=4)) for spec in specs]
    assert experiment_name("t", decisive_inputs(threads)) == name
    write_labelled_set(str(tmp_path / "target"), learnable_set(n_subjects=3, per_class=3))
    assert experiment_name("t", decisive_inputs(specs)) != name


def test_a_failed_trial_is_named_with_its_error_even_without_a_config():
    spec = forest_spec()
    by_folder = {trial_folder(spec): spec}
    # what Tune gives for a trial whose actor failed before its first report
    failed = tune.Result(
        metrics={"trial_id": "f_00002"},
        checkpoint=None,
        error=RuntimeError("Traceback (most recent call last):\nValueError: bad window"),
        path=f"/storage/experiment/{trial_folder(spec)}",
    )
    assert failed.config is None
    assert failure_line(failed, by_folder) == "target/forest/loso-2/s0: ValueError: bad window"
    # a folder not named after a trial: the trial's config, else the folder itself
    configured = replace(failed, metrics={"config": {"trial": spec.key}}, path="/s/e/f_00002")
    assert failure_line(configured, by_folder).startswith("target/forest/loso-2/s0: ")
    bare = replace(failed, error=RuntimeError(), path="/s/e/f_00002")
    assert failure_line(bare, by_folder) == "/s/e/f_00002: RuntimeError"


def test_window_length_mismatch_names_dataset_and_both_lengths(tmp_path):
    path = tmp_path / "harnet10.pt"
    save_checkpoint(path, harnet(10), window_seconds=10)
    data = learnable_set(n_subjects=3, per_class=2, window_seconds=5)
    with pytest.raises(CheckpointError) as caught:
        check_weights_fit(data, "the pre-trained weights", path)
    message = str(caught.value)
    assert data.name in message and "5-s windows" in message and "10-s" in message


# ---------------------------------------------------------------- scores, selection, export


def fake_runs(tmp_path: Path) -> tuple[list[TrialRun], dict]:
    """Two arms x one fold x two seeds with known predictions and validation losses."""
    data = learnable_set(n_subjects=4, per_class=3)
    fold = protocol_folds(data.subjects)[0]
    rng = np.random.default_rng(0)
    runs, truth = [], {}
    for arm, seed in itertools.product(("forest", "scratch"), (0, 1)):
        spec = {"dataset": "d", "arm": arm, "fold": fold.name, "fold_index": 0, "seed": seed}
        probabilities = rng.dirichlet(np.ones(3), size=len(fold.test)).astype(np.float32)
        path = tmp_path / f"{arm}-{seed}.parquet"
        write_parquet(path, predictions_table(spec, data, fold, probabilities))
        record = {**spec, "key": f"d/{arm}/{fold.name}/s{seed}", "predictions": str(path)}
        record["val_loss"] = 1.0 + seed if arm == "forest" else 2.0 - seed
        runs.append(TrialRun(record, None))
        truth[(arm, seed)] = (
            data.labels[fold.test],
            probabilities.argmax(1),
            data.subjects[fold.test],
        )
    return runs, truth


def sklearn_subject_f1(y_true, y_pred, subjects) -> list[float]:
    return [
        f1_score(
            y_true[subjects == s],
            y_pred[subjects == s],
            labels=[0, 1, 2],
            average="macro",
            zero_division=0,
        )
        for s in np.unique(subjects)
    ]


def test_scores_are_recomputed_from_saved_predictions(tmp_path):
    runs, truth = fake_runs(tmp_path)
    scores = scores_from_predictions(select_runs(runs, "all"), {"d": 3}, "all")
    assert set(scores["selection"]) == {"all"}
    for (arm, seed), (y_true, y_pred, subjects) in truth.items():
        rows = scores[(scores["arm"] == arm) & (scores["seed"] == seed)].sort_values("subject")
        assert np.allclose(rows["f1_macro"], sklearn_subject_f1(y_true, y_pred, subjects))


def test_best_selection_keeps_the_lowest_validation_loss_seed(tmp_path):
    runs, _ = fake_runs(tmp_path)
    best = {(r.record["arm"], r.record["seed"]) for r in select_runs(runs, "best")}
    assert best == {("forest", 0), ("scratch", 1)}
    scores = scores_from_predictions(select_runs(runs, "best"), {"d": 3}, "best")
    assert set(scores["selection"]) == {"best"}
    assert set(zip(scores["arm"], scores["seed"], strict=True)) == best


def export_candidates(tmp_path: Path) -> tuple:
    """A 4-subject learnable set "d", its folds "f0" and "f1", three neural trials' models
    (the best: finetune on f1) and a summary in which the forest scores best."""
    data = replace(learnable_set(n_subjects=4, per_class=3), name="d")
    folds = [replace(fold, name=f"f{i}") for i, fold in enumerate(protocol_folds(data.subjects))]
    runs = []
    for arm, fold, loss in (
        ("scratch", "f0", 0.9),
        ("finetune", "f0", 0.7),
        ("finetune", "f1", 0.4),
    ):
        folder = tmp_path / f"{arm}-{fold}"
        torch.manual_seed(int(loss * 10))
        save_checkpoint(
            folder / CLASSIFIER_FILE,
            harnet(5, n_classes=3),
            window_seconds=5,
            labels=LEARNABLE_LABELS,
        )
        record = {
            "dataset": "d",
            "arm": arm,
            "fold": fold,
            "key": f"d/{arm}/{fold}/s0",
            "val_loss": loss,
        }
        runs.append(TrialRun(record, tune.Checkpoint.from_directory(str(folder))))
    summary = pd.DataFrame(
        {"dataset": ["d"] * 3, "arm": ["forest", "scratch", "finetune"], "f1_mean": [0.9, 0.5, 0.6]}
    )
    return data, folds, runs, summary


def test_export_takes_the_best_neural_arm_and_its_best_trial(tmp_path):
    data, folds, runs, summary = export_candidates(tmp_path)
    exported = export_best_model(data, folds, summary, runs, tmp_path / "export")
    assert (exported.arm, exported.trial) == ("finetune", "d/finetune/f1/s0")
    content = load_checkpoint(exported.path)
    assert content["labels"] == LEARNABLE_LABELS and content["window_seconds"] == 5
    assert content["preprocessing"] == {
        "sample_rate_hz": 30,
        "units": "g",
        "window_seconds": 5,
        "window_samples": 150,
    }
    assert content["arm"] == "finetune" and content["dataset"] == "d"
    source = load_checkpoint(tmp_path / "finetune-f1" / CLASSIFIER_FILE)["state_dict"]
    assert all(torch.equal(source[k], v) for k, v in content["state_dict"].items())
    forest_only = summary[summary["arm"] == "forest"]
    assert export_best_model(data, folds, forest_only, runs, tmp_path) is None


def test_exported_model_carries_the_hmm_of_its_training_fold(tmp_path, capsys, monkeypatch):
    data, folds, runs, summary = export_candidates(tmp_path)
    exported = export_best_model(data, folds, summary, runs, tmp_path / "export")
    hmm = checkpoint_hmm(load_checkpoint(exported.path), exported.path.name)
    assert hmm is not None and hmm.n_classes == len(LEARNABLE_LABELS)
    # transitions: per training or validation subject, 3 windows of each class in turn, so
    # 0->0 twice and 0->1 once (never 2->0 across subjects), plus a pseudo-count of 1
    fold = folds[1]
    n_known = len(np.unique(data.subjects[np.concatenate([fold.train, fold.val])]))
    stay, move = 2 * n_known + 1, n_known + 1
    np.testing.assert_allclose(hmm.transitions[0], np.array([stay, move, 1]) / (stay + move + 1))
    np.testing.assert_allclose(hmm.transitions[2], np.array([1, 1, stay]) / (stay + 2))
    # emissions: the confusion of the exported model on the validation windows
    model = harnet(5, n_classes=3, pretrained=exported.path).eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.windows[fold.val])).argmax(1).numpy()
    confusion = np.ones((3, 3))
    np.add.at(confusion, (data.labels[fold.val], predicted), 1)
    np.testing.assert_allclose(hmm.emissions, confusion / confusion.sum(1, keepdims=True))

    recording = synth_recording(1, seed=3, days=10 / 1440)
    np.savez(tmp_path / "P01.npz", xyz=recording.xyz, time=recording.times_ms)
    monkeypatch.setenv(KEY_ENV, "test-evaluate-key")
    out = tmp_path / "predicted"
    argv = ["predict", str(tmp_path / "P01.npz"), "--model", str(exported.path), "--out", str(out)]
    assert main(argv) == EXIT_OK
    assert "no HMM parameters" not in capsys.readouterr().err
    assert json.loads((out / "P01" / f"P01{INFO_SUFFIX}").read_text())["HMM"] is True


# ---------------------------------------------------------------- registered models


def test_a_version_is_champion_when_it_scores_at_least_the_champion():
    assert alias_for(0.5, None) == CHAMPION
    assert alias_for(0.5, float("nan")) == CHAMPION
    assert alias_for(0.5, 0.5) == CHAMPION
    assert alias_for(0.49, 0.5) == CHALLENGER


def test_registered_versions_carry_signature_example_description_and_alias(registry, tmp_path):
    data, folds, runs, summary = export_candidates(tmp_path)
    exported = export_best_model(data, folds, summary, runs, tmp_path / "export")
    client = mlflow.MlflowClient(registry["uri"])
    card = ModelCard("quickstart", "d", LEARNABLE_LABELS)
    aliases = []
    for f1 in (0.5, 0.4, 0.6):
        run = client.create_run(registry["experiment"]).info.run_id
        exported.f1_mean = f1
        register_export(exported, run, "harnet5-har-quickstart-d", registry["uri"], card)
        aliases.append(exported.alias)
    assert aliases == [CHAMPION, CHALLENGER, CHAMPION]
    champion = client.get_model_version_by_alias("harnet5-har-quickstart-d", CHAMPION)
    assert str(champion.version) == exported.registered_version == "3"
    assert champion.tags[SCORE_TAG] == "0.600000"
    assert "0.600" in champion.description and "sleep" not in champion.description
    assert all(label in champion.description for label in LEARNABLE_LABELS)
    assert "'quickstart'" in champion.description and "dataset d" in champion.description
    registered = client.get_registered_model("harnet5-har-quickstart-d")
    assert registered.description == champion.description
    spec = "models:/harnet5-har-quickstart-d@champion"
    info = mlflow.models.get_model_info(spec)
    (inputs,) = info.signature.inputs.inputs
    (outputs,) = info.signature.outputs.inputs
    assert (inputs.shape, inputs.type) == ((-1, 3, 150), np.dtype(np.float32))
    assert outputs.shape == (-1, len(LEARNABLE_LABELS))
    model = mlflow.models.Model.load(spec)
    example = model.load_input_example(mlflow.artifacts.download_artifacts(spec))
    assert example.shape == (1, 3, 150) and example.dtype == np.float32


def test_registered_model_names_follow_network_stage_config_dataset():
    export = Export()
    assert export.model_name("harnet10", "quickstart", "synthetic") == (
        "harnet10-har-quickstart-synthetic"
    )
    shipped = load_config(EvaluateConfig, REPO / "configs" / "evaluate" / "quickstart.yaml")
    assert shipped.export.model_name("harnet10", shipped.name, "synthetic") == (
        "harnet10-har-quickstart-synthetic"
    )
    with pytest.raises(ConfigError, match=r"may hold only \{network\}, \{config\}"):
        load_config(
            EvaluateConfig,
            REPO / "configs" / "evaluate" / "quickstart.yaml",
            ["export.registered_model=harnet-{arm}"],
        )


# ---------------------------------------------------------------- figures


def test_confusion_matrix_shows_counts_and_the_arms_f1(tmp_path):
    predictions = pd.DataFrame({"y_true": [0, 0, 0, 1, 1, 2], "y_pred": [0, 0, 1, 1, 1, 0]})
    fig = confusion_figure(predictions, ["sit", "walk", "run"], "d: finetune, macro F1 0.612")
    (ax,) = [a for a in fig.axes if a.get_title()]
    assert ax.get_title() == "d: finetune, macro F1 0.612"
    cells = [text.get_text() for text in ax.texts]
    assert cells == ["2", "1", "0", "0", "2", "0", "1", "0", "0"]
    runs, _ = fake_runs(tmp_path)
    (path,) = confusion_plots(
        [r for r in runs if r.record["arm"] == "forest"],
        "d",
        ["a", "b", "c"],
        tmp_path,
        {"forest": 0.5},
    )
    assert path.name == "confusion-forest.png" and path.stat().st_size > 1000


def test_umap_figure_says_it_drew_fewer_windows_than_asked(monkeypatch):
    import umap

    class FirstTwoColumns:
        def __init__(self, **kwargs):
            pass

        def fit_transform(self, values):
            return np.asarray(values)[:, :2]

    monkeypatch.setattr(umap, "UMAP", FirstTwoColumns)
    data = learnable_set(n_subjects=2, per_class=3)
    with one_torch_thread():
        fig = umap_figure(data, None, max_windows=500, seed=0)
    title = fig._suptitle.get_text()
    assert f"UMAP of {len(data.labels)} windows" in title and "500 asked" in title
    assert umap_title("d", 100, 100) == "d: UMAP of 100 windows"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == list(data.label_names)


# ---------------------------------------------------------------- console


class FakeTrial:
    def __init__(self, name: str, status: str = "RUNNING", result: dict | None = None):
        self.trial_id, self.status, self.last_result = name, status, result or {}

    def __str__(self) -> str:
        return self.trial_id


def test_trial_lines_write_one_line_per_ended_trial_with_progress_and_eta():
    clock = iter([0.0, 0.0, 1.0, 10.0, 12.0, 20.0]).__next__
    stream = io.StringIO()
    lines = TrialLines("evaluation", score_line, stream=stream, clock=clock)
    done = FakeTrial("d-forest-loso-0-s0", "TERMINATED")
    first = FakeTrial("d-scratch-loso-0-s0", result={"f1_mean": 0.7123})
    second = FakeTrial("d-scratch-loso-1-s0")
    trials = [done, first, second]
    lines.setup(total_num_samples=3)  # a resumed experiment: one trial finished before
    lines.on_trial_start(0, trials, first)
    lines.on_trial_complete(1, trials, first)
    lines.on_trial_start(2, trials, second)
    lines.on_trial_error(3, trials, second)
    written = stream.getvalue().splitlines()
    assert written[0].startswith("d-scratch-loso-0-s0: test macro F1 0.712 in 0:09")
    assert "evaluation  1/2 trials" in written[0] and "ETA 0:10" in written[0]
    assert "(+1 finished before)" in written[0]
    assert written[1].startswith("d-scratch-loso-1-s0: FAILED") and " in 0:08 " in written[1]
    assert "2/2 trials" in written[1] and "ETA 0:00" in written[1]


# ---------------------------------------------------------------- on Ray Tune (slow)


@pytest.fixture(scope="module")
def ray_cluster():
    """The session's local 2-CPU Ray (started here if no test started it yet, and left
    running for the others, as conftest's ray_local does)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray.cluster_resources()


QUICK_FINETUNE = {"lr": 1e-3, "batch_size": 8, "max_epochs": 5, "patience": 5, "augment": False}


@pytest.fixture(scope="module")
def evaluated(ray_cluster, registry, tmp_path_factory):
    """Every arm on a learnable set (6 subjects, leave-one-subject-out, first 2 folds).

    The "pre-trained" model is a classifier trained supervised on another learnable set,
    logged and registered the way the pre-training job does; the transfer arm's source is
    a third set.
    """
    with one_torch_thread():
        root = tmp_path_factory.mktemp("evaluate")
        write_labelled_set(str(root / "target"), learnable_set(seed=0))
        write_labelled_set(str(root / "source"), learnable_set(n_subjects=4, seed=2))
        pretraining = learnable_set(n_subjects=4, seed=1)
        pretrained = train_transfer_source(
            pretraining,
            protocol_folds(pretraining.subjects)[0],
            Finetune(**QUICK_FINETUNE),
            0,
            root / "pretrained" / "harnet.pt",
        )
        with mlflow.start_run(experiment_id=registry["experiment"]) as run:
            mlflow.log_artifact(str(pretrained), artifact_path="checkpoint")
        client = mlflow.MlflowClient(registry["uri"])
        client.create_registered_model("test-supervised")
        client.create_model_version(
            "test-supervised", f"runs:/{run.info.run_id}/checkpoint", run.info.run_id
        )
        cfg = EvaluateConfig.model_validate(
            {
                "name": "learnable",
                "output_dir": str(root / "out"),
                "datasets": [{"name": "target", "path": str(root / "target")}],
                "arms": ["forest", "scratch", "frozen", "finetune", "transfer"],
                "pretrained": "models:/test-supervised/1",
                "transfer_source": {"name": "source", "path": str(root / "source")},
                "protocol": {"max_folds": 2},
                "finetune": QUICK_FINETUNE,
                "forest": {"n_estimators": 50},
                "plots": {"umap": True, "umap_windows": 120},
                "tracking": {"tracking_uri": registry["uri"]},
                "export": {"registered_model": "learnable-{dataset}"},
            }
        )
        return cfg, run_evaluation(cfg)


@pytest.mark.slow
def test_every_arm_scores_far_above_chance(evaluated):
    _, result = evaluated
    table = result.summary_table.set_index("arm")
    assert set(table.index) == {"forest", "scratch", "frozen", "finetune", "transfer"}
    # three balanced classes: chance macro F1 is about 1/3
    assert (table["f1_mean"] > 0.6).all(), table["f1_mean"]
    assert (table["n_subjects"] == 2).all()


@pytest.mark.slow
def test_table_matches_scores_recomputed_from_saved_predictions(evaluated):
    _, result = evaluated
    output = result.output
    recomputed: dict[str, list[float]] = {}
    for record in pd.read_csv(output / "results" / "trials.csv").itertuples():
        predictions = pd.read_parquet(record.predictions)
        assert set(predictions.columns) >= {
            "window",
            "subject",
            "y_true",
            "y_pred",
            "probabilities",
        }
        recomputed.setdefault(record.arm, []).extend(
            sklearn_subject_f1(
                predictions["y_true"].to_numpy(),
                predictions["y_pred"].to_numpy(),
                predictions["subject"].to_numpy(),
            )
        )
    summary = pd.read_csv(output / "results" / "summary.csv").set_index("arm")
    for arm, values in recomputed.items():
        assert summary.loc[arm, "f1_mean"] == pytest.approx(np.mean(values))
        assert summary.loc[arm, "f1_sd"] == pytest.approx(np.std(values, ddof=1))
    markdown = (output / "results" / "results.md").read_text()
    assert f"{summary.loc['finetune', 'f1_mean']:.3f} ± " in markdown


@pytest.mark.slow
def test_trials_ran_concurrently(evaluated):
    _, result = evaluated
    trials = result.trials
    assert len(trials) == 5 * 2
    spans = list(zip(trials["started_at"], trials["finished_at"], strict=True))
    overlapping = [
        (a, b) for a, b in itertools.combinations(spans, 2) if a[0] < b[1] and b[0] < a[1]
    ]
    assert overlapping, "no two trials ran at the same time"


@pytest.mark.slow
def test_mlflow_has_a_parent_run_with_a_child_per_trial(evaluated, registry):
    cfg, result = evaluated
    client = mlflow.MlflowClient(registry["uri"])
    parent_id = result.datasets[0].parent_run_id
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )
    assert len(children) == len(result.trials)
    trials = result.trials.set_index("run_id")
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"dataset", "arm", "fold", "seed"} <= set(child.data.params)
        assert {"test/f1_macro_mean", "time/trial_s"} <= set(child.data.metrics)
        trial = trials.loc[child.info.run_id]
        assert child.info.run_name == f"target-{trial['arm']}-{trial['fold']}-s0"
        assert f"arm {trial['arm']}" in child.data.tags["mlflow.note.content"]
        # created when the trial started, ended when it ended: the run spans the trial
        wall_s = trial["finished_at"] - trial["started_at"]
        assert child.info.start_time / 1000 <= trial["started_at"] + 1.0
        assert (child.info.end_time - child.info.start_time) / 1000 >= wall_s - 0.5
        assert child.data.tags["started_at"] <= child.data.tags["finished_at"]
    if any(arm != "forest" for arm in trials["arm"]):
        neural = next(c for c in children if c.data.tags["arm"] == "finetune")
        history = client.get_metric_history(neural.info.run_id, "val/loss")
        assert [m.step for m in history] == list(range(len(history))) and history
    parent = client.get_run(parent_id)
    assert "test/finetune/f1_macro_mean" in parent.data.metrics
    assert {"started_at", "finished_at", "mlflow.note.content"} <= set(parent.data.tags)
    artifacts = {a.path for a in client.list_artifacts(parent_id, "results")}
    assert {"results/results.md", "results/summary.csv", "results/scores.csv"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent_id, "plots")}
    expected = {f"plots/confusion-{arm}.png" for arm in cfg.arms} | {"plots/umap.png"}
    assert expected <= plots


@pytest.mark.slow
def test_exported_model_is_registered_and_resolvable(evaluated, registry, tmp_path):
    _, result = evaluated
    exported = result.datasets[0].exported
    assert exported.registered_name == "learnable-target"
    resolved = resolve_weights(
        f"models:/learnable-target/{exported.registered_version}", tmp_path, registry["uri"]
    )
    content = load_checkpoint(resolved.path)
    assert content["labels"] == LEARNABLE_LABELS and content["preprocessing"]["window_seconds"] == 5
    assert checkpoint_hmm(content, resolved.path.name).n_classes == len(LEARNABLE_LABELS)
    model = harnet(5, n_classes=3, pretrained=resolved.path)
    model.eval()
    data = learnable_set(n_subjects=2, per_class=4, seed=5)
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.windows)).argmax(1).numpy()
    assert (predicted == data.labels).mean() > 0.6


BOX_DRAWING = re.compile("[\u2500-\u257f]")


@pytest.mark.slow
def test_the_console_has_one_line_per_trial_and_no_tables_or_tracebacks(tmp_path):
    """The job as a user runs it: Tune's status tables are gone, each finished trial is one
    line named after its dataset, arm and fold, with its score and the ETA."""
    config = {
        "name": "console",
        "output_dir": str(tmp_path / "out"),
        "datasets": [
            {
                "name": "synthetic",
                "synthetic": {"subjects": 4, "window_seconds": 10, "minutes_per_activity": 0.5},
            }
        ],
        "arms": ["forest"],
        "protocol": {"max_folds": 2},
        "forest": {"n_estimators": 20},
        "plots": {"confusion": False},
        "export": {"enabled": False},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(config))
    job = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "evaluate.py"), "--config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    console = job.stdout + job.stderr
    assert job.returncode == 0, console[-3000:]
    assert not BOX_DRAWING.search(console), console
    assert "Traceback" not in console and "Trial status" not in console
    lines = re.findall(
        r"^synthetic-forest-loso-\d-s0: test macro F1 \d\.\d{3} in \d+:\d\d  "
        r"evaluation  (\d)/2 trials .* ETA \d+:\d\d$",
        console,
        flags=re.MULTILINE,
    )
    assert sorted(lines) == ["1", "2"], console


@pytest.mark.slow
def test_interrupted_evaluation_resumes_without_repeating_finished_trials(
    ray_cluster, registry, tmp_path, monkeypatch
):
    write_labelled_set(str(tmp_path / "target"), learnable_set(n_subjects=5, per_class=4))
    cfg = EvaluateConfig.model_validate(
        config_dict(
            tmp_path,
            arms=["forest"],
            forest={"n_estimators": 10},
            protocol={"max_folds": 4},
            plots={"confusion": False},
            export={"enabled": False},
            tracking={"tracking_uri": registry["uri"]},
        )
    )
    failing = "target/forest/loso-2/s0"

    def fail_one_trial(spec):
        if spec.key == failing:
            raise RuntimeError(f"failure injected into trial {spec.key}")
        return run_trial(spec)

    run_trial = evaluate_trials.run_trial
    monkeypatch.setattr(evaluate_trials, "run_trial", fail_one_trial)
    with pytest.raises(TrialsFailed, match=f"{failing}: RuntimeError: failure injected"):
        run_evaluation(cfg)
    monkeypatch.undo()
    result = run_evaluation(cfg)
    assert len(result.trials) == 4
    attempts = tmp_path / "out" / "t" / "trials" / "target" / "attempts"
    counts = {folder.name: len(list(folder.iterdir())) for folder in attempts.iterdir()}
    assert counts == {f"forest-loso-{i}-s0": 2 if i == 2 else 1 for i in range(4)}
    # one parent and one child per trial: the retried trial continued its own run
    client = mlflow.MlflowClient(registry["uri"])
    parent = result.datasets[0].parent_run_id
    experiment = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment], f"tags.tune_experiment = '{result.experiment}'")
    assert [r.info.run_id for r in runs] == [parent]
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(c.data.tags["trial"] for c in children) == sorted(result.trials["key"])
    assert {c.info.status for c in children} == {"FINISHED"}
    # a finished evaluation run again executes nothing
    run_evaluation(cfg)
    assert sum(len(list(f.iterdir())) for f in attempts.iterdir()) == 5
