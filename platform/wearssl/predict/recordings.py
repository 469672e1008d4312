"""Activity prediction on new recordings with an exported fine-tuned model.

Per recording: read (any format of :mod:`wearssl.data.devices`) → calibrate → non-wear → 30 Hz
→ windows of the model's length (:mod:`wearssl.data.preprocess`) → batched inference on the
worn windows (GPU when there is one) → class probabilities → label per window, smoothed
by the model's HMM (:mod:`wearssl.models.hmm`, Viterbi on each stretch of worn windows; off
with ``use_hmm=False``) → ENMO per window → the outputs of
:func:`~wearssl.predict.outputs.output_paths` in ``OUT/<recording stem>/``: the time
series, minute, hour and day tables (:mod:`wearssl.predict.outputs`,
:mod:`wearssl.predict.summary`), the bouts (:mod:`wearssl.predict.bouts`), the timeline
(:mod:`wearssl.predict.timeline`) and, written last (a folder without it is incomplete),
``<stem>-Info.json`` (:mod:`wearssl.predict.info`). docs/predict.md lists every column.

The model must carry its label names, window length and preprocessing
(:func:`load_prediction_model` refuses one that does not), so a recording can never be
cut into windows the model was not trained on. Many files run as Ray tasks, one per file
(:func:`predict_files_on_ray`); a file that fails is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import wearssl
from wearssl.data.devices import (
    ReadOptions,
    read_recording,
    recording_stem,
)
from wearssl.data.ingest.recording_task import preprocess_facts, recording_facts
from wearssl.data.preprocess import NS_PER_SECOND, TARGET_RATE_HZ, PreprocessOptions, preprocess
from wearssl.data.privacy import pseudonymise
from wearssl.models.export import PredictionModel, load_prediction_model
from wearssl.models.harnet import CheckpointError, HarNet, harnet
from wearssl.models.hmm import HmmParams, viterbi
from wearssl.predict import DEFAULT_BATCH_SIZE
from wearssl.predict.bouts import bouts_table
from wearssl.predict.collate import COLLATED_NAME, collate, collated_paths
from wearssl.predict.info import (
    activity_info,
    calibration_info,
    chance_check,
    iso,
    json_ready,
    wear_info,
)
from wearssl.predict.outputs import (
    NON_WEAR,
    NS_PER_HOUR,
    NS_PER_MINUTE,
    activity_minutes,
    enmo_mg,
    minutely_table,
    output_paths,
    time_series,
    write_table,
)
from wearssl.predict.summary import (
    MIN_WEAR_HOURS_PER_DAY,
    covers_24h,
    daily_summary,
    daily_table,
)
from wearssl.predict.timeline import plot_timeline

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 3

REPORT_NAME = "predict-report.csv"
PREPROCESSING_KEY = "preprocessing"


# ---------------------------------------------------------------- the model


def inference_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_network(model: PredictionModel, device: torch.device | None = None) -> HarNet:
    """The classifier with every weight of the checkpoint (strictly), in eval mode."""
    network = harnet(model.window_seconds, n_classes=model.n_classes)
    try:
        network.load_state_dict(model.content["state_dict"], strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{model.identity['file']}: weights do not fit harnet{model.window_seconds} with "
            f"{model.n_classes} classes: {first}"
        ) from None
    return network.to(device or inference_device()).eval()


# ---------------------------------------------------------------- per-window predictions


@torch.inference_mode()
def classify_windows(
    network: HarNet, windows: np.ndarray, wear: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """``(n, k)`` float32 class probabilities of the worn windows; NaN rows elsewhere.

    Batches are gathered from the worn windows' indices, so non-wear windows are never
    copied nor classified.
    """
    device = next(network.parameters()).device
    probabilities = np.full((len(windows), network.n_classes), np.nan, np.float32)
    worn = np.flatnonzero(wear)
    for start in range(0, len(worn), batch_size):
        index = worn[start : start + batch_size]
        batch = torch.from_numpy(np.ascontiguousarray(windows[index])).to(device)
        probabilities[index] = torch.softmax(network(batch).float(), dim=1).cpu().numpy()
    return probabilities


def wear_runs(wear: np.ndarray) -> list[slice]:
    """Slices of the consecutive worn windows."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], wear.astype(np.int8), [0]])))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def window_labels(probabilities: np.ndarray, wear: np.ndarray, hmm: HmmParams | None) -> np.ndarray:
    """``(n,)`` int64 class per window, ``NON_WEAR`` (-1) where not worn.

    Without an HMM: the most probable class. With one, the Viterbi path of the predicted
    classes (the observation its emissions were estimated for: P(predicted | true)); each
    stretch of worn windows is decoded on its own (non-wear breaks the chain: what
    someone did before taking the watch off says little about after).
    """
    labels = np.full(len(probabilities), NON_WEAR, np.int64)
    for run in wear_runs(wear):
        predicted = probabilities[run].argmax(axis=1)
        labels[run] = predicted if hmm is None else viterbi(predicted, hmm)
    return labels


# ---------------------------------------------------------------- one recording


@dataclass(frozen=True)
class PredictOptions:
    """How recordings are read and processed (the window length comes from the model)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    use_hmm: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE
    calibrate: bool = True
    detect_nonwear: bool = True
    nonwear_minutes: float = 90.0
    max_gap_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def preprocessing(self, window_seconds: int) -> PreprocessOptions:
        return PreprocessOptions(
            window_seconds=window_seconds,
            target_rate_hz=TARGET_RATE_HZ,
            calibrate=self.calibrate,
            detect_nonwear=self.detect_nonwear,
            nonwear_minutes=self.nonwear_minutes,
            max_gap_seconds=self.max_gap_seconds,
        )


@dataclass
class RecordingOutcome:
    """What happened to one file: ``ok`` its outputs were written; ``status`` is ``ok``,
    ``partial`` (predicted from what the reader could recover of a truncated or corrupt
    file) or ``failed``; ``reason`` says why it failed or what the reader reported."""

    file: str
    stem: str
    ok: bool
    reason: str = ""
    status: str = ""
    folder: str = ""
    windows: int = 0
    wear_hours: float = 0.0
    days: int = 0
    seconds: float = 0.0


def write_tables(
    paths: dict[str, Path],
    starts_ns: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    enmo: np.ndarray,
    model: PredictionModel,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Write the time series, minute, hour, day and bouts tables of one recording; the
    daily and hourly tables and the overall adjusted figures, for its Info."""
    paths["folder"].mkdir(parents=True, exist_ok=True)
    per_window = (starts_ns, labels, enmo, model.labels, model.window_seconds)
    series = time_series(starts_ns, labels, probabilities, enmo, model.labels)
    write_table(series, paths["time_series"])
    minutes = activity_minutes(*per_window, NS_PER_MINUTE)
    write_table(minutely_table(minutes, model.labels), paths["minutely"])
    hourly = activity_minutes(*per_window, NS_PER_HOUR)
    write_table(hourly, paths["hourly"])
    daily, adjusted = daily_table(daily_summary(*per_window), minutes, model.labels)
    write_table(daily, paths["daily"])
    write_table(bouts_table(*per_window), paths["bouts"])
    return daily, hourly, adjusted


def predict_recording(
    path: str,
    model: PredictionModel,
    network: HarNet,
    out: str | Path,
    options: PredictOptions,
    subject: str,
) -> RecordingOutcome:
    """Predict one recording and write its outputs (:func:`output_paths`); errors propagate.

    ``subject`` is the pseudonym written to ``Info.json`` (made on the caller's side, so
    workers never need the pseudonymisation key).
    """
    began = time.perf_counter()
    timings: dict[str, float] = {}
    recording = read_recording(path, options.read)
    timings["read"] = time.perf_counter() - began

    mark = time.perf_counter()
    preprocessing = options.preprocessing(model.window_seconds)
    windowed = preprocess(
        recording.times_ns,
        recording.xyz,
        recording.sample_rate_hz,
        preprocessing,
        recording.resolution_g,
    )
    timings["preprocess"] = time.perf_counter() - mark
    if len(windowed) == 0:
        raise ValueError(
            f"{path}: shorter than one {model.window_seconds}-s window "
            f"({recording.duration_seconds:.1f} s)"
        )
    reader = recording_facts(recording)
    duration_hours = recording.duration_seconds / 3600
    partial = recording.read_errors > 0 or bool(recording.lost_seconds)
    del recording

    mark = time.perf_counter()
    probabilities = classify_windows(network, windowed.windows, windowed.wear, options.batch_size)
    enmo = enmo_mg(windowed.windows, windowed.wear)
    timings["inference"] = time.perf_counter() - mark
    mark = time.perf_counter()
    hmm = model.hmm if options.use_hmm else None
    labels = window_labels(probabilities, windowed.wear, hmm)
    timings["hmm"] = time.perf_counter() - mark

    mark = time.perf_counter()
    stem = recording_stem(path)
    paths = output_paths(out, stem)
    starts = windowed.starts_ns
    daily, hourly, adjusted = write_tables(paths, starts, labels, probabilities, enmo, model)
    plot_timeline(
        paths["timeline"],
        starts,
        labels,
        model.labels,
        model.window_seconds,
        f"{stem}: predicted activity ({model.identity['name']}"
        + (", HMM-smoothed)" if hmm is not None else ")"),
    )
    timings["write"] = time.perf_counter() - mark

    quality = preprocess_facts(windowed, preprocessing)
    chance = chance_check(model.content, model.n_classes)
    promoted = {"device", "device_id", "sample_rate_hz", "read_errors", "reader_message"}
    info = {
        "Filename": Path(path).name,
        "Subject": subject,
        "Device": reader["device"],
        "DeviceID": reader["device_id"],
        "SampleRate": reader["sample_rate_hz"],
        "StartTime": iso(starts[0]),
        "EndTime": iso(starts[-1] + model.window_seconds * NS_PER_SECOND),
        "Duration(hours)": duration_hours,
        "ReadOK": not partial,
        "ReadErrors": reader["read_errors"],
        "ReaderMessage": reader["reader_message"],
        "Reader": {key: value for key, value in reader.items() if key not in promoted},
        "Calibration": calibration_info(quality, windowed.calibration),
        **wear_info(starts, labels, model.window_seconds, covers_24h(hourly)),
        "Interrupts": {"Count": quality["gaps"], "Seconds": quality["gap_seconds"]},
        **activity_info(daily, adjusted, enmo, model.labels),
        "MinWearHoursPerDay": MIN_WEAR_HOURS_PER_DAY,
        "Labels": model.labels,
        "WindowSeconds": model.window_seconds,
        "HMM": hmm is not None,
        "Model": {
            **model.identity,
            "ValidationScores": chance.scores,
            "ChanceLevels": chance.chance,
            "NearChance": chance.near_chance,
            "ChanceCheck": chance.message,
        },
        "Arguments": {
            "model": model.identity["spec"],
            "model_sha256": model.identity["sha256"],
            **asdict(options),
        },
        "Timings(s)": {key: round(value, 3) for key, value in timings.items()},
        "WearsslVersion": wearssl.__version__,
    }
    paths["info"].write_text(json.dumps(json_ready(info), indent=2) + "\n")
    return RecordingOutcome(
        path,
        stem,
        True,
        reason=reader["reader_message"] if partial else "",
        status="partial" if partial else "ok",
        folder=str(paths["folder"]),
        windows=len(windowed),
        wear_hours=info["WearTime(days)"] * 24,
        days=len(daily),
        seconds=time.perf_counter() - began,
    )


def predict_file(
    path: str,
    model: PredictionModel,
    network: HarNet,
    out: str | Path,
    options: PredictOptions,
    subject: str,
) -> RecordingOutcome:
    """:func:`predict_recording`, with any failure turned into a failed outcome."""
    began = time.perf_counter()
    try:
        return predict_recording(path, model, network, out, options, subject)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
        return RecordingOutcome(
            path,
            recording_stem(path),
            False,
            reason=f"{type(error).__name__}: {error}",
            status="failed",
            seconds=time.perf_counter() - began,
        )


def _predict_task(
    path: str, model: PredictionModel, out: str, options: PredictOptions, subject: str
) -> RecordingOutcome:
    """One Ray task: build the network once, predict one file."""
    return predict_file(path, model, build_network(model), out, options, subject)


# ---------------------------------------------------------------- many recordings


Reporter = Callable[[RecordingOutcome, int, int], None]


def progress_line(outcome: RecordingOutcome, done: int, total: int) -> str:
    head = f"predict [{done}/{total}] {outcome.stem}:"
    if not outcome.ok:
        return f"{head} FAILED: {outcome.reason}"
    line = (
        f"{head} {outcome.windows} windows, {outcome.days} day(s), "
        f"{outcome.wear_hours:.2f} h worn, {outcome.seconds:.1f} s"
    )
    return f"{line}; partial: {outcome.reason}" if outcome.status == "partial" else line


def print_progress(outcome: RecordingOutcome, done: int, total: int) -> None:
    print(
        progress_line(outcome, done, total),
        file=sys.stdout if outcome.ok else sys.stderr,
        flush=True,
    )


def predict_files(
    files: list[str],
    model: PredictionModel,
    out: str | Path,
    options: PredictOptions,
    report: Reporter = print_progress,
) -> list[RecordingOutcome]:
    """Predict files one after the other in this process (the network built once)."""
    network = build_network(model)
    outcomes = []
    for path in files:
        outcomes.append(
            predict_file(path, model, network, out, options, pseudonymise(recording_stem(path)))
        )
        report(outcomes[-1], len(outcomes), len(files))
    return outcomes


def predict_files_on_ray(
    files: list[str],
    model: PredictionModel,
    out: str | Path,
    options: PredictOptions,
    gpus_per_task: float = 0.0,
    report: Reporter = print_progress,
) -> list[RecordingOutcome]:
    """One Ray task per file (Ray must be initialised); results reported as they finish.

    The model goes into the object store once; each task builds its network from it. A
    task that dies (worker crash, out of memory) is reported as that file's failure.
    """
    import ray

    model_ref = ray.put(model)
    task = ray.remote(_predict_task).options(num_cpus=1, num_gpus=gpus_per_task, max_retries=1)
    pending = {
        task.remote(path, model_ref, str(out), options, pseudonymise(recording_stem(path))): path
        for path in files
    }
    outcomes = []
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        path = pending.pop(ready)
        try:
            outcome = ray.get(ready)
        except ray.exceptions.RayError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            outcome = RecordingOutcome(
                path,
                recording_stem(path),
                False,
                reason=f"the task failed: {type(error).__name__}: {first}",
                status="failed",
            )
        outcomes.append(outcome)
        report(outcome, len(outcomes), len(files))
    return outcomes


def write_report(out: str | Path, outcomes: list[RecordingOutcome]) -> Path:
    """``OUT/predict-report.csv``: every file of this run, its status and reason."""
    path = Path(out) / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        [asdict(o) for o in outcomes], columns=list(RecordingOutcome.__dataclass_fields__)
    ).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- command line


def options_from_args(args: argparse.Namespace) -> PredictOptions:
    return PredictOptions(
        read=ReadOptions.from_arguments(args),
        use_hmm=not args.no_hmm,
        batch_size=args.batch_size,
        calibrate=not args.no_calibrate,
        detect_nonwear=not args.no_nonwear,
        nonwear_minutes=args.nonwear_minutes,
        max_gap_seconds=args.max_gap,
    )


def check_distinct_stems(files: list[str]) -> None:
    """Refuse files whose outputs would land in the same folder (``OUT/<stem>``)."""
    by_stem: dict[str, list[str]] = {}
    for path in files:
        by_stem.setdefault(recording_stem(path), []).append(path)
    clashes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if clashes:
        stem, paths = next(iter(clashes.items()))
        raise ValueError(
            f"{len(clashes)} file name(s) repeat in different folders, e.g. {stem!r}: "
            f"{paths}; their outputs would overwrite each other in OUT/{stem}"
        )


def _gpus_per_task(requested: float | None, cluster: dict[str, float]) -> float:
    if requested is not None:
        return requested
    return 0.25 if cluster.get("GPU", 0) > 0 else 0.0


def run_predict(args: argparse.Namespace, distributed: bool) -> int:
    """Predict the files ``args`` name (Ray tasks when ``distributed``); the exit status."""
    from wearssl.cli import require_inputs_found, require_output_folder
    from wearssl.data.ingest.inputs import expand_inputs

    try:
        require_output_folder(args.out)
        options = options_from_args(args)
        files, _ = expand_inputs(args.recordings)
        require_inputs_found(files, args.recordings)
        check_distinct_stems(files)
        model = load_prediction_model(args.model, args.tracking_uri)
    except (ValueError, FileNotFoundError) as error:
        print(f"predict: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if options.use_hmm and model.hmm is None:
        print(
            f"predict: warning: model {args.model} has no HMM parameters; labels are not "
            f"smoothed (give --no-hmm to silence this)",
            file=sys.stderr,
        )
    chance = chance_check(model.content, model.n_classes)
    if chance.near_chance is not False:
        print(f"predict: warning: model {args.model}: {chance.message}", file=sys.stderr)
    print(f"predict: {len(files)} file(s) with {model.identity['name']} -> {args.out}", flush=True)
    began = time.perf_counter()
    if distributed:
        from wearssl.infra.ray_runtime import connect

        cluster = connect(args.address, args.num_cpus)
        gpus = _gpus_per_task(args.gpus_per_task, cluster)
        outcomes = predict_files_on_ray(files, model, args.out, options, gpus)
    else:
        outcomes = predict_files(files, model, args.out, options)
    report = write_report(args.out, outcomes)
    failed = [o for o in outcomes if not o.ok]
    print(
        f"predict: {len(outcomes) - len(failed)} predicted, {len(failed)} failed in "
        f"{time.perf_counter() - began:.1f} s; report: {report}",
        flush=True,
    )
    for outcome in failed:
        print(f"predict: failed: {outcome.file}: {outcome.reason}", file=sys.stderr)
    if args.collate and len(failed) < len(outcomes):
        collated = collated_paths(Path(args.out) / COLLATED_NAME)
        collate([args.out], collated["daily"])
        print(
            f"predict: collated in {', '.join(str(path) for path in collated.values())}",
            flush=True,
        )
    return EXIT_FAILED if failed else EXIT_OK


def run_collate(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tables = collate(args.folders, args.out)
    except (ValueError, OSError) as error:
        print(f"collate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(
        f"collate: {len(tables['info'])} recording(s), {len(tables['daily'])} day(s) -> "
        f"{', '.join(str(path) for path in collated_paths(args.out).values())}"
    )
    return EXIT_OK
