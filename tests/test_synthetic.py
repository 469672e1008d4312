"""The synthetic free-living generator: corpus consistency, signal realism, determinism."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score

from wearssl.data import corpus, privacy, synthetic
from wearssl.data.corpus import WindowFormat
from wearssl.data.labelled_set import LabelledSet, read_labelled_set, write_labelled_set
from wearssl.data.synthetic import (
    ACTIVITIES,
    HOUSEHOLD,
    NON_WEAR,
    RUNNING,
    SEDENTARY,
    SLEEP,
    WALKING,
    day_schedule,
    synth_recording,
    synth_subject_day,
    synthetic_labelled_set,
    synthetic_subject_id,
    write_synthetic_corpus,
)

SEED = 0
SUBJECTS = 2
STILL_G = 0.01
ACTIVE_G = 0.1


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "corpus"
    write_synthetic_corpus(str(out), SUBJECTS, 1, seed=SEED, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def day_tables(corpus_dir: Path) -> list:
    manifest = corpus.read_manifest(corpus_dir)
    return [corpus.read_day(str(corpus_dir), row) for row in manifest.to_pylist()]


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_manifest_matches_files(corpus_dir: Path) -> None:
    manifest = corpus.read_manifest(corpus_dir)
    assert manifest.num_rows == SUBJECTS
    assert corpus.read_info(corpus_dir) == corpus.CorpusInfo(window_format="float16", version=3)
    for row in manifest.to_pylist():
        path = corpus_dir / row["file"]
        assert path.is_file()
        table = pq.read_table(path)
        assert table.schema.field("window").type == pa.binary(3 * corpus.WINDOW_SAMPLES * 2)
        assert table.num_rows == row["n_windows"] == row["row_end"] - row["row_start"]
        assert row["n_windows"] == synthetic.WINDOWS_PER_DAY
        assert row["n_wear"] == int(np.sum(table["wear"].to_numpy(zero_copy_only=False)))
        assert set(table["subject"].to_pylist()) == {row["subject"]}
        assert set(table["day"].to_pylist()) == {row["day"]}
        assert row["split"] == corpus.subject_split(row["subject"])
        assert privacy.is_pseudonym(row["subject"])
    expected = {synthetic_subject_id(i, SEED) for i in range(SUBJECTS)}
    assert set(manifest["subject"].to_pylist()) == expected


def test_window_times_cover_the_day(day_tables: list) -> None:
    times = day_tables[0]["time"].cast("int64").to_numpy()
    midnight = np.datetime64(day_tables[0]["day"][0].as_py(), "ms").astype(np.int64)
    np.testing.assert_array_equal(times, midnight + np.arange(len(times)) * 10_000)


def test_window_std_has_a_still_and_an_active_mode(day_tables: list) -> None:
    """On a log scale the std histogram has a still peak (< 0.01 g) and an active peak
    (> 0.1 g) with a clear trough between them."""
    std = np.concatenate([t["std"].to_numpy() for t in day_tables])
    assert np.mean(std < STILL_G) > 0.25
    assert np.mean(std > ACTIVE_G) > 0.05
    edges = 10.0 ** np.arange(-3.0, 0.75, 0.25)
    share = np.histogram(std, edges)[0] / len(std)
    lower = edges[:-1]
    still_peak = int(np.argmax(np.where(lower < STILL_G, share, -1)))
    active_peak = int(np.argmax(np.where(lower >= ACTIVE_G, share, -1)))
    trough = share[still_peak + 1 : active_peak].min()
    assert trough < 0.75 * min(share[still_peak], share[active_peak])


def test_still_windows_measure_one_g(day_tables: list) -> None:
    windows = np.concatenate([corpus.decode_windows(t) for t in day_tables])
    std = corpus.window_std(windows)
    magnitude = np.linalg.norm(windows[std < STILL_G], axis=1).mean(axis=1)
    assert len(magnitude) > 1000
    assert abs(magnitude.mean() - 1.0) < 0.01
    assert np.all(np.abs(magnitude - 1.0) < 0.05)


def test_same_seed_gives_identical_files_and_other_seed_differs(
    corpus_dir: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    write_synthetic_corpus(str(again), SUBJECTS, 1, seed=SEED, workers=1, progress=False)
    assert _file_bytes(again) == _file_bytes(corpus_dir)

    other = tmp_path / "other"
    write_synthetic_corpus(str(other), 1, 1, seed=SEED + 1, workers=1, progress=False)
    (other_day,) = (p for p in _file_bytes(other) if p.startswith(corpus.DAYS_DIR))
    other_windows = corpus.decode_windows(pq.read_table(other / other_day))
    first_day = corpus.day_file(synthetic_subject_id(0, SEED), "2024-01-01")
    first_windows = corpus.decode_windows(pq.read_table(corpus_dir / first_day))
    assert not np.array_equal(other_windows, first_windows)


@pytest.mark.slow
def test_worker_processes_write_the_same_files(
    corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_synthetic_corpus(str(tmp_path), SUBJECTS, 1, seed=SEED, workers=2, progress=True)
    assert f"{SUBJECTS}/{SUBJECTS} subject-days" in capsys.readouterr().out
    assert _file_bytes(tmp_path) == _file_bytes(corpus_dir)


def test_recording_matches_corpus_day_from_any_start(day_tables: list) -> None:
    """A recording starting at noon holds exactly the second half of the corpus day."""
    recording = synth_recording(0, SEED, days=0.5, start="2024-01-01T12:00:00")
    assert recording.xyz.shape == (synthetic.SECONDS_PER_DAY * 15, 3)
    assert recording.xyz.dtype == np.float32 and recording.activity.dtype == np.int8
    table = next(t for t in day_tables if t["subject"][0].as_py() == synthetic_subject_id(0, SEED))
    half = synthetic.WINDOWS_PER_DAY // 2
    stored = corpus.decode_windows(table)[half:]
    from_recording = recording.xyz.reshape(half, corpus.WINDOW_SAMPLES, 3).transpose(0, 2, 1)
    np.testing.assert_array_equal(stored, from_recording)  # 1/256 g steps are exact in float16
    window_times = table["time"].cast("int64").to_numpy()[half:]
    np.testing.assert_array_equal(recording.times_ms[:: corpus.WINDOW_SAMPLES], window_times)
    assert np.all(np.diff(recording.times_ms) > 0)


def _first_subject_day_with_non_wear(seed: int) -> tuple[int, int]:
    for subject_index in range(50):
        for day_index in range(3):
            day = synthetic.EPOCH_DAY + timedelta(days=day_index)
            schedule = day_schedule(subject_index, seed, day, corpus.SAMPLE_RATE_HZ)
            if np.any(schedule.activities == NON_WEAR):
                return subject_index, day_index
    raise AssertionError("no synthetic subject-day has non-wear")


def test_wear_flag_marks_windows_mostly_off_the_wrist() -> None:
    subject_index, day_index = _first_subject_day_with_non_wear(SEED)
    _, day_iso, table = synth_subject_day(subject_index, day_index, SEED)
    schedule = day_schedule(subject_index, SEED, date.fromisoformat(day_iso), 30)
    off_share = (schedule.per_sample() == NON_WEAR).reshape(-1, corpus.WINDOW_SAMPLES).mean(1)
    wear = table["wear"].to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(wear, off_share <= 0.5)
    assert (~wear).sum() >= 20 * 6  # at least 20 minutes off the wrist
    off_std = table["std"].to_numpy()[off_share == 1.0]
    assert np.median(off_std) < STILL_G  # the watch lies still on a table


def test_schedules_are_plausible() -> None:
    fs = 1.0
    days = [
        day_schedule(s, SEED, date(2024, 1, 1 + d), fs).per_sample()
        for s in range(16)
        for d in range(3)
    ]
    activity = np.stack(days)  # (subject-days, seconds)
    hour = np.arange(synthetic.SECONDS_PER_DAY) // 3600
    assert np.mean(activity[:, (hour >= 2) & (hour < 5)] == SLEEP) > 0.95
    assert np.mean(activity[:, (hour >= 13) & (hour < 19)] == SLEEP) == 0
    for day in activity:
        non_wear = _runs(day == NON_WEAR)
        assert len(non_wear) <= 2
        assert all(20 * 60 <= n <= 120 * 60 for n in non_wear)
        assert all(15 * 60 <= n <= 45 * 60 for n in _runs(day == RUNNING))
        assert 4 * 3600 <= np.sum(day == SLEEP) <= 13 * 3600
    daytime = activity[:, (hour >= 10) & (hour < 20)]
    for code in (SEDENTARY, HOUSEHOLD, WALKING):
        assert np.mean(daytime == code) > 0.05


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_schedule_is_independent_of_sample_rate() -> None:
    at_30 = day_schedule(3, SEED, date(2024, 1, 5), 30)
    at_100 = day_schedule(3, SEED, date(2024, 1, 5), 100)
    np.testing.assert_array_equal(at_30.activities, at_100.activities)
    np.testing.assert_array_equal(at_30.starts * 10, at_100.starts * 3)
    assert at_100.n_samples == synthetic.SECONDS_PER_DAY * 100


@pytest.fixture(scope="module")
def labelled() -> LabelledSet:
    return synthetic_labelled_set(8, seed=SEED, window_seconds=10, minutes_per_activity=4.0)


@pytest.mark.parametrize("seconds", [5, 10, 30])
def test_labelled_set_shapes(seconds: int, tmp_path: Path) -> None:
    labelled = synthetic_labelled_set(3, seed=SEED, window_seconds=seconds, minutes_per_activity=1)
    per_activity = int(np.ceil(60 / seconds))
    n = 3 * len(ACTIVITIES) * per_activity
    assert labelled.windows.shape == (n, 3, seconds * corpus.SAMPLE_RATE_HZ)
    assert labelled.windows.dtype == np.float32
    assert labelled.label_names == list(ACTIVITIES)
    assert labelled.labels.shape == labelled.subjects.shape == labelled.times_ms.shape == (n,)
    assert len(set(labelled.subjects)) == 3
    for subject in set(labelled.subjects):
        counts = np.bincount(labelled.labels[labelled.subjects == subject], minlength=5)
        assert list(counts) == [per_activity] * len(ACTIVITIES)
    write_labelled_set(str(tmp_path / "set"), labelled)
    assert read_labelled_set(str(tmp_path / "set")).windows.shape == labelled.windows.shape


def test_gait_cadence_is_in_its_range(labelled: LabelledSet) -> None:
    """The magnitude's spectral peak is the step rate: 1.6-2.1 Hz walking, 2.5-3.0 Hz running."""
    for code, (low, high) in ((WALKING, (1.5, 2.2)), (RUNNING, (2.4, 3.1))):
        magnitude = np.linalg.norm(labelled.windows[labelled.labels == code], axis=1)
        spectrum = np.abs(np.fft.rfft(magnitude - magnitude.mean(axis=1, keepdims=True)))
        peak_hz = np.fft.rfftfreq(magnitude.shape[1], 1 / corpus.SAMPLE_RATE_HZ)[
            spectrum.argmax(axis=1)
        ]
        assert np.mean((peak_hz >= low) & (peak_hz <= high)) > 0.9


def test_household_strokes_keep_a_steady_rhythm(labelled: LabelledSet) -> None:
    """Hand tasks repeat strokes at 0.7-2.5 Hz: the magnitude's spectral peak is the stroke
    rate, the rhythm that permutation breaks and time warp bends."""
    magnitude = np.linalg.norm(labelled.windows[labelled.labels == HOUSEHOLD], axis=1)
    spectrum = np.abs(np.fft.rfft(magnitude - magnitude.mean(axis=1, keepdims=True)))
    peak_hz = np.fft.rfftfreq(magnitude.shape[1], 1 / corpus.SAMPLE_RATE_HZ)[
        spectrum.argmax(axis=1)
    ]
    assert np.mean((peak_hz >= 0.6) & (peak_hz <= 2.6)) > 0.9


@pytest.mark.parametrize("activity", [WALKING, HOUSEHOLD])
def test_movement_is_not_time_symmetric(labelled: LabelledSet, activity: int) -> None:
    """Heel strikes and hand strokes rise fast and settle slowly: the slope of the magnitude
    is skewed one way, and reversing the window flips that skew, so a reversed window is
    detectable."""
    moving = labelled.windows[labelled.labels == activity]
    slope = np.diff(np.linalg.norm(moving, axis=1), axis=1)
    forward = stats.skew(slope, axis=1)
    reversed_ = stats.skew(-slope[:, ::-1], axis=1)
    assert np.mean(forward > reversed_) > 0.9


def _simple_features(windows: np.ndarray) -> np.ndarray:
    magnitude = np.linalg.norm(windows, axis=1)
    return np.column_stack(
        [windows.mean(axis=2), windows.std(axis=2), magnitude.mean(axis=1), magnitude.std(axis=1)]
    )


def test_labelled_classes_are_learnable_across_subjects(labelled: LabelledSet) -> None:
    subjects = np.unique(labelled.subjects)
    assert len(subjects) == 8
    test = np.isin(labelled.subjects, subjects[:2])
    features = _simple_features(labelled.windows)
    forest = RandomForestClassifier(n_estimators=100, random_state=0)
    forest.fit(features[~test], labelled.labels[~test])
    predicted = forest.predict(features[test])
    assert f1_score(labelled.labels[test], predicted, average="macro") > 0.5  # chance: 0.2


def test_subject_id_is_a_secret_free_pseudonym() -> None:
    ids = {synthetic_subject_id(i, s) for i in range(20) for s in range(3)}
    assert len(ids) == 60
    assert all(privacy.is_pseudonym(i) for i in ids)
    assert synthetic_subject_id(4, 2) == synthetic_subject_id(4, 2)


def test_existing_corpus_of_another_format_is_refused(corpus_dir: Path) -> None:
    with pytest.raises(ValueError, match=str(corpus_dir)):
        write_synthetic_corpus(
            str(corpus_dir), 1, 1, window_format=WindowFormat.FLOAT32, progress=False
        )


def test_a_corpus_of_this_generator_is_reused(corpus_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(corpus_dir, copy)
    before = _file_bytes(copy)
    assert synthetic.ensure_synthetic_corpus(str(copy), 5, 2, SEED, progress=False) == str(copy)
    assert _file_bytes(copy) == before


def test_a_corpus_of_another_generator_is_refused_and_kept(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """Days made by an earlier generator (their recording names no generator version) are
    neither reused nor extended, and nothing in the folder changes."""
    old = tmp_path / "old"
    shutil.copytree(corpus_dir, old)
    manifest = corpus.read_manifest(old)
    labels = [f"synthetic seed={SEED} subject={i}" for i in range(manifest.num_rows)]
    corpus.write_manifest(
        old,
        manifest.set_column(
            manifest.schema.get_field_index("recording"), "recording", pa.array(labels)
        ),
    )
    before = _file_bytes(old)
    with pytest.raises(ValueError, match=f"{old}.*generator version {synthetic.GENERATOR_VERSION}"):
        synthetic.ensure_synthetic_corpus(str(old), SUBJECTS, 1, SEED, progress=False)
    with pytest.raises(ValueError, match=str(old)):
        write_synthetic_corpus(str(old), SUBJECTS + 1, 1, seed=SEED, workers=1, progress=False)
    assert _file_bytes(old) == before


def test_days_added_to_a_version_1_corpus_are_written_in_its_layout(
    day_tables: list, tmp_path: Path
) -> None:
    v1 = corpus.CorpusInfo(window_format=WindowFormat.FLOAT16.value, version=1)
    corpus.write_info(tmp_path, v1)
    write_synthetic_corpus(str(tmp_path), 1, 1, seed=SEED, workers=1, progress=False)
    assert corpus.read_info(tmp_path) == v1
    (entry,) = corpus.read_manifest(tmp_path).to_pylist()
    table = corpus.read_day(str(tmp_path), entry)
    assert pa.types.is_fixed_size_list(table.schema.field("window").type)
    same_day = next(t for t in day_tables if t["subject"][0].as_py() == entry["subject"])
    np.testing.assert_array_equal(corpus.decode_windows(table), corpus.decode_windows(same_day))


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: write_synthetic_corpus("unused", 0, 1), "n_subjects"),
        (lambda: write_synthetic_corpus("unused", 1, 0), "n_days"),
        (lambda: write_synthetic_corpus("unused", 1, 1, workers=0), "workers"),
        (lambda: synth_subject_day(0, -1, 0), "day_index"),
        (lambda: synth_subject_day(0, 0, -3), "seed"),
        (lambda: synth_recording(0, 0, days=0), "days"),
        (lambda: synth_recording(0, 0, days=1, sample_rate_hz=-30), "sample_rate_hz"),
        (lambda: synth_recording(0, 0, days=1, sample_rate_hz=30.00001), "sample_rate_hz"),
        (lambda: synth_recording(0, 0, days=1, start="yesterday"), "start"),
        (lambda: synthetic_labelled_set(2, window_seconds=7), "window_seconds"),
        (lambda: synthetic_labelled_set(0), "n_subjects"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        call()


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def test_generated_data_is_pinned_bit_for_bit():
    """The same seed makes the same data, release after release: these digests were
    computed once, and only a new ``GENERATOR_VERSION`` may change them."""
    subject, day, table = synth_subject_day(1, 2, seed=7)
    day_digest = _digest(
        corpus.decode_windows(table, dtype=None),
        table["time"].cast(pa.int64()).to_numpy(),
        table["std"].to_numpy(),
        table["wear"].to_numpy(zero_copy_only=False),
    )
    recording = synth_recording(2, seed=7, days=0.02, sample_rate_hz=50.0)
    recording_digest = _digest(recording.times_ms, recording.xyz, recording.activity)
    labelled = synthetic_labelled_set(2, seed=7, minutes_per_activity=0.5)
    labelled_digest = _digest(
        labelled.windows, labelled.labels, labelled.times_ms, labelled.subjects.astype(str)
    )
    assert (subject, day) == (synthetic_subject_id(1, 7), "2024-01-03")
    assert {"day": day_digest, "recording": recording_digest, "labelled": labelled_digest} == {
        "day": "0919cfd236ab7a22",
        "recording": "857b44ce4fe5aa0f",
        "labelled": "1ef7f0d651f2ad63",
    }
