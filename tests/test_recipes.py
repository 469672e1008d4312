"""Dataset recipes: WISDM (real files and small made-up ones), ADL and Capture-24 (made-up
files in the datasets' layouts), the job, and the labelled set's counts and subject order."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wearssl.data.labelled_set import LabelledSet, read_labelled_set, write_labelled_set
from wearssl.data.privacy import pseudonymise
from wearssl.data.recipes.adl import import_adl
from wearssl.data.recipes.capture24 import import_capture24
from wearssl.data.recipes.common import resize_windows
from wearssl.data.recipes.wisdm import ACTIVITIES, LEFT_OUT_SUBJECTS, import_wisdm

REPO = Path(__file__).resolve().parents[1]
WISDM = REPO.parent / "shared" / "data" / "wisdm-watch"
needs_wisdm = pytest.mark.skipif(not WISDM.is_dir(), reason=f"{WISDM} is absent")


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("WEARSSL_PSEUDONYM_KEY", "test-recipes-key")


def _info(path: Path) -> dict:
    return json.loads((path / "labelled.json").read_text())


# ---------------------------------------------------------------- labelled set metadata


def _tiny_set(subjects: list[str], order: list[str] | None) -> LabelledSet:
    n = len(subjects)
    return LabelledSet(
        name="tiny",
        window_seconds=1,
        label_names=["a", "b"],
        windows=np.zeros((n, 3, 30), np.float32),
        labels=np.arange(n) % 2,
        subjects=np.array(subjects, dtype=object),
        times_ms=np.arange(n, dtype=np.int64) * 1000,
        subject_order=order,
    )


def test_subject_order_and_counts_are_written_and_read(tmp_path):
    write_labelled_set(str(tmp_path / "s"), _tiny_set(["z", "z", "y", "x"], ["z", "y", "x"]))
    info = _info(tmp_path / "s")
    assert info["subjects"] == ["z", "y", "x"]
    assert info["counts"] == {"classes": {"a": 2, "b": 2}, "subjects": {"z": 2, "y": 1, "x": 1}}
    assert list(info["counts"]["subjects"]) == info["subjects"]
    labelled = read_labelled_set(str(tmp_path / "s"))
    assert labelled.subject_order == ["z", "y", "x"]
    assert labelled.subset(labelled.subjects != "y").subject_order == ["z", "x"]


def test_a_set_without_subject_order_still_reads(tmp_path):
    write_labelled_set(str(tmp_path / "s"), _tiny_set(["b", "a"], None))
    info = _info(tmp_path / "s")
    assert "subjects" not in info and info["counts"]["subjects"] == {"a": 1, "b": 1}
    del info["counts"]  # as written before counts existed
    (tmp_path / "s" / "labelled.json").write_text(json.dumps(info))
    assert read_labelled_set(str(tmp_path / "s")).subject_order is None


@pytest.mark.parametrize("order", [["a"], ["a", "b", "b"], ["a", "b", "c"]])
def test_a_subject_order_must_name_each_subject_once(tmp_path, order):
    with pytest.raises(ValueError, match="subject order"):
        write_labelled_set(str(tmp_path / "s"), _tiny_set(["a", "b", "a"], order))


def test_rows_are_written_in_the_subject_order(tmp_path):
    write_labelled_set(str(tmp_path / "s"), _tiny_set(["a", "b", "a"], ["b", "a"]))
    labelled = read_labelled_set(str(tmp_path / "s"))
    assert labelled.subjects.tolist() == ["b", "a", "a"]
    assert labelled.times_ms.tolist() == [1000, 0, 2000]


def test_resize_keeps_the_ends_and_interpolates_linearly():
    ramp = np.repeat(np.arange(200, dtype=np.float32)[None, :, None], 3, axis=2)
    resized = resize_windows(ramp, 300)
    assert resized.shape == (1, 3, 300)
    np.testing.assert_allclose(resized[0, 1], np.linspace(0, 199, 300), atol=1e-4)


# ---------------------------------------------------------------- WISDM


def _wisdm_lines(subject: str, code: str, times_ns: np.ndarray, x: float = 9.81) -> list[str]:
    return [f"{subject},{code},{t},{x},0.0,0.0;" for t in times_ns]


def _write_wisdm(folder: Path, subject: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"data_{subject}_accel_watch.txt.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")


def test_wisdm_drops_windows_over_gaps_but_bridges_one_missing_sample(tmp_path):
    period = 50_000_000
    start = 90_000_000_000_000
    times = start + np.arange(600) * period  # 30 s: windows from 0, 5, 10, 15 and 20 s
    one_missing = np.delete(times, 240)  # 12.00 s: its neighbours are one period away
    gap = times[(times < start + 12_000_000_000) | (times > start + 12_250_000_000)]
    lines = _wisdm_lines("1600", "A", one_missing) + _wisdm_lines("1600", "B", gap, x=-9.81)
    lines += [
        "1600,A,notatime,1.0,0.0,0.0;",
        "1600,A,90000000000001,1.0,0.0;",  # a field missing
        "1600,N,90000000000002,1.0,0.0,0.0;",  # no activity N
        "1600,A,90000000000003,1.0,0.0,x;",
        "1600,A,90000000000004,1.0,0.0,0.0,7.0;",  # a field too many
    ]
    lines += _wisdm_lines("1600", "A", times[:3])  # repeated times
    _write_wisdm(tmp_path / "raw", "1600", lines)
    _write_wisdm(tmp_path / "raw", "1616", _wisdm_lines("1616", "A", times))  # left out

    summary = import_wisdm(str(tmp_path), str(tmp_path / "set"))
    # walking: all 5 windows; jogging: 12.05-12.20 s are empty, hitting [5, 15) and [10, 20)
    assert summary.classes == {"walking": 5, "jogging": 3}
    assert summary.dropped == {
        "lines that did not parse": 5,
        "samples repeating the previous time": 3,
        "windows touching an empty grid point": 2,
        "subjects left out as in the paper": 1,
    }
    labelled = read_labelled_set(str(tmp_path / "set"))
    assert set(labelled.subjects) == {pseudonymise("1600")}
    assert labelled.windows.shape == (8, 3, 300)
    walking = labelled.labels == labelled.label_names.index("walking")
    np.testing.assert_allclose(labelled.windows[walking, 0], 1.0, rtol=1e-6)  # 9.81 m/s2
    np.testing.assert_allclose(labelled.windows[~walking, 0], -1.0, rtol=1e-6)
    assert np.diff(labelled.times_ms[walking]).tolist() == [5000] * 4


@pytest.mark.realdata
@needs_wisdm
def test_wisdm_real_files_give_the_papers_set(tmp_path):
    """The 46 files here: 43 subjects, 26,133 windows, 18 balanced classes."""
    summary = import_wisdm(str(WISDM), str(tmp_path / "wisdm"))
    labelled = read_labelled_set(str(tmp_path / "wisdm"))
    assert len(labelled.labels) == summary.windows == 26_133
    assert labelled.label_names == list(ACTIVITIES.values())
    per_class = np.bincount(labelled.labels)
    assert len(per_class) == 18 and per_class.min() > 1_400 and per_class.max() < 1_500
    raw_ids = sorted(p.name.split("_")[1] for p in (WISDM / "raw").glob("data_*"))
    kept = [raw for raw in raw_ids if raw not in LEFT_OUT_SUBJECTS]
    assert len(kept) == 43
    assert labelled.subject_order == [pseudonymise(raw) for raw in kept]
    assert set(labelled.subjects) == set(labelled.subject_order)
    info = _info(tmp_path / "wisdm")
    assert sum(info["counts"]["subjects"].values()) == 26_133
    assert info["batch_size"] == 500
    assert list(info["counts"]["subjects"]) == info["subjects"]
    assert summary.dropped["subjects left out as in the paper"] == 3  # 1637, 1639 not here
    assert labelled.windows.shape[1:] == (3, 300)
    # a watch on the wrist, converted from m/s2: about 1 g on average
    assert 0.9 < np.linalg.norm(labelled.windows, axis=1).mean() < 1.2


# ---------------------------------------------------------------- ADL (HMP)


def _write_trial(root: Path, folder: str, subject: str, samples: int, minute: int = 0) -> None:
    """A trial of constant codes (42, 21, 63), started at 10:<minute>:00 on 2011-03-24."""
    activity = folder.removesuffix("_MODEL").lower()
    path = root / folder / f"Accelerometer-2011-03-24-10-{minute:02d}-00-{activity}-{subject}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("42 21 63\n" * samples)


def _adl_fixture(root: Path) -> None:
    _write_trial(root, "Climb_stairs", "f1", 320)  # exactly 10 s: 1 window
    _write_trial(root, "Climb_stairs", "f1", 639, minute=1)  # starts 0 and 5 s: 2 windows
    _write_trial(root, "Walk", "m1", 800, minute=2)  # starts 0, 5, 10, 15 s: 4 windows
    _write_trial(root, "Walk", "m1", 300, minute=3)  # under 10 s: none
    _write_trial(root, "Drink_glass", "m4", 470)  # 14.7 s: 1 window, the tail dropped
    _write_trial(root, "Walk", "m9", 800)  # not one of the paper's subjects
    _write_trial(root, "Brush_teeth", "f1", 800)  # not one of the paper's activities
    _write_trial(root, "Walk_MODEL", "m1", 800)  # the authors' model trials: not read
    (root / "Walk" / "notes.txt").write_text("not a trial\n")


def test_adl_windows_subjects_classes_and_units(tmp_path):
    _adl_fixture(tmp_path / "HMP")
    (bad,) = (tmp_path / "HMP" / "Drink_glass").glob("*-m4.txt")
    bad.write_text(bad.read_text() + "64 1 1\n1 2\n")  # not codes in 0..63

    summary = import_adl(str(tmp_path / "HMP"), str(tmp_path / "adl"))
    assert summary.classes == {"climb_stairs": 3, "drink_glass": 1, "walk": 4}
    assert summary.subjects == {pseudonymise("f1"): 3, pseudonymise("m1"): 4, pseudonymise("m4"): 1}
    assert summary.dropped["trials shorter than 10 s"] == 1
    assert summary.dropped["trial files of other subjects"] == 1
    assert summary.dropped["lines that are not three codes in 0..63"] == 2
    assert summary.dropped["files not named Accelerometer-<time>-<activity>-<subject>.txt"] == 1

    labelled = read_labelled_set(str(tmp_path / "adl"))
    # the paper's subject order, not the folders': windows of f1, then m1, then m4
    assert labelled.subject_order == [pseudonymise(s) for s in ("f1", "m1", "m4")]
    assert labelled.batch_size == 50
    assert labelled.windows.shape == (8, 3, 300)
    # codes 42, 21, 63 -> 0.5, -0.5, 1.5 g
    np.testing.assert_allclose(labelled.windows.mean(axis=2), [[0.5, -0.5, 1.5]] * 8, atol=1e-6)
    walk = labelled.times_ms[labelled.labels == labelled.label_names.index("walk")]
    trial_start = pd.Timestamp("2011-03-24 10:02:00", tz="UTC").value // 1_000_000
    assert (walk - trial_start).tolist() == [0, 5_000, 10_000, 15_000]


def test_adl_job_prints_counts_and_refuses_a_wrong_folder(tmp_path):
    _adl_fixture(tmp_path / "HMP")
    env = dict(os.environ, PYTHONPATH=str(REPO / "platform"))
    job = [sys.executable, str(REPO / "jobs" / "datasets.py"), "adl"]
    done = subprocess.run(
        job + [str(tmp_path / "HMP"), "--out", str(tmp_path / "adl")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "adl: 8 windows from 3 subjects" in done.stdout
    assert "walk" in done.stdout and pseudonymise("m1") in done.stdout and "m1" not in done.stdout
    assert _info(tmp_path / "adl")["counts"]["classes"]["walk"] == 4

    refused = subprocess.run(
        job + [str(tmp_path / "Walk"), "--out", str(tmp_path / "no")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "does not exist" in refused.stderr
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------- Capture-24

DICTIONARY = pd.DataFrame(
    {
        "annotation": ["7030 sleeping;MET 0.95", "walking;MET 3.5", "sitting;MET 1.5"],
        "label:Walmsley2020": ["sleep", "light", "sedentary"],
        "label:WillettsSpecific2018": ["", "walking", "sitting"],
    }
)


def _write_capture24(path: Path, segments: list[tuple[str, int]]) -> None:
    """Consecutive annotation segments of whole seconds at 100 Hz, in g."""
    annotations = np.concatenate([[a] * (seconds * 100) for a, seconds in segments])
    n = len(annotations)
    time = pd.Timestamp("2016-11-13 02:18:00") + pd.to_timedelta(np.arange(n) * 10, unit="ms")
    frame = pd.DataFrame(
        {
            "time": time.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "x": np.zeros(n),
            "y": np.zeros(n),
            "z": np.ones(n),
            "annotation": annotations,
        }
    )
    frame.loc[frame["annotation"] == "", "annotation"] = None
    frame.to_csv(path, index=False, compression="gzip")


def _capture24_fixture(root: Path) -> None:
    root.mkdir()
    DICTIONARY.to_csv(root / "annotation-label-dictionary.csv", index=False)
    # windows from the first sample: walk, walk, unannotated, sit, sit+sleep (mixed), sleep
    walk, sit, sleep = DICTIONARY["annotation"][[1, 2, 0]]
    _write_capture24(root / "P002.csv.gz", [(walk, 20), ("", 10), (sit, 15), (sleep, 15)])
    # walk, then an annotation not in the dictionary
    _write_capture24(root / "P001.csv.gz", [(walk, 10), ("gardening;MET 4", 10)])


def test_capture24_windows_take_one_annotation_of_the_scheme(tmp_path):
    _capture24_fixture(tmp_path / "capture24")
    summary = import_capture24(str(tmp_path / "capture24"), str(tmp_path / "c"))
    assert summary.classes == {"light": 3, "sedentary": 1, "sleep": 1}
    assert summary.subjects == {pseudonymise("P001"): 1, pseudonymise("P002"): 4}
    assert summary.dropped == {
        "windows with mixed annotations": 1,
        "windows with a missing or unmapped annotation": 1,
        "windows over a gap": 0,
        "windows with an annotation not in annotation-label-dictionary.csv": 1,
    }
    labelled = read_labelled_set(str(tmp_path / "c"))
    assert labelled.subject_order == [pseudonymise("P001"), pseudonymise("P002")]
    np.testing.assert_allclose(labelled.windows[:, 2], 1.0, atol=1e-3)
    assert labelled.windows.shape == (5, 3, 300)

    # another scheme: sleep maps to nothing, so its window counts as unmapped
    other = import_capture24(
        str(tmp_path / "capture24"), str(tmp_path / "w"), scheme="label:WillettsSpecific2018"
    )
    assert other.classes == {"sitting": 1, "walking": 3}
    assert other.dropped["windows with a missing or unmapped annotation"] == 2


def test_capture24_unknown_scheme_is_named(tmp_path):
    _capture24_fixture(tmp_path / "capture24")
    with pytest.raises(ValueError, match=r"no label scheme 'label:Nope'.*Walmsley2020"):
        import_capture24(str(tmp_path / "capture24"), str(tmp_path / "c"), scheme="label:Nope")
