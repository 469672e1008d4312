"""Labelled datasets -> labelled window sets: the X/Y/pid layout, labelled CSV files with
purity and label mapping, and the real geotec-watch set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wearssl.data.devices import STANDARD_GRAVITY, CsvColumns
from wearssl.data.ingest_labelled import (
    LabelledOptions,
    import_labelled,
    majority_labels,
    parse_label_map,
)
from wearssl.data.labelled_set import read_labelled_set
from wearssl.data.privacy import pseudonymise

REPO = Path(__file__).resolve().parents[1]
GEOTEC = REPO.parent / "shared" / "data" / "geotec-watch"
GEOTEC_LABELS = {"SEATED", "STANDING_UP", "WALKING", "TURNING", "SITTING_DOWN"}


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("WEARSSL_PSEUDONYM_KEY", "test-labelled-key")


# ---------------------------------------------------------------- X / Y / pid


def test_window_arrays_resampled_from_100_to_30_hz(tmp_path):
    rng = np.random.default_rng(0)
    n, rate, seconds = 40, 100, 10
    frequencies = rng.uniform(0.5, 2.0, n)
    t = np.arange(seconds * rate) / rate
    x = np.zeros((n, seconds * rate, 3), np.float32)
    x[:, :, 0] = STANDARD_GRAVITY * np.sin(2 * np.pi * frequencies[:, None] * t)
    x[:, :, 2] = STANDARD_GRAVITY  # stored in m/s2
    y = np.array(["walk", "sit", "stand", "unknown"] * 10)
    pid = np.repeat(["A", "B"], 20)
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "X.npy", x)
    np.save(folder / "Y.npy", y)
    np.save(folder / "pid.npy", pid)

    options = LabelledOptions(
        name="arrays",
        sample_rate_hz=rate,
        units="m/s2",
        label_map=parse_label_map(["walk=walking", "unknown="]),
    )
    summary = import_labelled([str(folder)], str(tmp_path / "out"), options)
    assert summary.windows == 30 and summary.subjects == 2
    assert summary.classes == {"sit": 10, "stand": 10, "walking": 10}

    labelled = read_labelled_set(str(tmp_path / "out"))
    assert labelled.windows.shape == (30, 3, 300) and labelled.window_seconds == 10
    kept = y != "unknown"
    names = np.array(labelled.label_names)[labelled.labels]
    np.testing.assert_array_equal(names, np.where(y[kept] == "walk", "walking", y[kept]))
    np.testing.assert_array_equal(labelled.subjects, [pseudonymise(p) for p in pid[kept]])
    grid = np.arange(300) / 30
    truth = np.sin(2 * np.pi * frequencies[kept][:, None] * grid)
    # polyphase resampling treats the window's edges as zero beyond them: check the middle
    np.testing.assert_allclose(labelled.windows[:, 0, 15:-15], truth[:, 15:-15], atol=0.02)
    np.testing.assert_allclose(labelled.windows[:, 2, 15:-15], 1.0, atol=1e-3)
    # without time.npy, starts number each subject's windows in order
    np.testing.assert_array_equal(labelled.times_ms[:3], [0, 10_000, 20_000])


def test_window_arrays_that_are_not_whole_seconds_are_refused(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((2, 250, 3)))
    np.save(tmp_path / "Y.npy", np.array(["a", "b"]))
    np.save(tmp_path / "pid.npy", np.array(["p", "p"]))
    with pytest.raises(ValueError, match="whole number of seconds"):
        import_labelled(
            [str(tmp_path)], str(tmp_path / "out"), LabelledOptions("x", sample_rate_hz=100)
        )


# ---------------------------------------------------------------- labelled CSV files


def _write_labelled_csv(path: Path, segments: list[tuple[str, float]], rate: float, seed: int):
    """Consecutive label segments of given seconds; epoch-ms times; signal in g."""
    labels = np.concatenate([[label] * int(seconds * rate) for label, seconds in segments])
    n = len(labels)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "ts": 1_700_000_000_000 + np.rint(np.arange(n) * 1000 / rate).astype(np.int64),
            "ax": rng.normal(0, 0.1, n),
            "ay": rng.normal(0, 0.1, n),
            "az": 1 + rng.normal(0, 0.1, n),
            "activity": labels,
        }
    )
    frame.to_csv(path, index=False)


def test_labelled_csv_purity_and_mapping(tmp_path):
    rate = 50
    # windows of 5 s from the first sample: [0,5) sit; [5,10) 4 s sit + 1 s walk (0.8 pure);
    # [10,15) 2 s walk + 3 s run (0.6); [15,20) run; [20,25) bike (mapped to null)
    segments = [("sit", 9), ("walk", 3), ("run", 8), ("bike", 5)]
    _write_labelled_csv(tmp_path / "P1.csv", segments, rate, seed=1)
    _write_labelled_csv(tmp_path / "P2.csv", segments, rate, seed=2)
    columns = CsvColumns(time="ts", x="ax", y="ay", z="az", label="activity")
    base = dict(name="csv", window_seconds=5, columns=columns, label_map={"bike": None})

    strict = import_labelled([str(tmp_path)], str(tmp_path / "strict"), LabelledOptions(**base))
    assert strict.classes == {"run": 2, "sit": 4}  # per subject: sit, sit (0.8), run
    assert strict.dropped_impure == 2 and strict.dropped_null == 2
    labelled = read_labelled_set(str(tmp_path / "strict"))
    assert set(labelled.subjects) == {pseudonymise("P1"), pseudonymise("P2")}
    np.testing.assert_array_equal(labelled.times_ms[:3] - 1_700_000_000_000, [0, 5_000, 15_000])
    assert labelled.windows.shape == (6, 3, 150)

    loose = import_labelled(
        [str(tmp_path / "P1.csv")], str(tmp_path / "loose"), LabelledOptions(**base, purity=0.5)
    )
    assert loose.classes == {"run": 2, "sit": 2}  # the 0.6-pure window counts as run
    assert loose.subjects == 1


def test_labelled_csv_in_m_s2_are_converted_to_g(tmp_path):
    rate = 100
    n = 10 * rate
    frame = pd.DataFrame(
        {
            "time": 1_700_000_000 + np.arange(n) / rate,
            "x": np.zeros(n),
            "y": np.zeros(n),
            "z": np.full(n, STANDARD_GRAVITY),
            "label": ["still"] * n,
        }
    )
    frame.to_csv(tmp_path / "S.csv.gz", index=False)
    import_labelled(
        [str(tmp_path / "S.csv.gz")],
        str(tmp_path / "out"),
        LabelledOptions("g", window_seconds=10, units="m/s2"),
    )
    labelled = read_labelled_set(str(tmp_path / "out"))
    assert labelled.windows.shape == (1, 3, 300)
    np.testing.assert_allclose(labelled.windows[0, 2], 1.0, atol=1e-5)


def test_majority_labels_known_answer():
    codes = np.array([[0, 0, 1, 1, 1], [2, 2, 2, 2, 2], [0, 1, 2, 0, 1]])
    majority, share = majority_labels(codes, 3)
    np.testing.assert_array_equal(majority, [1, 2, 0])
    np.testing.assert_allclose(share, [0.6, 1.0, 0.4])


def test_label_map_from_files_and_pairs(tmp_path):
    (tmp_path / "map.yaml").write_text("walk: walking\nbike: null\n")
    (tmp_path / "map.json").write_text(json.dumps({"walk": "walking", "bike": None}))
    expected = {"walk": "walking", "bike": None}
    assert parse_label_map([str(tmp_path / "map.yaml")]) == expected
    assert parse_label_map([str(tmp_path / "map.json")]) == expected
    assert parse_label_map(["walk=walking", "bike=null"]) == expected
    with pytest.raises(ValueError, match="old=new"):
        parse_label_map(["walk=walking", "bike"])


# ---------------------------------------------------------------- geotec-watch


needs_geotec = pytest.mark.skipif(not GEOTEC.is_dir(), reason=f"{GEOTEC} is absent")
GEOTEC_COLUMNS = "time=timestamp,x=x_acc,y=y_acc,z=z_acc,label=label"


def _check_geotec(labelled, window_seconds: int) -> None:
    assert set(labelled.label_names) <= GEOTEC_LABELS
    assert len(set(labelled.subjects)) == 23
    assert labelled.windows.shape[1:] == (3, 30 * window_seconds)
    # a watch worn on the wrist: about 1 g on average
    assert 0.9 < np.linalg.norm(labelled.windows, axis=1).mean() < 1.1


@pytest.mark.realdata
@needs_geotec
def test_geotec_watch_imports_through_the_job(tmp_path):
    """The command of the job's --help, with 5-s windows."""
    out = tmp_path / "geotec-5"
    command = [
        sys.executable,
        str(REPO / "jobs" / "ingest.py"),
        "--labelled",
        str(GEOTEC / "s*" / "*_sw.csv.gz"),
        "--out",
        str(out),
        "--name",
        "geotec-watch",
        "--subject-from",
        "folder",
        "--units",
        "m/s2",
        "--columns",
        GEOTEC_COLUMNS,
        "--window-seconds",
        "5",
        "--step-seconds",
        "1",
        "--purity",
        "0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "windows of 5 s from 23 subjects" in result.stdout and "classes:" in result.stdout
    labelled = read_labelled_set(str(out))
    _check_geotec(labelled, 5)
    assert set(labelled.label_names) == GEOTEC_LABELS


@pytest.mark.slow
@pytest.mark.realdata
@needs_geotec
def test_geotec_watch_10_s_windows_without_overlap(tmp_path):
    options = LabelledOptions(
        "geotec-watch",
        window_seconds=10,
        units="m/s2",
        columns=CsvColumns.parse([GEOTEC_COLUMNS]),
        purity=0,
        subject_from="folder",
    )
    summary = import_labelled([str(GEOTEC / "s*" / "*_sw.csv.gz")], str(tmp_path / "g"), options)
    labelled = read_labelled_set(str(tmp_path / "g"))
    _check_geotec(labelled, 10)
    # at most one 10-s window fits in an execution (they last 8-15 s)
    assert 150 < summary.windows <= summary.files == 223
