"""Prediction on new recordings: model checks, per-window labels, daily summaries, outputs,
the ``wearssl`` command, the Ray job, every real device file, and accuracy on a synthetic
recording with a known activity schedule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import pseudonym_key_set_to
from wearssl.cli import main
from wearssl.data.devices import CsvColumns, ReadOptions, recording_format, recording_stem
from wearssl.data.preprocess import NS_PER_DAY, NS_PER_SECOND
from wearssl.data.synthetic import ACTIVITIES, synth_recording, synthetic_labelled_set
from wearssl.data.synthetic import NON_WEAR as SYNTHETIC_NON_WEAR
from wearssl.models.harnet import CheckpointError, harnet, save_checkpoint
from wearssl.models.hmm import HmmParams, attach_hmm, fit_hmm, label_sequences
from wearssl.predict.outputs import (
    INFO_SUFFIX,
    NON_WEAR,
    PROBABILITY_PREFIX,
    output_paths,
    time_series,
)
from wearssl.predict.recordings import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    REPORT_NAME,
    PredictOptions,
    build_network,
    load_prediction_model,
    predict_files_on_ray,
    window_labels,
)
from wearssl.predict.summary import daily_summary
from wearssl.predict.timeline import plot_timeline

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "jobs" / "predict.py"
DAY0_NS = int(np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64))
PREPROCESSING = {"sample_rate_hz": 30, "units": "g", "window_seconds": 5}
INFO_KEYS = {
    "Filename", "Subject", "Device", "DeviceID", "SampleRate", "StartTime", "EndTime",
    "ReadOK", "ReadErrors", "ReaderMessage", "Reader", "Calibration", "Windows",
    "WearTime(days)", "NonwearTime(days)", "NonwearEpisodes", "Covers24hOK", "Interrupts",
    "ActivityMinutes", "ENMO(mg)", "PerDayAverages", "Adjusted", "Days", "PoorWearDays",
    "Labels", "WindowSeconds", "HMM", "Model", "Arguments", "WearsslVersion",
}  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _module_pseudonym_key():
    yield from pseudonym_key_set_to("test-predict-key")


def sticky_hmm(k: int, stay: float = 0.95, accuracy: float = 0.8) -> HmmParams:
    transitions = np.full((k, k), (1 - stay) / (k - 1))
    np.fill_diagonal(transitions, stay)
    emissions = np.full((k, k), (1 - accuracy) / (k - 1))
    np.fill_diagonal(emissions, accuracy)
    return HmmParams(np.full(k, 1 / k), transitions, emissions)


def write_recording(path: Path, subject_index: int, days: float, start: str) -> np.ndarray:
    """A synthetic recording as an .npz with times (ms) and samples; returns the truth."""
    recording = synth_recording(subject_index, seed=3, days=days, start=start)
    np.savez(path, xyz=recording.xyz, time=recording.times_ms)
    return recording.activity


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained 5-s classifier of the synthetic activities, with and without an HMM."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    network = harnet(5, n_classes=len(ACTIVITIES))
    paths = {name: folder / f"{name}.pt" for name in ("plain", "smoothed", "weak")}
    for name, path in paths.items():
        # "weak": validation scores at chance for 5 classes (F1 1/5, cross-entropy ln 5)
        scores = {"f1_mean": 0.21, "val_loss": 1.6} if name == "weak" else {}
        save_checkpoint(
            path, network, window_seconds=5, labels=list(ACTIVITIES),
            extra={"preprocessing": PREPROCESSING, "dataset": "synthetic", **scores},
        )  # fmt: skip
    attach_hmm(paths["smoothed"], sticky_hmm(len(ACTIVITIES)))
    attach_hmm(paths["weak"], sticky_hmm(len(ACTIVITIES)))
    return paths


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """10 minutes across midnight (2 calendar days), and a file no reader accepts."""
    folder = tmp_path_factory.mktemp("recordings")
    good = folder / "P01.npz"
    write_recording(good, subject_index=1, days=10 / 1440, start="2024-01-01T23:55:00")
    broken = folder / "P02.npz"
    broken.write_text("not a zip archive")
    return {"good": good, "broken": broken}


# ---------------------------------------------------------------- the model


def test_checkpoint_without_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nolabels.pt"
    save_checkpoint(
        path, harnet(5, n_classes=3), window_seconds=5, extra={"preprocessing": PREPROCESSING}
    )
    with pytest.raises(CheckpointError, match=r"nolabels\.pt: has no class labels"):
        load_prediction_model(str(path))


def test_checkpoint_whose_preprocessing_has_another_window_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.pt"
    save_checkpoint(
        path, harnet(5, n_classes=2), window_seconds=5, labels=["a", "b"],
        extra={"preprocessing": {**PREPROCESSING, "window_seconds": 10}},
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=r"mismatch\.pt: window length mismatch.*5-s.*10"):
        load_prediction_model(str(path))


def test_checkpoint_without_preprocessing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    save_checkpoint(path, harnet(5, n_classes=2), window_seconds=5, labels=["a", "b"])
    with pytest.raises(CheckpointError, match=r"bare\.pt: has no 'preprocessing' entry"):
        load_prediction_model(str(path))


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothere.pt"):
        load_prediction_model(str(tmp_path / "nothere.pt"))


def test_model_carries_labels_window_and_hmm(models: dict[str, Path]) -> None:
    plain, smoothed = (load_prediction_model(str(models[k])) for k in ("plain", "smoothed"))
    assert plain.labels == list(ACTIVITIES) and plain.window_seconds == 5
    assert plain.hmm is None and smoothed.hmm is not None
    assert plain.identity["file"] == "plain.pt" and len(plain.identity["sha256"]) == 64
    network = build_network(plain)
    assert not network.training and network.n_classes == len(ACTIVITIES)


# ---------------------------------------------------------------- labels and tables


def test_non_wear_windows_get_no_label_and_hmm_runs_per_wear_stretch() -> None:
    k = 3
    probabilities = np.tile(np.array([[0.8, 0.1, 0.1]]), (20, 1))
    probabilities[4] = [0.1, 0.8, 0.1]  # an isolated flip inside the first stretch
    probabilities[12:] = [0.1, 0.1, 0.8]  # the second stretch is another activity
    wear = np.ones(20, bool)
    wear[9:12] = False
    raw = window_labels(probabilities, wear, None)
    smoothed = window_labels(probabilities, wear, sticky_hmm(k, stay=0.99))
    assert (raw[~wear] == NON_WEAR).all() and (smoothed[~wear] == NON_WEAR).all()
    assert raw[4] == 1 and smoothed[4] == 0
    assert (smoothed[:9] == 0).all() and (smoothed[12:] == 2).all()


def test_time_series_columns_and_empty_non_wear_rows() -> None:
    starts = DAY0_NS + np.arange(4) * 5 * NS_PER_SECOND
    probabilities = np.array([[0.9, 0.1], [np.nan, np.nan], [0.2, 0.8], [0.6, 0.4]], np.float32)
    labels = np.array([0, NON_WEAR, 1, 0])
    enmo = np.array([5.0, np.nan, 120.0, 8.0])
    table = time_series(starts, labels, probabilities, enmo, ["sit", "walk"])
    assert list(table.columns) == [
        "time", "label", "prob_sit", "prob_walk", "enmo_mg", "non_wear",
    ]  # fmt: skip
    assert table["label"].tolist() == ["sit", "", "walk", "sit"]
    assert table["non_wear"].tolist() == [0, 1, 0, 0]
    assert table.loc[1, ["prob_sit", "prob_walk"]].isna().all()


def test_daily_summary_minutes_and_poor_wear_on_partial_days() -> None:
    window = 60  # 1-minute windows keep the arithmetic readable
    first = DAY0_NS + 12 * 3600 * NS_PER_SECOND  # from noon: a 12-h first day
    starts = first + np.arange((12 + 24) * 60) * window * NS_PER_SECOND
    labels = np.full(len(starts), NON_WEAR)
    labels[: 9 * 60] = 0  # day 1: 9 h worn < 12 h x 20/24 = 10 h: poor
    labels[12 * 60 : 12 * 60 + 21 * 60] = 1  # day 2: 21 h worn >= 20 h: good
    labels[12 * 60 : 12 * 60 + 30] = 0
    enmo = np.where(labels == NON_WEAR, np.nan, 10.0 + 20.0 * labels)
    summary = daily_summary(starts, labels, enmo, ["sit", "walk"], window)
    assert summary["day"].tolist() == ["2024-01-01", "2024-01-02"]
    assert summary["recorded_minutes"].tolist() == [720, 1440]
    assert summary["wear_minutes"].tolist() == [540, 1260]
    assert summary["nonwear_minutes"].tolist() == [180, 180]
    assert summary["sit_minutes"].tolist() == [540, 30]
    assert summary["walk_minutes"].tolist() == [0, 1230]
    np.testing.assert_allclose(summary["enmo_mg"], [10.0, (30 * 10 + 1230 * 30) / 1260])
    assert summary["partial_day"].tolist() == [True, False]
    assert summary["poor_wear"].tolist() == [True, False]


def test_timeline_png_has_a_row_per_day(tmp_path: Path) -> None:
    heights = []
    for days in (1, 3):
        starts = DAY0_NS + np.arange(days * 288) * 300 * NS_PER_SECOND
        labels = np.arange(len(starts)) // 40 % 3
        labels[100:130] = NON_WEAR
        path = tmp_path / f"{days}.png"
        plot_timeline(path, starts, labels, ["sit", "walk", "run"], 300, "test")
        assert path.read_bytes()[:8] == PNG_MAGIC
        heights.append(int.from_bytes(path.read_bytes()[20:24], "big"))
    assert heights[1] > heights[0]


# ---------------------------------------------------------------- outputs and commands


def check_outputs(out: Path, stem: str, labels: list[str]) -> dict:
    paths = output_paths(out, stem)
    series = pd.read_csv(paths["time_series"])
    assert list(series.columns) == [
        "time",
        "label",
        *(PROBABILITY_PREFIX + n for n in labels),
        "enmo_mg",
        "non_wear",
    ]
    worn = series["non_wear"] == 0
    assert series.loc[worn, "enmo_mg"].notna().all() and series.loc[~worn, "enmo_mg"].isna().all()
    assert set(series.loc[worn, "label"]) <= set(labels)
    assert series.loc[~worn, "label"].isna().all()
    np.testing.assert_allclose(
        series.loc[worn, [PROBABILITY_PREFIX + n for n in labels]].sum(axis=1), 1.0, atol=1e-3
    )
    summary = pd.read_csv(paths["daily"])
    assert {"day", "wear_minutes", "poor_wear", *(n + "_minutes" for n in labels)} <= set(
        summary.columns
    )
    info = json.loads(paths["info"].read_text())
    assert INFO_KEYS <= info.keys()
    assert info["Windows"] == len(series) and info["Labels"] == labels
    assert info["Subject"].startswith("p") and stem not in info["Subject"]
    png = paths["timeline"].read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1000
    return info


def test_cli_predicts_reports_failures_and_collates(
    models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    files = [str(recordings["good"]), str(recordings["broken"])]
    status = main(["predict", *files, "--model", str(models["plain"]), "--out", str(out)])
    assert status == EXIT_FAILED
    err = capsys.readouterr().err
    assert "no HMM parameters" in err and "P02.npz" in err
    assert "carries no validation scores" in err
    info = check_outputs(out, "P01", list(ACTIVITIES))
    assert info["Days"] == 2 and info["HMM"] is False and info["Windows"] == 120
    report = pd.read_csv(out / REPORT_NAME)
    assert report.set_index("stem")["ok"].to_dict() == {"P01": True, "P02": False}
    assert not (out / "P02").exists()

    collated = tmp_path / "all.csv"
    assert main(["collate", str(out), "--out", str(collated)]) == EXIT_OK
    table = pd.read_csv(collated)
    assert table["recording"].tolist() == ["P01", "P01"]
    assert table["day"].tolist() == ["2024-01-01", "2024-01-02"]
    assert table["subject"].iloc[0] == info["Subject"]


def test_cli_smooths_with_the_models_hmm(
    models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = [
        "predict",
        str(recordings["good"]),
        "--model",
        str(models["smoothed"]),
        "--out",
        str(out),
    ]
    assert main(argv) == EXIT_OK
    assert json.loads((out / "P01" / f"P01{INFO_SUFFIX}").read_text())["HMM"] is True
    assert main([*argv, "--no-hmm"]) == EXIT_OK
    assert json.loads((out / "P01" / f"P01{INFO_SUFFIX}").read_text())["HMM"] is False


def test_cli_usage_errors(
    models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path
) -> None:
    good = str(recordings["good"])
    assert (
        main(["predict", str(tmp_path / "absent.npz"), "--model", str(models["plain"])])
        == EXIT_USAGE
    )
    assert main(["predict", good, "--model", str(tmp_path / "absent.pt")]) == EXIT_USAGE
    twin = tmp_path / "other" / "P01.npz"
    twin.parent.mkdir()
    twin.write_bytes(recordings["good"].read_bytes())
    argv = ["predict", good, str(twin), "--model", str(models["plain"]), "--out", str(tmp_path)]
    assert main(argv) == EXIT_USAGE  # two files would write the same output folder
    assert (
        main(["collate", str(tmp_path / "empty"), "--out", str(tmp_path / "x.csv")]) == EXIT_USAGE
    )


def test_cli_writes_every_table_and_info_and_warns_of_a_model_near_chance(
    models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    argv = ["predict", str(recordings["good"]), "--model", str(models["weak"]), "--out", str(out)]
    assert main(argv) == EXIT_OK
    assert "near chance on its validation data" in capsys.readouterr().err
    paths = output_paths(out, "P01")
    series = pd.read_csv(paths["time_series"], parse_dates=["time"])
    worn = series[series["non_wear"] == 0]

    minutely = pd.read_csv(paths["minutely"])
    assert list(minutely.columns) == ["time", "label", "enmo_mg", "wear_fraction"]
    assert len(minutely) == 10  # 23:55 to 00:05
    hourly = pd.read_csv(paths["hourly"])
    assert hourly["time"].tolist() == ["2024-01-01 23:00:00", "2024-01-02 00:00:00"]
    assert hourly["wear_minutes"].sum() == pytest.approx(len(worn) * 5 / 60)
    for name in ACTIVITIES:
        minutes = (worn["label"] == name).sum() * 5 / 60
        assert hourly[f"{name}_minutes"].sum() == pytest.approx(minutes)
    assert hourly["enmo_mg"].mean() == pytest.approx(
        worn.groupby(worn["time"].dt.hour)["enmo_mg"].mean().mean(), abs=1e-3
    )
    daily = pd.read_csv(paths["daily"])
    assert {"enmo_mg", "enmo_mg_adjusted", *(f"{n}_minutes_adjusted" for n in ACTIVITIES)} <= set(
        daily.columns
    )
    bouts = pd.read_csv(paths["bouts"])
    assert list(bouts.columns) == ["start", "end", "duration_minutes", "label", "enmo_mg"]
    assert bouts["duration_minutes"].sum() == pytest.approx(len(worn) * 5 / 60)

    info = json.loads(paths["info"].read_text())
    assert info["ReadOK"] is True and info["ReadErrors"] == 0
    assert info["Calibration"]["Status"] in {"applied", "refused"}
    assert info["Interrupts"] == {"Count": 0, "Seconds": 0.0}
    assert info["Covers24hOK"] is False
    assert info["NonwearEpisodes"]["Count"] == len(info["NonwearEpisodes"]["List"])
    assert info["WearTime(days)"] == pytest.approx(len(worn) * 5 / 86400)
    assert info["Model"]["NearChance"] is True
    assert info["Model"]["ValidationScores"] == {"f1_mean": 0.21, "val_loss": 1.6}
    assert info["Arguments"]["model_sha256"] == info["Model"]["sha256"]
    assert info["Arguments"]["use_hmm"] is True and info["Arguments"]["nonwear_minutes"] == 90


def test_collate_merges_info_hourly_and_bouts_once_per_recording(
    models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """The same recording in two folders is collated once; a folder written with the
    older names (-dailySummary.csv, -info.json) is still read."""
    first, second, legacy = (tmp_path / name for name in ("first", "second", "legacy"))
    argv = ["predict", str(recordings["good"]), "--model", str(models["plain"]), "--out"]
    assert main([*argv, str(first)]) == EXIT_OK
    shutil.copytree(first / "P01", second / "P01")
    shutil.copytree(first / "P01", legacy / "P03")
    for path in (legacy / "P03").iterdir():
        path.rename(path.with_name(path.name.replace("P01", "P03")))
    (legacy / "P03" / "P03-Daily.csv").rename(legacy / "P03" / "P03-dailySummary.csv")
    (legacy / "P03" / "P03-Info.json").rename(legacy / "P03" / "P03-info.json")
    capsys.readouterr()

    out = tmp_path / "all-days.csv"
    assert main(["collate", str(first), str(second), str(legacy), "--out", str(out)]) == EXIT_OK
    assert "recording 'P01' is summarised in both" in capsys.readouterr().err
    single = {
        kind: pd.read_csv(output_paths(first, "P01")[kind]) for kind in ("daily", "hourly", "bouts")
    }
    info = json.loads(output_paths(first, "P01")["info"].read_text())
    daily = pd.read_csv(out, dtype={"day": str})
    assert daily["recording"].tolist() == ["P01"] * 2 + ["P03"] * 2
    merged_info = pd.read_csv(tmp_path / "all-days-Info.csv")
    assert merged_info["recording"].tolist() == ["P01", "P03"]
    assert merged_info["subject"].iloc[0] == info["Subject"]
    assert merged_info["WearTime(days)"].iloc[0] == pytest.approx(info["WearTime(days)"])
    assert merged_info["Model.sha256"].iloc[0] == info["Model"]["sha256"]
    for kind in ("hourly", "bouts"):
        merged = pd.read_csv(tmp_path / f"all-days-{kind.title()}.csv.gz")
        assert merged["recording"].tolist() == ["P01"] * len(single[kind]) + ["P03"] * len(
            single[kind]
        )
        assert list(merged.columns) == ["recording", "subject", *single[kind].columns]


@pytest.mark.slow
def test_ray_tasks_predict_files_and_report_failures(
    ray_local, models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path
) -> None:
    model = load_prediction_model(str(models["smoothed"]))
    seen = []
    outcomes = predict_files_on_ray(
        [str(recordings["broken"]), str(recordings["good"])],
        model,
        tmp_path,
        PredictOptions(),
        report=lambda outcome, done, total: seen.append((done, total)),
    )
    assert sorted(seen) == [(1, 2), (2, 2)]
    by_stem = {o.stem: o for o in outcomes}
    assert by_stem["P01"].ok and by_stem["P01"].windows == 120
    assert not by_stem["P02"].ok and "P02.npz" in by_stem["P02"].reason
    check_outputs(tmp_path, "P01", list(ACTIVITIES))


@pytest.mark.slow
def test_job_runs_on_ray_with_collate(
    models: dict[str, Path], recordings: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(JOB), str(recordings["good"]), str(recordings["broken"]),
         "--model", str(models["smoothed"]), "--out", str(out), "--collate"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_ADDRESS": "local"},
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    assert "predict [2/2]" in result.stdout + result.stderr
    assert "P02.npz" in result.stderr
    assert len(pd.read_csv(out / "collated-Daily.csv")) == 2


# ---------------------------------------------------------------- real device files


# the GGIR CSVs have no header row: time (unix seconds or wall-clock text), x, y, z, ...
GGIR_CSV_COLUMNS = CsvColumns.parse(["time=0,x=1,y=2,z=3"])


@pytest.mark.slow
@pytest.mark.realdata
def test_every_device_file_is_predicted_or_reported(
    shared_data: Path, ray_local, models: dict[str, Path], tmp_path: Path
) -> None:
    """Every file is read (the CSVs by column position; the columns do not touch the
    device formats). Every device file is predicted; the two GGIR CSVs hold 2.1 s each,
    less than the shortest window a model has (5 s), so they are reported as too short:
    read, but with nothing to predict."""
    files = sorted(str(p) for p in (shared_data / "devices").iterdir() if recording_format(p.name))
    if not files:
        pytest.skip("no recordings in the devices folder")
    model = load_prediction_model(str(models["smoothed"]))
    options = PredictOptions(read=ReadOptions(columns=GGIR_CSV_COLUMNS))
    outcomes = predict_files_on_ray(files, model, tmp_path, options, report=lambda *_: None)
    assert sorted(o.file for o in outcomes) == files
    failed = {o.stem: o.reason for o in outcomes if not o.ok}
    for stem, reason in failed.items():
        assert reason and stem in reason, f"{stem}: the reason should name the file: {reason}"
    csvs = {recording_stem(f) for f in files if recording_format(f) == "csv"}
    assert csvs == {"GGIR_ax3_testfile_unix_timestamps", "GGIR_ax6_testfile_formatted_timestamps"}
    assert set(failed) == csvs, failed
    for stem in csvs:  # read (a 2.1-s duration), not refused for their columns
        assert "shorter than one 5-s window (2.1 s)" in failed[stem], failed[stem]
    predicted = [o for o in outcomes if o.ok]
    assert len(predicted) == len(files) - 2
    for outcome in predicted:
        info = check_outputs(tmp_path, outcome.stem, list(ACTIVITIES))
        assert info["Windows"] == outcome.windows > 0


# ---------------------------------------------------------------- accuracy against a known schedule


def window_truth(activity: np.ndarray, window_samples: int) -> np.ndarray:
    """The most frequent activity (or non-wear) of each window of samples."""
    per_window = activity[: len(activity) // window_samples * window_samples].reshape(
        -1, window_samples
    )
    shifted = per_window.astype(np.int64) + 1  # non-wear -1 -> 0
    counts = np.apply_along_axis(np.bincount, 1, shifted, minlength=len(ACTIVITIES) + 1)
    return counts.argmax(axis=1) - 1


def train_synthetic_model(path: Path, window_seconds: int) -> None:
    """Fine-tune a small harnet on synthetic subjects 0-7 (6 train, 2 held out) and attach
    an HMM fitted on the held-out subjects' predictions."""
    from wearssl.config.evaluate import Finetune
    from wearssl.downstream.finetune import build_classifier, fit_classifier, predict_probabilities

    data = synthetic_labelled_set(
        8, seed=0, window_seconds=window_seconds, minutes_per_activity=2.0
    )
    subjects = np.unique(data.subjects)
    train = np.isin(data.subjects, subjects[:6])
    network = build_classifier("scratch", window_seconds, len(ACTIVITIES), seed=0)
    fit_classifier(
        network,
        (data.windows[train], data.labels[train]),
        (data.windows[~train], data.labels[~train]),
        Finetune(lr=1e-3, batch_size=64, max_epochs=6, patience=2),
        seed=0,
    )
    held_out = predict_probabilities(network, data.windows[~train], 256)
    sequences = label_sequences(
        data.labels[train], data.subjects[train], data.times_ms[train], window_seconds * 1000
    )
    save_checkpoint(
        path, network, window_seconds=window_seconds, labels=list(ACTIVITIES),
        extra={"preprocessing": {**PREPROCESSING, "window_seconds": window_seconds},
               "dataset": "synthetic", "arm": "scratch"},
    )  # fmt: skip
    attach_hmm(path, fit_hmm(sequences, held_out, data.labels[~train], len(ACTIVITIES)))


@pytest.mark.slow
@pytest.mark.heavy
def test_accuracy_and_daily_minutes_on_a_known_schedule(tmp_path: Path) -> None:
    window_seconds = 5
    model_path = tmp_path / "synthetic.pt"
    train_synthetic_model(model_path, window_seconds)
    recording = tmp_path / "subject99.npz"
    activity = write_recording(recording, subject_index=99, days=1, start="2024-01-01T00:00:00")
    truth = window_truth(activity, window_seconds * 30)

    out = tmp_path / "out"
    assert (
        main(["predict", str(recording), "--model", str(model_path), "--out", str(out)]) == EXIT_OK
    )
    series = pd.read_csv(output_paths(out, "subject99")["time_series"])
    assert len(series) == len(truth) == NS_PER_DAY // (window_seconds * NS_PER_SECOND)
    probability_columns = [PROBABILITY_PREFIX + name for name in ACTIVITIES]
    scored = (series["non_wear"] == 0).to_numpy() & (truth != SYNTHETIC_NON_WEAR)
    raw = series[probability_columns].to_numpy()[scored].argmax(axis=1)
    smoothed = series["label"][scored].map({n: i for i, n in enumerate(ACTIVITIES)}).to_numpy()
    raw_accuracy = float((raw == truth[scored]).mean())
    hmm_accuracy = float((smoothed == truth[scored]).mean())
    summary = pd.read_csv(output_paths(out, "subject99")["daily"])
    minutes = window_seconds / 60
    rows = [
        (name, float(summary[f"{name}_minutes"].sum()), float((truth == index).sum() * minutes))
        for index, name in enumerate(ACTIVITIES)
    ]
    print(
        f"\nper-window accuracy on {scored.sum()} worn windows: "
        f"raw {raw_accuracy:.3f}, HMM {hmm_accuracy:.3f}"
    )
    for name, predicted, true in rows:
        print(f"{name:>10}: predicted {predicted:7.1f} min, true {true:7.1f} min")
    assert raw_accuracy > 0.6
    assert hmm_accuracy >= raw_accuracy - 0.01
    assert sum(p for _, p, _ in rows) == pytest.approx(summary["wear_minutes"].sum())
    walking = rows[ACTIVITIES.index("walking")]
    assert walking[1] == pytest.approx(walking[2], rel=0.15)
    # all minutes together: far closer to the truth than calling every worn minute the
    # most common activity
    error = sum(abs(predicted - true) for _, predicted, true in rows)
    commonest = max(rows, key=lambda row: row[2])[0]
    worn = float(summary["wear_minutes"].sum())
    baseline = sum(abs((worn if name == commonest else 0.0) - true) for name, _, true in rows)
    print(f"minutes off in total: {error:.0f} (everything '{commonest}': {baseline:.0f})")
    assert error < 0.5 * baseline


# ---------------------------------------------------------------- partial reads, collate


@pytest.mark.realdata
def test_truncated_file_is_partial_with_the_readers_message(
    shared_data: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """GENEActiv_testfile.bin's header promises 222,048 pages; the file holds 17."""
    out = tmp_path / "out"
    path = shared_data / "devices" / "GENEActiv_testfile.bin"
    assert main(["predict", str(path), "--model", str(models["plain"]), "--out", str(out)]) == 0
    info = json.loads((out / "GENEActiv_testfile" / f"GENEActiv_testfile{INFO_SUFFIX}").read_text())
    assert "222048" in info["ReaderMessage"] and info["Reader"]["kept_fraction"] < 1e-3
    assert info["ReadOK"] is False
    report = pd.read_csv(out / REPORT_NAME).set_index("stem")
    assert report.loc["GENEActiv_testfile", "status"] == "partial"
    assert "222048" in report.loc["GENEActiv_testfile", "reason"]


@pytest.mark.realdata
def test_collate_takes_a_recording_in_two_folders_once_and_warns(
    shared_data: Path, models: dict[str, Path], tmp_path: Path, capsys
) -> None:
    path = str(shared_data / "devices" / "ax3_testfile.cwa")
    for run in ("first", "second"):
        argv = ["predict", path, "--model", str(models["plain"]), "--out", str(tmp_path / run)]
        assert main(argv) == EXIT_OK
    single = pd.read_csv(tmp_path / "first" / "ax3_testfile" / "ax3_testfile-Daily.csv")
    capsys.readouterr()
    collated = tmp_path / "all.csv"
    folders = [str(tmp_path / "first"), str(tmp_path / "second")]
    assert main(["collate", *folders, "--out", str(collated)]) == EXIT_OK
    table = pd.read_csv(collated, dtype={"day": str})
    assert table["recording"].tolist() == ["ax3_testfile"] * len(single)
    assert table["day"].tolist() == single["day"].astype(str).tolist()
    err = capsys.readouterr().err
    assert "recording 'ax3_testfile' is summarised in both" in err
    assert str(tmp_path / "first") in err and str(tmp_path / "second") in err
