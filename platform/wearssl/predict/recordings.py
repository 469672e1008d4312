"""Activity prediction on new recordings with an exported fine-tuned model.

Per recording: read (any format of :mod:`wearssl.data.devices`) → calibrate → non-wear → 30 Hz
→ windows of the model's length (:mod:`wearssl.data.preprocess`) → batched inference on the
worn windows (GPU when there is one) → class probabilities → label per window, smoothed
by the model's HMM (:mod:`wearssl.models.hmm`, Viterbi on each stretch of worn windows; off
with ``use_hmm=False``). Outputs, in ``OUT/<recording stem>/``:

* ``<stem>-timeSeries.csv.gz``: one row per window: ``time`` (window start, wall clock),
  ``label`` (empty for non-wear), ``prob_<label>`` for each class (the model's
  probabilities before smoothing; empty for non-wear) and ``non_wear`` (0/1);
* ``<stem>-dailySummary.csv``: one row per calendar day (see :func:`daily_summary`);
* ``<stem>-info.json``: the file, device, duration, wear, calibration, model and totals
  (written last: a folder without it is incomplete);
* ``<stem>-timeline.png``: one row per day over 24 h, activities coloured, non-wear grey.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import wearssl
from wearssl.data.devices import (
    CSV_COLUMNS_HELP,
    UNITS,
    CsvColumns,
    ReadOptions,
    read_recording,
    recording_stem,
)
from wearssl.data.preprocess import (
    NS_PER_DAY,
    NS_PER_SECOND,
    TARGET_RATE_HZ,
    PreprocessOptions,
    preprocess,
    split_days,
)
from wearssl.data.privacy import pseudonymise
from wearssl.models.export import PredictionModel, load_prediction_model
from wearssl.models.harnet import CheckpointError, HarNet, harnet
from wearssl.models.hmm import HmmParams, viterbi

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 3

TIMESERIES_SUFFIX = "-timeSeries.csv.gz"
SUMMARY_SUFFIX = "-dailySummary.csv"
INFO_SUFFIX = "-info.json"
TIMELINE_SUFFIX = "-timeline.png"
REPORT_NAME = "predict-report.csv"
COLLATED_NAME = "dailySummaries.csv"
PROBABILITY_PREFIX = "prob_"
MINUTES_SUFFIX = "_minutes"

MIN_WEAR_HOURS_PER_DAY = 20.0
DEFAULT_BATCH_SIZE = 512
NON_WEAR = -1
NON_WEAR_COLOUR = "#bdbdbd"
MINUTES_PER_DAY = 1440


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


# ---------------------------------------------------------------- tables


def _times(starts_ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(starts_ns, dtype="datetime64[ns]"))


def time_series(
    starts_ns: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, label_names: list[str]
) -> pd.DataFrame:
    """The per-window table written to ``<stem>-timeSeries.csv.gz``."""
    names = np.asarray([*label_names, ""], dtype=object)  # index -1 -> ""
    table = pd.DataFrame({"time": _times(starts_ns), "label": names[labels]})
    for index, name in enumerate(label_names):
        table[PROBABILITY_PREFIX + name] = probabilities[:, index]
    table["non_wear"] = (labels == NON_WEAR).astype(np.int8)
    return table


def daily_summary(
    starts_ns: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    window_seconds: int,
    min_wear_hours: float = MIN_WEAR_HOURS_PER_DAY,
) -> pd.DataFrame:
    """One row per calendar day (wall clock) that the recording covers.

    Columns: ``day``; ``recorded_minutes`` (the part of the day the recording spans,
    gaps included); ``wear_minutes``; ``nonwear_minutes``; ``<label>_minutes`` for each
    class (worn time only, nothing imputed); ``partial_day`` (recorded < 24 h, e.g. the
    first and last day); ``poor_wear``: fewer than ``min_wear_hours`` of wear per 24 h of
    recorded time, i.e. ``wear_minutes < recorded_minutes * min_wear_hours / 24`` (a full
    day needs 20 h of wear, a first day recorded from noon 10 h).
    """
    minutes_per_window = window_seconds / 60
    rows = []
    for day, part in split_days(np.asarray(starts_ns)):
        day_labels = labels[part]
        counts = np.bincount(day_labels[day_labels >= 0], minlength=len(label_names))
        recorded = len(day_labels) * minutes_per_window
        wear = float(counts.sum()) * minutes_per_window
        row: dict[str, Any] = {
            "day": day,
            "recorded_minutes": recorded,
            "wear_minutes": wear,
            "nonwear_minutes": recorded - wear,
        }
        for name, count in zip(label_names, counts, strict=True):
            row[name + MINUTES_SUFFIX] = float(count) * minutes_per_window
        row["partial_day"] = recorded < MINUTES_PER_DAY
        row["poor_wear"] = wear < recorded * min_wear_hours / 24
        rows.append(row)
    columns = ["day", "recorded_minutes", "wear_minutes", "nonwear_minutes"]
    columns += [name + MINUTES_SUFFIX for name in label_names] + ["partial_day", "poor_wear"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- timeline


LABEL_COLOURS = {
    "sleep": "#3b4cc0",
    "sedentary": "#f6c141",
    "household": "#90c987",
    "light": "#90c987",
    "walking": "#e8601c",
    "moderate-vigorous": "#dc050c",
    "running": "#a5170e",
}


def label_colours(label_names: list[str]) -> list[str]:
    """A colour per class: a fixed one for common activity names, else a tab10 colour."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return [
        LABEL_COLOURS.get(name.lower(), palette[index % len(palette)])
        for index, name in enumerate(label_names)
    ]


def _runs(codes: np.ndarray, starts_ns: np.ndarray, window_ns: int) -> list[tuple[int, int, int]]:
    """(code, first, stop) index runs of equal codes over contiguous windows."""
    breaks = (codes[1:] != codes[:-1]) | (np.diff(starts_ns) != window_ns)
    bounds = np.r_[0, np.flatnonzero(breaks) + 1, len(codes)]
    return [(int(codes[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def plot_timeline(
    path: str | Path,
    starts_ns: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    window_seconds: int,
    title: str,
) -> None:
    """One row per day, 0-24 h across, a coloured band per activity run, non-wear grey."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    days = split_days(np.asarray(starts_ns))
    colours = label_colours(label_names)
    figure = Figure(figsize=(11, 1.2 + 0.55 * max(len(days), 1)), layout="constrained")
    axes = figure.add_subplot()
    window_ns = window_seconds * NS_PER_SECOND
    hours_per_ns = 24 / NS_PER_DAY
    for row, (_, part) in enumerate(days):
        midnight = (int(starts_ns[part.start]) // NS_PER_DAY) * NS_PER_DAY
        day_starts = starts_ns[part]
        for code, a, b in _runs(labels[part], day_starts, window_ns):
            left = (int(day_starts[a]) - midnight) * hours_per_ns
            width = (b - a) * window_ns * hours_per_ns
            colour = NON_WEAR_COLOUR if code == NON_WEAR else colours[code]
            axes.broken_barh([(left, width)], (row - 0.4, 0.8), facecolors=colour, linewidth=0)
    axes.set_yticks(
        range(len(days)), [pd.Timestamp(day).strftime("%a %d %b %Y") for day, _ in days]
    )
    axes.set_ylim(len(days) - 0.5, -0.5)
    axes.set_xlim(0, 24)
    axes.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    axes.set_xlabel("time of day")
    axes.set_title(title)
    handles = [Patch(color=c, label=name) for name, c in zip(label_names, colours, strict=True)]
    handles.append(Patch(color=NON_WEAR_COLOUR, label="non-wear"))
    figure.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 7), frameon=False
    )
    figure.savefig(path, dpi=100)


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
    """What happened to one file; ``reason`` says why it failed."""

    file: str
    stem: str
    ok: bool
    reason: str = ""
    folder: str = ""
    windows: int = 0
    wear_hours: float = 0.0
    days: int = 0
    seconds: float = 0.0


def output_paths(out: str | Path, stem: str) -> dict[str, Path]:
    folder = Path(out) / stem
    return {
        "folder": folder,
        "time_series": folder / f"{stem}{TIMESERIES_SUFFIX}",
        "summary": folder / f"{stem}{SUMMARY_SUFFIX}",
        "info": folder / f"{stem}{INFO_SUFFIX}",
        "timeline": folder / f"{stem}{TIMELINE_SUFFIX}",
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), unit="ns").isoformat()


def predict_recording(
    path: str,
    model: PredictionModel,
    network: HarNet,
    out: str | Path,
    options: PredictOptions,
    subject: str,
) -> RecordingOutcome:
    """Predict one recording and write its four outputs; errors propagate.

    ``subject`` is the pseudonym written to ``info.json`` (made on the caller's side, so
    workers never need the pseudonymisation key).
    """
    began = time.perf_counter()
    timings: dict[str, float] = {}
    recording = read_recording(path, options.read)
    timings["read"] = time.perf_counter() - began

    mark = time.perf_counter()
    windowed = preprocess(
        recording.times_ns,
        recording.xyz,
        recording.sample_rate_hz,
        options.preprocessing(model.window_seconds),
    )
    timings["preprocess"] = time.perf_counter() - mark
    if len(windowed) == 0:
        raise ValueError(
            f"{path}: shorter than one {model.window_seconds}-s window "
            f"({recording.duration_seconds:.1f} s)"
        )
    source = {
        "device": recording.device,
        "sample_rate_hz": recording.sample_rate_hz,
        "duration_hours": recording.duration_seconds / 3600,
        "read_errors": recording.read_errors,
        "lost_seconds": recording.lost_seconds,
    }
    del recording

    mark = time.perf_counter()
    probabilities = classify_windows(network, windowed.windows, windowed.wear, options.batch_size)
    timings["inference"] = time.perf_counter() - mark
    mark = time.perf_counter()
    hmm = model.hmm if options.use_hmm else None
    labels = window_labels(probabilities, windowed.wear, hmm)
    timings["hmm"] = time.perf_counter() - mark

    mark = time.perf_counter()
    stem = recording_stem(path)
    paths = output_paths(out, stem)
    paths["folder"].mkdir(parents=True, exist_ok=True)
    starts = windowed.starts_ns
    time_series(starts, labels, probabilities, model.labels).to_csv(
        paths["time_series"], index=False, float_format="%.4f", date_format="%Y-%m-%d %H:%M:%S"
    )
    summary = daily_summary(starts, labels, model.labels, model.window_seconds)
    summary.to_csv(paths["summary"], index=False, float_format="%.2f")
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

    window_hours = model.window_seconds / 3600
    wear_windows = int(windowed.wear.sum())
    calibration = windowed.calibration
    info = {
        "file": Path(path).name,
        "subject": subject,
        **source,
        "start": _iso(starts[0]),
        "end": _iso(starts[-1] + model.window_seconds * NS_PER_SECOND),
        "windows": len(windowed),
        "wear_windows": wear_windows,
        "wear_hours": wear_windows * window_hours,
        "nonwear_hours": (len(windowed) - wear_windows) * window_hours,
        "gap_seconds": windowed.gap_seconds,
        "calibration": {
            "applied": calibration.applied,
            "offset_g": [float(v) for v in calibration.offset],
            "scale": [float(v) for v in calibration.scale],
            "still_periods": calibration.n_points,
            "error_before_mg": _finite_or_none(calibration.error_before_mg),
            "error_after_mg": _finite_or_none(calibration.error_after_mg),
            "reason": calibration.reason,
        },
        "model": model.identity,
        "labels": model.labels,
        "window_seconds": model.window_seconds,
        "hmm": hmm is not None,
        "activity_minutes": {
            name: float(summary[name + MINUTES_SUFFIX].sum()) for name in model.labels
        },
        "days": len(summary),
        "poor_wear_days": int(summary["poor_wear"].sum()),
        "min_wear_hours_per_day": MIN_WEAR_HOURS_PER_DAY,
        "timings_seconds": {key: round(value, 3) for key, value in timings.items()},
        "wearssl_version": wearssl.__version__,
    }
    paths["info"].write_text(json.dumps(info, indent=2) + "\n")
    return RecordingOutcome(
        path,
        stem,
        True,
        folder=str(paths["folder"]),
        windows=len(windowed),
        wear_hours=info["wear_hours"],
        days=len(summary),
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
    return (
        f"{head} {outcome.windows} windows, {outcome.days} day(s), "
        f"{outcome.wear_hours:.2f} h worn, {outcome.seconds:.1f} s"
    )


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


# ---------------------------------------------------------------- collate


def collate(folders: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Merge the daily summaries found under ``folders`` (searched recursively) into one
    table, one row per recording-day: ``recording`` (file stem), ``subject`` (pseudonym
    from the recording's info.json) and the summary's columns. Written to ``out`` (CSV,
    gzipped when it ends in ``.gz``)."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"collate: {folder} is not a folder")
        found += sorted(folder.rglob(f"*{SUMMARY_SUFFIX}"))
    if not found:
        raise ValueError(f"collate: no *{SUMMARY_SUFFIX} file under {[str(f) for f in folders]}")
    tables = []
    for path in dict.fromkeys(p.resolve() for p in found):
        stem = path.name[: -len(SUMMARY_SUFFIX)]
        info_path = path.with_name(f"{stem}{INFO_SUFFIX}")
        subject = json.loads(info_path.read_text()).get("subject") if info_path.is_file() else None
        table = pd.read_csv(path, dtype={"day": str})
        table.insert(0, "subject", subject)
        table.insert(0, "recording", stem)
        tables.append(table)
    merged = pd.concat(tables, ignore_index=True, sort=False)
    flags = ["partial_day", "poor_wear"]
    merged = merged[
        [c for c in merged.columns if c not in flags] + [c for c in flags if c in merged]
    ]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(out, index=False, float_format="%.2f")
    return merged


# ---------------------------------------------------------------- command line


EPILOG = """\
MODEL: an exported fine-tuned checkpoint file, models:/NAME/VERSION, models:/NAME@ALIAS
or runs:/RUN_ID[/PATH] (MLflow store: --tracking-uri, else MLFLOW_TRACKING_URI, else
./mlruns). Outputs go to OUT/<recording stem>/ (see docs/predict.md).

exit status: 0 every file predicted; 3 some files failed (listed in OUT/predict-report.csv
and on stderr), the others were predicted; 2 usage error (bad arguments or model).
"""


def add_predict_arguments(parser: argparse.ArgumentParser, distributed: bool) -> None:
    """Arguments of prediction; ``distributed`` adds the Ray ones and makes --out required."""
    parser.add_argument(
        "recordings", nargs="+", metavar="RECORDING", help="files, folders or globs"
    )
    parser.add_argument("--model", required=True, help="checkpoint file or MLflow spec (see below)")
    if distributed:
        parser.add_argument("--out", required=True, help="output folder")
    else:
        parser.add_argument(
            "--out", default="predictions", help="output folder (default: %(default)s)"
        )
    parser.add_argument("--no-hmm", action="store_true", help="no HMM smoothing of the labels")
    parser.add_argument("--collate", action="store_true", help=f"also write OUT/{COLLATED_NAME}")
    parser.add_argument("--tracking-uri", help="MLflow store holding models:/ and runs:/ specs")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="windows per batch"
    )
    reading = parser.add_argument_group("reading recordings")
    reading.add_argument("--rate", type=float, help="sample rate (Hz) of arrays without times")
    reading.add_argument("--start", help="ISO start time of arrays without times")
    reading.add_argument("--units", choices=UNITS, default="g", help="units of CSV and arrays")
    reading.add_argument(
        "--columns",
        action="append",
        metavar="ROLE=NAME",
        help=CSV_COLUMNS_HELP,
    )
    reading.add_argument("--timezone", default="UTC", help="wall-clock zone for absolute times")
    processing = parser.add_argument_group("preprocessing")
    processing.add_argument("--no-calibrate", action="store_true", help="skip gravity calibration")
    processing.add_argument("--no-nonwear", action="store_true", help="skip non-wear detection")
    processing.add_argument(
        "--nonwear-minutes", type=float, default=90.0, help="still minutes that make non-wear"
    )
    processing.add_argument(
        "--max-gap", type=float, default=1.0, help="seconds between samples that make a gap"
    )
    if distributed:
        ray_group = parser.add_argument_group("Ray")
        ray_group.add_argument(
            "--address", help="Ray cluster address (default: RAY_ADDRESS, else local)"
        )
        ray_group.add_argument("--num-cpus", type=int, help="CPUs of a local Ray instance")
        ray_group.add_argument(
            "--gpus-per-task",
            type=float,
            help="GPU share of a task (default: 0.25 where the cluster has GPUs)",
        )


def predict_parser(distributed: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Predict activities on raw recordings with a fine-tuned model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_predict_arguments(parser, distributed)
    return parser


def add_collate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR", help="prediction output folders")
    parser.add_argument("--out", required=True, help="the merged CSV file")


def options_from_args(args: argparse.Namespace) -> PredictOptions:
    return PredictOptions(
        read=ReadOptions(
            sample_rate_hz=args.rate,
            start=args.start,
            units=args.units,
            columns=CsvColumns.parse(args.columns),
            timezone=args.timezone,
        ),
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
    from wearssl.data.ingest import expand_inputs

    try:
        options = options_from_args(args)
        files, _ = expand_inputs(args.recordings)
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
        collated = Path(args.out) / COLLATED_NAME
        collate([args.out], collated)
        print(f"predict: daily summaries collated in {collated}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def run_collate(args: argparse.Namespace) -> int:
    try:
        table = collate(args.folders, args.out)
    except (ValueError, OSError) as error:
        print(f"collate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"collate: {table['recording'].nunique()} recording(s), {len(table)} day(s) -> {args.out}"
    )
    return EXIT_OK
