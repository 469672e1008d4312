"""Downstream evaluation: the paper's benchmark protocol, every trial on Ray Tune.

:func:`run_evaluation` plans every (dataset, arm, fold, seed) as one trial of a Tune
function trainable (:func:`run_trial`), runs them concurrently within the cluster's
resources, and turns the trials' saved test predictions into per-subject scores, the
results table (CSV + Markdown), plots, MLflow runs (a parent per dataset, a child per
trial) and an exported best model per dataset.

Output folder ``OUTPUT = output_dir/name`` (a local or shared-filesystem path, since
trials on every node write to it)::

    data/                   synthetic labelled sets generated for this evaluation
    weights/                pre-trained weights downloaded from MLflow
    transfer/               the transfer arm's supervised source model(s)
    tune/                   Ray Tune's storage (unless resources.storage_path says otherwise)
    trials/DATASET/         per trial: record (JSON), test predictions (Parquet), attempts
    results/                scores.csv (per test subject), summary.csv, results.md, trials.csv
    plots/DATASET/          confusion matrix per arm, UMAP
    export/DATASET.pt       the best fine-tuned model with its HMM, for the prediction job

The Tune experiment's name is the config's ``name`` plus a digest of everything that
decides the trials' results, so re-running the same command resumes an interrupted
evaluation (finished trials are kept, not redone) and a changed config starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import matplotlib
import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch
import yaml
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param
from ray import tune
from ray.tune.experiment import Trial
from sklearn.metrics import confusion_matrix

from wearssl.config import flatten
from wearssl.config.evaluate import PRETRAINED_ARMS, Dataset, EvaluateConfig, Finetune, Protocol
from wearssl.data.corpus import SAMPLE_RATE_HZ, resolve
from wearssl.data.labelled_set import (
    INFO_NAME,
    WINDOWS_NAME,
    LabelledSet,
    read_labelled_set,
    write_labelled_set,
)
from wearssl.data.splits import Fold, protocol_folds, subset_subjects
from wearssl.downstream.finetune import (
    NEURAL_ARMS,
    ArmOutcome,
    predict_probabilities,
    train_arm,
    train_transfer_source,
)
from wearssl.downstream.metrics import per_subject_scores, results_markdown, summarise
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking
from wearssl.infra.tune import experiment_path, restore_or_create
from wearssl.models.harnet import WINDOW_SAMPLES, CheckpointError, HarNet, harnet, save_checkpoint
from wearssl.models.hmm import HmmParams, attach_hmm, fit_hmm, label_sequences
from wearssl.models.resolve import CHECKPOINT_ARTIFACT, resolve_weights

EXPERIMENT = "evaluate"
FAIL_TRIALS_ENV = "WEARSSL_TEST_FAIL_TRIALS"  # test hook: comma-separated trial keys that raise
MODEL_FILE = "model.pt"
SCORE_METRICS = ("f1_macro", "kappa", "accuracy")
SCORE_NAMES = {"f1_macro": "f1", "kappa": "kappa", "accuracy": "accuracy"}


class TrialsFailed(RuntimeError):
    """Some trials raised; the finished ones are kept and a re-run resumes the rest."""


# ---------------------------------------------------------------- datasets


def load_dataset(
    name: str, path: str, subjects: int | None, split_seed: int, batch_size: int | None = None
) -> LabelledSet:
    """The labelled set at ``path`` under the config's dataset ``name``, reduced to
    ``subjects`` subjects when given, trained with ``batch_size`` when given."""
    data = replace(read_labelled_set(path), name=name)
    if batch_size is not None:
        data = replace(data, batch_size=batch_size)
    if data.window_seconds not in WINDOW_SAMPLES:
        raise ValueError(
            f"labelled set {path} has {data.window_seconds}-s windows; harnet exists for "
            f"{sorted(WINDOW_SAMPLES)} s"
        )
    if subjects is not None:
        data = data.subset(subset_subjects(data.subjects, subjects, split_seed))
    return data


def materialise_dataset(dataset: Dataset, data_dir: Path) -> str:
    """Absolute path of the dataset's labelled set; a synthetic one is (re)generated there.

    The generator is deterministic and fast, so writing it each time keeps it in step
    with its config.
    """
    if dataset.path is not None:
        return dataset.path if "://" in dataset.path else resolve(dataset.path)[1]
    from wearssl.data.synthetic import synthetic_labelled_set

    settings = dataset.synthetic
    out = data_dir / dataset.name
    write_labelled_set(
        str(out),
        synthetic_labelled_set(
            settings.subjects,
            seed=settings.seed,
            window_seconds=settings.window_seconds,
            minutes_per_activity=settings.minutes_per_activity,
            name=dataset.name,
        ),
    )
    return str(out)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a local file or a file at a URI."""
    fs, location = resolve(path)
    digest = hashlib.sha256()
    with fs.open_input_stream(location) as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def dataset_digest(path: str) -> str:
    """Digest of a labelled set's content: a re-import with other data changes it, a
    re-generated identical synthetic set does not."""
    root = path.rstrip("/")
    return ":".join(file_digest(f"{root}/{name}") for name in (INFO_NAME, WINDOWS_NAME))


def evaluation_folds(data: LabelledSet, protocol: Protocol) -> list[Fold]:
    folds = protocol_folds(
        data.subjects,
        seed=protocol.split_seed,
        n_splits=protocol.n_splits,
        test_size=protocol.test_size,
        val_fraction=protocol.val_fraction,
    )
    return folds[: protocol.max_folds] if protocol.max_folds else folds


def check_weights_fit(data: LabelledSet, what: str, path: Path) -> None:
    """Raise a :class:`CheckpointError` naming the dataset and the weights unless the
    weights load into harnet for the dataset's window length."""
    try:
        harnet(data.window_seconds, pretrained=path)
    except CheckpointError as err:
        raise CheckpointError(
            f"dataset {data.name!r} has {data.window_seconds}-s windows "
            f"({WINDOW_SAMPLES[data.window_seconds]} samples at {SAMPLE_RATE_HZ} Hz), but "
            f"{what} do not fit harnet{data.window_seconds}: {err}"
        ) from None


# ---------------------------------------------------------------- trial plan


def trial_key(spec: dict[str, Any]) -> str:
    return f"{spec['dataset']}/{spec['arm']}/{spec['fold']}/s{spec['seed']}"


def trial_stem(spec: dict[str, Any]) -> str:
    return f"{spec['arm']}-{spec['fold']}-s{spec['seed']}"


def trial_folder(spec: dict[str, Any]) -> str:
    """The name of a trial's folder in Tune's storage."""
    return f"{spec['dataset']}-{trial_stem(spec)}"


def _tune_trial_folder(trial: Trial) -> str:
    return trial_folder(trial.config["trial"])


def trial_specs(
    datasets: dict[str, list[Fold]], arms: list[str], seeds: int
) -> list[dict[str, Any]]:
    return [
        {"dataset": name, "arm": arm, "fold": fold.name, "fold_index": index, "seed": seed}
        for name, folds in datasets.items()
        for arm in arms
        for index, fold in enumerate(folds)
        for seed in range(seeds)
    ]


def experiment_name(cfg: EvaluateConfig, context: dict[str, Any], specs: list[dict]) -> str:
    """``cfg.name`` plus a digest of everything that decides the trials' results."""
    decisive = {
        "specs": specs,
        "datasets": context["datasets"],
        "data_digests": {
            name: dataset_digest(d["path"]) for name, d in context["datasets"].items()
        },
        "init_digests": {
            name: {arm: file_digest(p) for arm, p in d["init"].items()}
            for name, d in context["datasets"].items()
        },
        "protocol": context["protocol"],
        "finetune": context["finetune"],
        "forest": context["forest"],
    }
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()
    return f"{cfg.name}-{digest[:10]}"


# ---------------------------------------------------------------- the trial


def trial_paths(output: str, spec: dict[str, Any]) -> dict[str, Path]:
    folder = Path(output) / "trials" / spec["dataset"]
    stem = trial_stem(spec)
    return {
        "record": folder / f"{stem}.json",
        "predictions": folder / f"{stem}.parquet",
        "attempts": folder / "attempts" / stem,
    }


def record_attempt(folder: Path, key: str) -> None:
    """One file per execution of a trial: how many times it actually ran."""
    folder.mkdir(parents=True, exist_ok=True)
    attempt = {"trial": key, "started_at": time.time(), "pid": os.getpid()}
    (folder / f"{uuid.uuid4().hex}.json").write_text(json.dumps(attempt))


def predictions_table(
    spec: dict[str, Any], data: LabelledSet, fold: Fold, probabilities: np.ndarray
) -> pa.Table:
    """Per test window: index in the (subset) labelled set, subject, truth, prediction,
    class probabilities; label names in the schema metadata."""
    k = probabilities.shape[1]
    table = pa.table(
        {
            "window": pa.array(fold.test.astype(np.int64)),
            "subject": pa.array(data.subjects[fold.test].astype(str)),
            "y_true": pa.array(data.labels[fold.test].astype(np.int64)),
            "y_pred": pa.array(probabilities.argmax(axis=1).astype(np.int64)),
            "probabilities": pa.FixedSizeListArray.from_arrays(
                pa.array(probabilities.astype(np.float32).reshape(-1)), k
            ),
        }
    )
    metadata = {
        "label_names": json.dumps(list(data.label_names)),
        **{key: str(value) for key, value in spec.items()},
    }
    return table.replace_schema_metadata(metadata)


def write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2))
    os.replace(partial, path)


def mean_scores(scores: pd.DataFrame) -> dict[str, float]:
    return {f"{SCORE_NAMES[m]}_mean": float(scores[m].mean()) for m in SCORE_METRICS}


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function trainable: train one arm on one fold with one seed, save the test
    predictions and the trial record, report the scores (and the model as a checkpoint)."""
    started = time.time()
    spec = config["trial"]
    key = trial_key(spec)
    plan = context["datasets"][spec["dataset"]]
    paths = trial_paths(context["output"], spec)
    record_attempt(paths["attempts"], key)
    if key in context["fail"]:
        raise RuntimeError(f"failure injected by {FAIL_TRIALS_ENV} for trial {key}")
    torch.set_num_threads(context["threads"])
    protocol = Protocol(**context["protocol"])
    data = load_dataset(
        spec["dataset"], plan["path"], plan["subjects"], protocol.split_seed, plan["batch_size"]
    )
    fold = evaluation_folds(data, protocol)[spec["fold_index"]]
    if fold.name != spec["fold"]:
        raise RuntimeError(f"trial {key}: fold {spec['fold_index']} is now {fold.name}")
    outcome = train_arm(
        spec["arm"],
        data,
        fold,
        spec["seed"],
        Finetune(**context["finetune"]),
        n_estimators=context["forest"]["n_estimators"],
        n_jobs=context["threads"],
        init=plan["init"].get(spec["arm"]),
    )
    table = predictions_table(spec, data, fold, outcome.probabilities)
    write_parquet(paths["predictions"], table)
    scores = per_subject_scores(
        data.labels[fold.test],
        table["y_pred"].to_numpy(),
        data.subjects[fold.test],
        labels=list(range(len(data.label_names))),
    )
    record = {
        **spec,
        "key": key,
        "val_loss": outcome.val_loss,
        "best_epoch": outcome.best_epoch,
        "epochs": len(outcome.history),
        "history": [vars(epoch) for epoch in outcome.history],
        "n_train": len(fold.train),
        "n_val": len(fold.val),
        "n_test": len(fold.test),
        "n_test_subjects": len(scores),
        "started_at": started,
        "finished_at": time.time(),
        "predictions": str(paths["predictions"]),
        **mean_scores(scores),
    }
    write_json(paths["record"], record)
    metrics = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
    report_with_model(metrics, outcome, data, spec)


def report_with_model(
    metrics: dict[str, Any], outcome: ArmOutcome, data: LabelledSet, spec: dict[str, Any]
) -> None:
    if outcome.model is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(
            Path(folder) / MODEL_FILE,
            outcome.model,
            window_seconds=data.window_seconds,
            labels=list(data.label_names),
            extra={key: spec[key] for key in ("dataset", "arm", "fold", "seed")},
        )
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


# ---------------------------------------------------------------- running the trials


def trial_resources(cfg: EvaluateConfig, cluster: dict[str, float]):
    """Per-trial resources: CPUs, plus a GPU share for neural arms where GPUs exist."""
    use_gpu = float(cluster.get("GPU", 0.0)) > 0 and cfg.resources.gpus_per_trial > 0

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        bundle = {"CPU": cfg.resources.cpus_per_trial}
        if use_gpu and config["trial"]["arm"] != "forest":
            bundle["GPU"] = cfg.resources.gpus_per_trial
        return tune.PlacementGroupFactory([bundle])

    return resources


def concurrency(cfg: EvaluateConfig, cluster: dict[str, float]) -> int:
    """Trials at once: the configured number, else as many as the cluster's CPUs hold."""
    cpus = float(cluster.get("CPU", 0.0))
    if cfg.resources.cpus_per_trial > cpus + 1e-9:
        raise runtime.ResourcePlanError(
            f"resources.cpus_per_trial={cfg.resources.cpus_per_trial:g} but the cluster has "
            f"{cpus:g} CPUs"
        )
    return cfg.resources.max_concurrent_trials or max(1, int(cpus // cfg.resources.cpus_per_trial))


def storage_path(cfg: EvaluateConfig, output: Path) -> str:
    path = cfg.resources.storage_path
    if path is None:
        return str(output / "tune")
    return path if "://" in path else str(Path(path).resolve())


@dataclass
class TrialRun:
    """What Tune gives back per finished trial: its record and its model checkpoint."""

    record: dict[str, Any]
    checkpoint: tune.Checkpoint | None


def run_trials(
    cfg: EvaluateConfig,
    context: dict[str, Any],
    specs: list[dict],
    output: Path,
    name: str,
    max_concurrent: int,
) -> list[TrialRun]:
    """Run the Tune experiment ``name``, or resume it where it exists; raise
    :class:`TrialsFailed` if any trial failed."""
    storage = storage_path(cfg, output)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        trial_resources(cfg, ray.cluster_resources()),
    )
    tuner = restore_or_create(
        trainable,
        param_space={"trial": tune.grid_search(specs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=_tune_trial_folder,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
        errored="restart",
        what="evaluation",
    )
    grid = tuner.fit()
    by_folder = {trial_folder(spec): spec for spec in specs}
    failed = [failure_line(r, by_folder) for r in grid if r.error is not None]
    if failed:
        raise TrialsFailed(
            f"{len(failed)} of {len(grid)} trials failed ({'; '.join(failed)}); finished trials "
            f"are kept in {experiment_path(storage, name)}: run the same command again to "
            "resume the rest"
        )
    runs = []
    for result in grid:
        paths = trial_paths(context["output"], result_spec(result, by_folder))
        runs.append(TrialRun(json.loads(paths["record"].read_text()), result.checkpoint))
    return runs


def result_spec(result: tune.Result, by_folder: dict[str, dict]) -> dict[str, Any] | None:
    """The spec of a result's trial, found by its folder (:func:`trial_folder`), since the
    result of a trial whose actor failed before its first report has no config; trials of
    an experiment begun before folders were named after trials are found by their config."""
    spec = by_folder.get(PurePosixPath(result.path).name)
    return spec if spec is not None else (result.config or {}).get("trial")


def failure_line(result: tune.Result, by_folder: dict[str, dict]) -> str:
    """``trial key: last line of its error`` (the folder when the trial is unknown)."""
    spec = result_spec(result, by_folder)
    lines = str(result.error).strip().splitlines()
    name = trial_key(spec) if spec is not None else result.path
    return f"{name}: {lines[-1] if lines else type(result.error).__name__}"


# ---------------------------------------------------------------- transfer source


@ray.remote
def _train_source_remote(
    name: str,
    path: str,
    subjects: int | None,
    protocol: dict,
    finetune: dict,
    out: str,
    threads: int,
) -> str:
    torch.set_num_threads(threads)
    protocol_settings = Protocol(**protocol)
    source = load_dataset(name, path, subjects, protocol_settings.split_seed)
    first_fold = evaluation_folds(source, protocol_settings)[0]
    return str(train_transfer_source(source, first_fold, Finetune(**finetune), 0, out))


def plan_transfer_source(cfg: EvaluateConfig, output: Path, windows: set[int]) -> tuple[str, Path]:
    """(labelled-set path, model file) of the transfer arm's source; the file name carries
    a digest of the source data and training settings, so it is trained once and reused
    by every fold, dataset and later run with the same settings."""
    source = cfg.transfer_source
    path = materialise_dataset(source, output / "data" / "source")
    data = load_dataset(source.name, path, source.subjects, cfg.protocol.split_seed)
    mismatched = sorted(w for w in windows if w != data.window_seconds)
    if mismatched:
        raise ValueError(
            f"transfer_source {source.name!r} has {data.window_seconds}-s windows, but datasets "
            f"with {mismatched}-s windows use the transfer arm; the window lengths must match"
        )
    settings = {
        "source": source.model_dump(mode="json"),
        "data_digest": dataset_digest(path),
        "protocol": cfg.protocol.model_dump(mode="json"),
        "finetune": cfg.finetune.model_dump(mode="json"),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return path, output / "transfer" / f"{source.name}-{digest}.pt"


def ensure_transfer_source(cfg: EvaluateConfig, path: str, out: Path) -> None:
    """Train the transfer source model as a Ray task with one trial's resources, unless
    ``out`` exists."""
    if out.is_file():
        return
    source = cfg.transfer_source
    print(f"training the transfer source model on {source.name} -> {out}", flush=True)
    remote = _train_source_remote.options(
        num_cpus=cfg.resources.cpus_per_trial,
        num_gpus=cfg.resources.gpus_per_trial if ray.cluster_resources().get("GPU", 0) else 0,
    )
    ray.get(
        remote.remote(
            source.name,
            path,
            source.subjects,
            cfg.protocol.model_dump(mode="json"),
            cfg.finetune.model_dump(mode="json"),
            str(out),
            max(1, int(cfg.resources.cpus_per_trial)),
        )
    )


# ---------------------------------------------------------------- results


def read_predictions(path: str | Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def select_runs(runs: list[TrialRun], selection: str) -> list[TrialRun]:
    """Every seed ("all"), or per (dataset, arm, fold) the seed with the lowest validation
    loss ("best")."""
    if selection == "all":
        return list(runs)
    best: dict[tuple, TrialRun] = {}
    for run in runs:
        group = (run.record["dataset"], run.record["arm"], run.record["fold"])
        loss = run.record["val_loss"]
        loss = math.inf if loss is None or math.isnan(loss) else loss
        current = best.get(group)
        if current is None or loss < _loss(current):
            best[group] = run
    return list(best.values())


def _loss(run: TrialRun) -> float:
    loss = run.record["val_loss"]
    return math.inf if loss is None or math.isnan(loss) else loss


def scores_from_predictions(
    runs: list[TrialRun], n_classes: dict[str, int], selection: str
) -> pd.DataFrame:
    """Per test subject and trial: macro F1, kappa, accuracy, from the saved predictions."""
    frames = []
    for run in runs:
        record = run.record
        predictions = read_predictions(record["predictions"])
        scores = per_subject_scores(
            predictions["y_true"].to_numpy(),
            predictions["y_pred"].to_numpy(),
            predictions["subject"].to_numpy(),
            labels=list(range(n_classes[record["dataset"]])),
        )
        for column in ("dataset", "arm", "fold", "seed"):
            scores.insert(0, column, record[column])
        frames.append(scores)
    scores = pd.concat(frames, ignore_index=True)
    scores["selection"] = selection
    return scores[
        ["dataset", "arm", "fold", "seed", "selection", "subject", "n_windows", *SCORE_METRICS]
    ]


def trials_frame(runs: list[TrialRun]) -> pd.DataFrame:
    rows = [{k: v for k, v in run.record.items() if k != "history"} for run in runs]
    return pd.DataFrame(rows).sort_values(["dataset", "arm", "fold", "seed"], ignore_index=True)


def write_results(
    results_dir: Path, scores: pd.DataFrame, summary: pd.DataFrame, trials: pd.DataFrame
) -> str:
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown = results_markdown(summary)
    scores.to_csv(results_dir / "scores.csv", index=False)
    summary.to_csv(results_dir / "summary.csv", index=False)
    trials.to_csv(results_dir / "trials.csv", index=False)
    (results_dir / "results.md").write_text(markdown)
    return markdown


# ---------------------------------------------------------------- plots


def plot_confusion(
    predictions: pd.DataFrame, label_names: list[str], title: str, out: Path
) -> Path:
    """Confusion matrix normalised by true class (rows sum to 1)."""
    k = len(label_names)
    matrix = confusion_matrix(
        predictions["y_true"], predictions["y_pred"], labels=list(range(k)), normalize="true"
    )
    size = 1.2 + 0.6 * k
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    for i in range(k):
        for j in range(k):
            colour = "white" if matrix[i, j] > 0.5 else "black"
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(k), label_names, rotation=45, ha="right")
    ax.set_yticks(range(k), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def confusion_plots(
    runs: list[TrialRun], dataset: str, label_names: list[str], out_dir: Path
) -> list[Path]:
    """One matrix per arm over all its (selected) trials' test windows."""
    paths = []
    arms = sorted({r.record["arm"] for r in runs if r.record["dataset"] == dataset})
    for arm in arms:
        frames = [
            read_predictions(r.record["predictions"])
            for r in runs
            if r.record["dataset"] == dataset and r.record["arm"] == arm
        ]
        predictions = pd.concat(frames, ignore_index=True)
        paths.append(
            plot_confusion(
                predictions, label_names, f"{dataset}: {arm}", out_dir / f"confusion-{arm}.png"
            )
        )
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


def umap_plot(
    data: LabelledSet, pretrained: Path | None, max_windows: int, seed: int, out: Path
) -> Path:
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
    fig.suptitle(f"{data.name}: UMAP of {len(chosen)} windows")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


# ---------------------------------------------------------------- export


@dataclass
class ExportedModel:
    dataset: str
    path: Path
    arm: str
    trial: str
    val_loss: float
    f1_mean: float
    registered_name: str | None = None
    registered_version: str | None = None


def export_best_model(
    data: LabelledSet,
    folds: list[Fold],
    summary: pd.DataFrame,
    runs: list[TrialRun],
    out_dir: str | Path,
) -> ExportedModel | None:
    """Re-save the best fine-tuned model of ``data`` with what a prediction job needs,
    its HMM included (:func:`fold_hmm` on the trial's fold of ``folds``).

    Best arm: the neural arm with the highest mean F1 in ``summary``; best trial: that
    arm's trial with the lowest validation loss. None when no neural arm ran.
    """
    dataset, label_names, window_seconds = data.name, data.label_names, data.window_seconds
    neural = summary[(summary["dataset"] == dataset) & summary["arm"].isin(NEURAL_ARMS)]
    if neural.empty:
        return None
    best_arm = neural.sort_values("f1_mean", ascending=False, kind="stable").iloc[0]
    candidates = [
        r for r in runs if r.record["dataset"] == dataset and r.record["arm"] == best_arm["arm"]
    ]
    best = min(candidates, key=_loss)
    if best.checkpoint is None:
        raise ValueError(f"trial {best.record['key']} has no saved model to export")
    out = Path(out_dir) / f"{dataset}.pt"
    with best.checkpoint.as_directory() as folder:
        model = harnet(
            window_seconds, n_classes=len(label_names), pretrained=Path(folder) / MODEL_FILE
        )
    save_checkpoint(
        out,
        model,
        window_seconds=window_seconds,
        labels=list(label_names),
        extra={
            "preprocessing": {
                "sample_rate_hz": SAMPLE_RATE_HZ,
                "units": "g",
                "window_seconds": window_seconds,
                "window_samples": WINDOW_SAMPLES[window_seconds],
            },
            "arm": str(best_arm["arm"]),
            "dataset": dataset,
            "trial": best.record["key"],
            "val_loss": float(best.record["val_loss"]),
            "f1_mean": float(best_arm["f1_mean"]),
        },
    )
    fold = next(f for f in folds if f.name == best.record["fold"])
    attach_hmm(out, fold_hmm(model, data, fold))
    return ExportedModel(
        dataset,
        out,
        str(best_arm["arm"]),
        best.record["key"],
        float(best.record["val_loss"]),
        float(best_arm["f1_mean"]),
    )


def fold_hmm(model: HarNet, data: LabelledSet, fold: Fold) -> HmmParams:
    """The HMM of ``model``, trained on ``fold``: prior and transitions from the labels of
    the fold's training and validation windows in time order per subject; emissions from
    the model's predictions on the validation windows, the ones it was not trained on (on
    its training windows it is right far more often than on new people)."""
    known = np.concatenate([fold.train, fold.val])
    sequences = label_sequences(
        data.labels[known],
        data.subjects[known],
        data.times_ms[known],
        window_ms=data.window_seconds * 1000,
    )
    probabilities = predict_probabilities(model, data.windows[fold.val], batch_size=256)
    return fit_hmm(sequences, probabilities, data.labels[fold.val], len(data.label_names))


def register_export(
    exported: ExportedModel, run_id: str, registered_name: str | None, uri: str
) -> ExportedModel:
    """Log the export to the dataset's parent run as ``checkpoint/harnet.pt`` (so
    :func:`wearssl.models.resolve.resolve_weights` finds it) with an ``mlflow.pytorch`` model,
    registered under ``registered_name`` when given."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    folder, name = CHECKPOINT_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as staging:
        shutil.copyfile(exported.path, Path(staging) / name)
        client.log_artifact(run_id, str(Path(staging) / name), artifact_path=folder)
    checkpoint = torch.load(exported.path, map_location="cpu", weights_only=True)
    model = harnet(
        checkpoint["window_seconds"], n_classes=checkpoint["n_classes"], pretrained=exported.path
    )
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=registered_name,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            serialization_format="pickle",
        )
    if registered_name:
        exported.registered_name = registered_name
        exported.registered_version = str(info.registered_model_version)
    return exported


# ---------------------------------------------------------------- MLflow


def log_params(client: mlflow.MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    flat = tracking.params_for_mlflow(params)
    items = [Param(key, value) for key, value in flat.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def log_trial_run(
    client: mlflow.MlflowClient, experiment: str, parent: str, record: dict[str, Any]
) -> str:
    """A child run per trial: params = the trial's spec, metrics = its mean scores plus
    the per-epoch losses."""
    run = client.create_run(
        experiment,
        run_name=record["key"],
        tags={"mlflow.parentRunId": parent, "trial": record["key"], "arm": record["arm"]},
    )
    run_id = run.info.run_id
    log_params(
        client, run_id, {k: record[k] for k in ("dataset", "arm", "fold", "fold_index", "seed")}
    )
    now = int(time.time() * 1000)
    scalars = {
        k: record[k]
        for k in (
            "f1_mean",
            "kappa_mean",
            "accuracy_mean",
            "val_loss",
            "best_epoch",
            "epochs",
            "n_test_subjects",
        )
    }
    scalars["wall_s"] = record["finished_at"] - record["started_at"]
    metrics = [Metric(k, float(v), now, 0) for k, v in scalars.items() if _finite(v)]
    for epoch in record["history"]:
        for k in ("train_loss", "val_loss"):
            if _finite(epoch[k]):
                metrics.append(Metric(f"epoch_{k}", float(epoch[k]), now, int(epoch["epoch"])))
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------- the job


@dataclass
class DatasetOutcome:
    name: str
    parent_run_id: str
    trial_run_ids: list[str]
    plots: list[Path]
    exported: ExportedModel | None


@dataclass
class EvaluateResult:
    output: Path
    tracking_uri: str
    experiment: str
    markdown: str
    summary_table: pd.DataFrame
    scores: pd.DataFrame
    trials: pd.DataFrame
    datasets: list[DatasetOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> str:
        exports = [
            f"- {d.name}: {d.exported.path} ({d.exported.arm}, {d.exported.trial}"
            + (
                f"; registered {d.exported.registered_name} v{d.exported.registered_version}"
                if d.exported.registered_version
                else ""
            )
            + ")"
            for d in self.datasets
            if d.exported is not None
        ]
        return "\n".join(
            [
                self.markdown,
                f"{len(self.trials)} trials in {self.wall_s:.0f} s; "
                f"results in {self.output / 'results'}",
                *(["exported models:", *exports] if exports else []),
            ]
        )


@dataclass
class Inputs:
    """Everything the trials start from, checked before any Ray work begins."""

    context: dict[str, Any]  # what every trial receives (plain values)
    datasets: dict[str, LabelledSet]
    pretrained: Path | None
    transfer_source: tuple[str, Path] | None  # (labelled set, model file to train)


def prepare_inputs(cfg: EvaluateConfig, output: Path, uri: str) -> Inputs:
    """Materialise the datasets, resolve the pre-trained weights, plan the transfer source,
    and check that every window length fits."""
    pretrained = None
    used = any(arm in PRETRAINED_ARMS for arm in cfg.arms) or cfg.plots.umap
    if cfg.pretrained is not None and used:
        pretrained = resolve_weights(cfg.pretrained, output / "weights", uri).path
    datasets, plans = {}, {}
    for dataset in cfg.datasets:
        path = materialise_dataset(dataset, output / "data")
        data = load_dataset(
            dataset.name, path, dataset.subjects, cfg.protocol.split_seed, dataset.batch_size
        )
        init = {arm: str(pretrained) for arm in PRETRAINED_ARMS if arm in cfg.arms}
        if init:
            check_weights_fit(data, f"the pre-trained weights {cfg.pretrained!r}", pretrained)
        datasets[dataset.name] = data
        plans[dataset.name] = {
            "path": path,
            "subjects": dataset.subjects,
            "batch_size": dataset.batch_size,
            "init": init,
        }
    transfer_source = None
    if "transfer" in cfg.arms:
        windows = {data.window_seconds for data in datasets.values()}
        transfer_source = plan_transfer_source(cfg, output, windows)
        for plan in plans.values():
            plan["init"]["transfer"] = str(transfer_source[1])
    context = {
        "datasets": plans,
        "protocol": cfg.protocol.model_dump(mode="json"),
        "finetune": cfg.finetune.model_dump(mode="json"),
        "forest": cfg.forest.model_dump(mode="json"),
        "output": str(output),
        "threads": max(1, int(cfg.resources.cpus_per_trial)),
        "fail": [key for key in os.environ.get(FAIL_TRIALS_ENV, "").split(",") if key],
    }
    return Inputs(context, datasets, pretrained, transfer_source)


def finish_dataset(
    cfg: EvaluateConfig,
    data: LabelledSet,
    runs: list[TrialRun],
    selected: list[TrialRun],
    summary: pd.DataFrame,
    output: Path,
    uri: str,
    tags: dict[str, str],
    pretrained: Path | None,
) -> DatasetOutcome:
    """Plots, export and MLflow runs of one dataset."""
    name = data.name
    plot_dir = output / "plots" / name
    plots = []
    if cfg.plots.confusion:
        plots += confusion_plots(selected, name, data.label_names, plot_dir)
    if cfg.plots.umap:
        plots.append(
            umap_plot(
                data,
                pretrained,
                cfg.plots.umap_windows,
                cfg.protocol.split_seed,
                plot_dir / "umap.png",
            )
        )
    exported = None
    if cfg.export.enabled:
        folds = evaluation_folds(data, cfg.protocol)
        exported = export_best_model(data, folds, summary, selected, output / "export")
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = tracking.experiment_id(EXPERIMENT, uri)
    parent = client.create_run(
        experiment, run_name=f"{cfg.name}/{name}", tags={**tags, "dataset": name}
    ).info.run_id
    log_params(
        client,
        parent,
        {
            **flatten(cfg),
            "dataset.name": name,
            "dataset.windows": len(data.labels),
            "dataset.subjects": len(np.unique(data.subjects)),
            "dataset.window_seconds": data.window_seconds,
        },
    )
    children = [
        log_trial_run(client, experiment, parent, r.record)
        for r in runs
        if r.record["dataset"] == name
    ]
    rows = summary[summary["dataset"] == name]
    for row in rows.itertuples():
        metrics = [
            Metric(f"{row.arm}.{m}", float(getattr(row, m)), int(time.time() * 1000), 0)
            for m in ("f1_mean", "f1_sd", "kappa_mean", "kappa_sd", "accuracy_mean")
            if _finite(getattr(row, m))
        ]
        client.log_batch(parent, metrics=metrics)
    client.log_artifacts(parent, str(output / "results"), artifact_path="results")
    if plots:
        client.log_artifacts(parent, str(plot_dir), artifact_path="plots")
    client.log_artifacts(parent, str(output / "trials" / name), artifact_path="predictions")
    with tempfile.TemporaryDirectory() as staging:
        config_path = Path(staging) / "config.yaml"
        config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(parent, str(config_path))
    if exported is not None:
        registered = cfg.export.registered_model
        register_export(
            exported, parent, registered.format(dataset=name) if registered else None, uri
        )
    client.set_terminated(parent, "FINISHED")
    return DatasetOutcome(name, parent, children, plots, exported)


def run_evaluation(cfg: EvaluateConfig) -> EvaluateResult:
    """Run (or resume) the evaluation ``cfg`` describes on the connected Ray cluster."""
    started = time.time()
    output = (Path(cfg.output_dir) / cfg.name).resolve()
    uri = tracking.configure(cfg.tracking.tracking_uri)
    inputs = prepare_inputs(cfg, output, uri)
    datasets, context = inputs.datasets, inputs.context
    cluster = runtime.connect(cfg.resources.address)
    max_concurrent = concurrency(cfg, cluster)
    if inputs.transfer_source is not None:
        ensure_transfer_source(cfg, *inputs.transfer_source)
    folds = {name: evaluation_folds(data, cfg.protocol) for name, data in datasets.items()}
    specs = trial_specs(folds, cfg.arms, cfg.protocol.seeds)
    name = experiment_name(cfg, context, specs)
    runs = run_trials(cfg, context, specs, output, name, max_concurrent)
    selected = select_runs(runs, cfg.protocol.selection)
    n_classes = {name: len(data.label_names) for name, data in datasets.items()}
    scores = scores_from_predictions(selected, n_classes, cfg.protocol.selection)
    summary = summarise(scores)
    trials = trials_frame(runs)
    markdown = write_results(output / "results", scores, summary, trials)
    tags = {
        "git_commit": tracking.git_commit(),
        "cluster_cpus": f"{cluster.get('CPU', 0):g}",
        "cluster_gpus": f"{cluster.get('GPU', 0):g}",
        "tune_experiment": name,
        "pretrained": cfg.pretrained or "",
    }
    outcomes = [
        finish_dataset(cfg, data, runs, selected, summary, output, uri, tags, inputs.pretrained)
        for data in datasets.values()
    ]
    return EvaluateResult(
        output=output,
        tracking_uri=uri,
        experiment=tags["tune_experiment"],
        markdown=markdown,
        summary_table=summary,
        scores=scores,
        trials=trials,
        datasets=outcomes,
        wall_s=time.time() - started,
    )
