"""Preprocessing (pure functions) and the Ray ingest of recordings into the corpus:
window counts, wear flags, quarantine, resuming after a kill, merging a subject's days."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from conftest import actigraph_set_up_in_new_york, pseudonym_key_set_to
from wearssl.data import corpus
from wearssl.data.devices import ReadOptions, read_recording, recording_format
from wearssl.data.ingest import (
    EXIT_OK,
    EXIT_QUARANTINED,
    QUARANTINE_NAME,
    IngestOptions,
    ingest_recordings,
)
from wearssl.data.preprocess import (
    NS_PER_SECOND,
    PreprocessOptions,
    bin_statistics,
    fit_calibration,
    nonwear_intervals,
    overlaps,
    preprocess,
    split_days,
    window_starts,
)
from wearssl.data.privacy import pseudonymise

REPO = Path(__file__).resolve().parents[1]
DEVICES = REPO.parent / "shared" / "data" / "devices"
JOB = REPO / "jobs" / "ingest.py"
NS = NS_PER_SECOND
MINUTE = 60 * NS
START = "2024-01-01T12:00:00"
START_NS = int(np.datetime64(START, "ns").astype(np.int64))
LAST_SAMPLE_OFFSET_NS = round(299 * NS / 30)


@pytest.fixture(scope="module", autouse=True)
def _module_pseudonym_key():
    yield from pseudonym_key_set_to("test-ingest-key")


@pytest.fixture(scope="module")
def ray_address():
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # slow, shared CI machines
    if not ray.is_initialized():  # shared with the rest of the session (see conftest.ray_local)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address


def expected_windows(first_ns: int, last_ns: int) -> int:
    """10-s clock-aligned windows whose 300 samples all lie within [first, last + 1 ms]."""
    window = 10 * NS
    first_index = -(-first_ns // window)
    last_index = (last_ns + 1_000_000 - LAST_SAMPLE_OFFSET_NS) // window
    return max(0, last_index - first_index + 1)


def moving_signal(n: int, rate: float, seed: int) -> np.ndarray:
    """Wrist-like samples in g: gravity on z plus movement well above the still threshold."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    xyz = rng.normal(0, 0.05, (n, 3))
    xyz[:, 0] += 0.3 * np.sin(2 * np.pi * 1.7 * t)
    xyz[:, 2] += 1.0
    return xyz.astype(np.float32)


def write_npy(path: Path, seconds: float, rate: float, seed: int = 0) -> None:
    np.save(path, moving_signal(int(seconds * rate), rate, seed))


def write_npz(path: Path, start_ns: int, seconds: float, rate: float, seed: int) -> None:
    n = int(seconds * rate)
    times_ms = (start_ns + np.rint(np.arange(n) * NS / rate).astype(np.int64)) // 1_000_000
    np.savez(path, xyz=moving_signal(n, rate, seed), times_ms=times_ms)


def day_rows(root: Path, manifest: pa.Table) -> dict[tuple[str, str], pa.Table]:
    return {(e["subject"], e["day"]): corpus.read_day(str(root), e) for e in manifest.to_pylist()}


def quiet(**kwargs) -> IngestOptions:
    return IngestOptions(progress=False, verbose=False, **kwargs)


def run_job(args: list[str], address: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    return subprocess.Popen(
        [sys.executable, str(JOB), *args, "--address", address, "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


# ---------------------------------------------------------------- preprocessing


def test_window_starts_clock_and_start_alignment():
    times = START_NS + np.arange(int(3.5 * 100), 6000) * 10_000_000  # 12:00:03.5 to 12:00:59.99
    clock = (window_starts(times, 10) - START_NS) / NS
    np.testing.assert_array_equal(clock, [10, 20, 30, 40, 50])
    start = (window_starts(times, 10, align="start") - START_NS) / NS
    np.testing.assert_allclose(start, [3.5, 13.5, 23.5, 33.5, 43.5])
    assert len(window_starts(times[:900], 10)) == 0  # 3.5 s to 8.99 s: no whole window


def test_overlaps_with_intervals():
    starts = np.array([0, 10, 20, 30, 40])
    intervals = np.array([[5, 12], [35, 36]])
    np.testing.assert_array_equal(overlaps(starts, 10, intervals), [True, True, False, True, False])
    assert not overlaps(starts, 10, np.empty((0, 2), np.int64)).any()


def test_nonwear_is_a_still_run_longer_than_the_patience():
    rate = 30
    moving = moving_signal(60 * 60 * rate, rate, 0)
    still = np.tile([0.0, 0.0, 1.0], (100 * 60 * rate, 1)).astype(np.float32)
    still += np.random.default_rng(1).normal(0, 0.002, still.shape).astype(np.float32)
    xyz = np.concatenate([moving, still, moving[: 20 * 60 * rate]])
    times = START_NS + np.rint(np.arange(len(xyz)) * NS / rate).astype(np.int64)
    intervals = nonwear_intervals(bin_statistics(times, xyz), minutes=90)
    np.testing.assert_array_equal(intervals - START_NS, [[60 * MINUTE, 160 * MINUTE]])
    assert len(nonwear_intervals(bin_statistics(times, xyz), minutes=120)) == 0
    result = preprocess(times, xyz, rate, PreprocessOptions(calibrate=False))
    assert result.nonwear_seconds == 100 * 60
    assert (~result.wear).sum() == 100 * 6
    assert not result.wear[(result.starts_ns - START_NS >= 60 * MINUTE)][: 100 * 6].any()


def test_a_still_coarse_device_is_still_by_its_resolution():
    """A device with 1/32-g steps lying still for 100 minutes, its reading flipping
    between two neighbouring steps: each axis' std is half a step (15.6 mg), above the
    15-mg threshold, so only the resolution rule finds the non-wear."""
    rate, step = 32, 1 / 32
    levels = np.array([0.0, 0.0, 1.0]) + step * (np.arange(100 * 60 * rate) % 2)[:, None]
    times = START_NS + np.rint(np.arange(len(levels)) * NS / rate).astype(np.int64)
    options = PreprocessOptions(calibrate=False)
    xyz = levels.astype(np.float32)
    assert preprocess(times, xyz, rate, options).wear.all()
    coarse = preprocess(times, xyz, rate, options, resolution_g=step)
    assert not coarse.wear.any() and coarse.nonwear_seconds == 100 * 60


def test_calibration_recovers_offset_and_scale():
    rng = np.random.default_rng(0)
    offset, scale = np.array([0.03, -0.02, 0.05]), np.array([1.02, 0.97, 1.01])
    directions = rng.normal(size=(120, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    raw_postures = (directions - offset) / scale  # what a miscalibrated device reads
    rate = 30
    xyz = np.repeat(raw_postures, 10 * rate, axis=0)
    xyz += rng.normal(0, 0.003, xyz.shape)
    times = START_NS + np.rint(np.arange(len(xyz)) * NS / rate).astype(np.int64)
    fit = fit_calibration(bin_statistics(times, xyz.astype(np.float32)))
    assert fit.applied, fit.reason
    np.testing.assert_allclose(fit.offset, offset, atol=2e-3)
    np.testing.assert_allclose(fit.scale, scale, atol=2e-3)
    assert fit.error_after_mg < 2 < fit.error_before_mg


def test_calibration_refuses_postures_that_do_not_cover_the_sphere():
    rate = 30
    xyz = np.tile([0.0, 0.0, 1.0], (200 * 10 * rate, 1)).astype(np.float32)
    times = START_NS + np.rint(np.arange(len(xyz)) * NS / rate).astype(np.int64)
    fit = fit_calibration(bin_statistics(times, xyz))
    assert not fit.applied and "every axis" in fit.reason


def test_resampling_100_to_30_hz_keeps_a_slow_sine_and_flags_gaps():
    rate = 100
    seconds = 120
    t = np.arange(seconds * rate) / rate
    keep = (t < 50) | (t >= 53)  # a 3-s gap
    xyz = np.column_stack([0.5 * np.sin(2 * np.pi * 1.3 * t), np.zeros_like(t), np.ones_like(t)])
    times = START_NS + np.rint(t * NS).astype(np.int64)
    options = PreprocessOptions(calibrate=False, detect_nonwear=False)
    result = preprocess(times[keep], xyz[keep].astype(np.float32), rate, options)
    assert (
        len(result) == 12
    )  # 12:00:00 ... 12:01:50, whose last sample (+9.967 s) precedes the data end (+9.99 s)
    grid = (result.starts_ns[:, None] - START_NS) / NS + np.arange(300) / 30
    truth = 0.5 * np.sin(2 * np.pi * 1.3 * grid)
    # the 12:00:40 window's last sample (+9.967 s) precedes the gap's last sample before it
    np.testing.assert_array_equal(result.wear, ~((grid[:, 0] >= 50) & (grid[:, 0] < 60)))
    # away from the edges of the recorded stretches (where the zero-phase filter has no
    # data beyond) the 30-Hz samples are the sine's values
    good = result.wear.copy()
    good[[0, 4, -1]] = False
    np.testing.assert_allclose(result.windows[good, 0], truth[good], atol=5e-3)
    np.testing.assert_allclose(result.windows[:, 2], 1.0, atol=1e-6)
    assert result.gap_seconds == pytest.approx(3.0, abs=0.02)


@pytest.mark.realdata
def test_a_fully_recorded_window_next_to_a_gap_stays_worn(shared_data):
    """A 5-s gap cut into a real AX3 recording 30 s after its first window: the window
    before it holds only recorded samples (its last at +9.967 s, the gap opens after the
    sample at about +9.995 s), so it is worn; the window the gap falls in is not."""
    read = read_recording(str(shared_data / "devices" / "skdh_ax3_sample.cwa"))
    window_ns = 10 * NS
    first_window = -(-int(read.times_ns[0]) // window_ns) * window_ns
    gap_from = first_window + 3 * window_ns
    keep = (read.times_ns < gap_from) | (read.times_ns >= gap_from + 5 * NS)
    options = PreprocessOptions(calibrate=False, detect_nonwear=False)
    result = preprocess(read.times_ns[keep], read.xyz[keep], read.sample_rate_hz, options)
    offsets = ((result.starts_ns - first_window) // NS).tolist()
    wear = dict(zip(offsets, result.wear.tolist(), strict=True))
    assert read.times_ns[keep][read.times_ns[keep] < gap_from][-1] > gap_from - 10_000_000
    assert wear[20] is True
    assert wear[30] is False
    assert wear[0] is wear[10] is wear[40] is True


def test_split_days_at_midnight():
    starts = np.datetime64("2024-01-01T23:59:30", "ns").astype(np.int64) + np.arange(6) * 10 * NS
    days = split_days(starts)
    assert [(d, s.stop - s.start) for d, s in days] == [("2024-01-01", 3), ("2024-01-02", 3)]


# ---------------------------------------------------------------- real device files


def _check_day_files(root: Path, manifest: pa.Table) -> None:
    for (subject, day), table in day_rows(root, manifest).items():
        times = table["time"].cast(pa.int64()).to_numpy()
        assert np.all(np.diff(times) > 0), f"{subject}/{day}: window times not unique/sorted"
        assert set(table["subject"].to_pylist()) == {subject}
        assert set(table["day"].to_pylist()) == {day}


@pytest.mark.realdata
@pytest.mark.skipif(not DEVICES.is_dir(), reason=f"{DEVICES} is absent")
def test_every_device_file_ingests_with_the_expected_windows(ray_address, tmp_path):
    files = sorted(
        str(p) for p in DEVICES.iterdir() if recording_format(p.name) in ("cwa", "gt3x", "bin")
    )
    out = tmp_path / "corpus"
    report = ingest_recordings(files, str(out), quiet())
    by_file = {Path(r["file"]).name: r for r in report.recordings}
    assert report.exit_status == EXIT_OK
    assert {n for n, r in by_file.items() if r["status"] == "partial"} == {
        "GENEActiv_testfile.bin",
        "ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa",
    }
    manifest = corpus.read_manifest(out)
    windows_of = dict(
        zip(manifest["subject"].to_pylist(), manifest["n_windows"].to_pylist(), strict=True)
    )
    for path in files:
        read = read_recording(path)
        subject = pseudonymise(Path(path).name.rsplit(".", 1)[0])
        expected = expected_windows(int(read.times_ns[0]), int(read.times_ns[-1]))
        assert windows_of[subject] == expected, Path(path).name
        assert by_file[Path(path).name]["windows"] == expected
    _check_day_files(out, manifest)

    with open(out / QUARANTINE_NAME) as f:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    corrupt = rows["ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa"]
    assert corrupt["status"] == "partial" and float(corrupt["lost_seconds"]) == pytest.approx(7.2)
    truncated = rows["GENEActiv_testfile.bin"]
    assert truncated["status"] == "partial" and float(truncated["kept_fraction"]) < 1e-3
    assert "222048" in truncated["reason"]
    # the corrupt blocks 13 and 14 leave a gap: the windows over it are not worn
    corrupt_subject = pseudonymise("ax3_testfile_corrupt_blocks_0_13_14_142_143_144")
    entry = next(e for e in manifest.to_pylist() if e["subject"] == corrupt_subject)
    assert entry["n_wear"] < entry["n_windows"]
    _check_device_report(out, manifest, windows_of)
    first_report = corpus.read_ingest_report(out)

    again = ingest_recordings(files, str(out), quiet())
    assert {r["status"] for r in again.recordings} == {"skipped"}
    assert corpus.read_manifest(out).equals(manifest)
    assert corpus.read_ingest_report(out).equals(first_report)  # skipped files keep their rows


def _check_device_report(out: Path, manifest: pa.Table, windows_of: dict[str, int]) -> None:
    """The ingest report of the real device files: one row per file, what each holds."""
    report = corpus.read_ingest_report(out)
    assert report.schema.metadata[b"corpus_version"] == str(corpus.CORPUS_VERSION).encode()
    rows = {Path(r["file"]).name: r for r in report.to_pylist()}
    assert len(rows) == len(manifest)
    recordings = set(manifest["recording"].to_pylist())
    for row in rows.values():
        assert row["recording"] in recordings and row["device_id"]
        assert row["windows"] == windows_of[row["subject"]] >= row["wear_windows"]
        assert row["calibration"] in ("applied", "refused")
        if row["calibration"] == "refused":
            assert row["calibration_reason"]
    # the ActiGraph's 23 idle-sleep periods are filled and worn: no gap, every window worn
    actigraph = rows["GGIR_actigraph_testfile.gt3x"]
    assert actigraph["idle_sleep_seconds"] == pytest.approx(1180.0)
    assert (actigraph["gaps"], actigraph["windows"], actigraph["wear_windows"]) == (0, 176, 176)
    assert actigraph["utc_offset_seconds"] == 7200 and "stated by the device" in actigraph["clock"]
    assert actigraph["first_sample"] == "2020-08-26T10:09:00.000"
    corrupt = rows["ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa"]
    assert corrupt["read_errors"] == 6 and "CWA block" in corrupt["reader_message"]
    assert corrupt["gaps"] >= 1 and corrupt["gap_seconds"] > 0
    assert corrupt["utc_offset_seconds"] is None and "not stated" in corrupt["clock"]
    assert "222048" in rows["GENEActiv_testfile.bin"]["reader_message"]
    assert rows["GENEActiv_testfile.bin"]["utc_offset_seconds"] == 3600


# ---------------------------------------------------------------- bad input, via the job


def test_bad_inputs_are_quarantined_and_the_job_exits_3(ray_address, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_npy(inputs / "good1.npy", 600, 30, seed=1)
    write_npy(inputs / "good2.npy", 300, 30, seed=2)
    write_npy(inputs / "short.npy", 5, 30, seed=3)
    (inputs / "empty.cwa").write_bytes(b"")
    (inputs / "garbage.cwa").write_bytes(np.random.default_rng(0).bytes(5000))
    (inputs / "notes.xyz").write_text("not a recording\n")
    out = tmp_path / "corpus"
    args = [str(inputs / "*"), "--out", str(out), "--rate", "30", "--start", START]
    job = run_job(args + ["--flush-seconds", "0"], ray_address)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == EXIT_QUARANTINED, output
    assert "good1" not in output and "garbage" not in output  # logs carry pseudonyms only
    assert "ingest report: 2 recordings ingested (2 npy): " in output
    report = {Path(r["file"]).name: r for r in corpus.read_ingest_report(out).to_pylist()}
    assert len(report) == 6
    assert "not a readable device file" in report["garbage.cwa"]["reader_message"]
    assert report["good1.npy"]["clock"] == "wall-clock times as given; UTC offset not stated"

    with open(out / QUARANTINE_NAME) as f:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    reasons = {name: row["reason"] for name, row in rows.items() if row["status"] == "quarantined"}
    assert set(reasons) == {"empty.cwa", "garbage.cwa", "notes.xyz", "short.npy"}
    assert "empty file" in reasons["empty.cwa"]
    assert "not a readable device file" in reasons["garbage.cwa"]
    assert "unknown recording format" in reasons["notes.xyz"]
    assert "too short" in reasons["short.npy"]
    manifest = corpus.read_manifest(out)
    assert set(manifest["subject"].to_pylist()) == {pseudonymise("good1"), pseudonymise("good2")}
    assert sorted(manifest["n_windows"].to_pylist()) == [
        expected_windows(START_NS, START_NS + round((seconds * 30 - 1) * NS / 30))
        for seconds in (300, 600)
    ]


# ---------------------------------------------------------------- Empatica E4, via the job


E4 = REPO.parent / "shared" / "data" / "e4-stress"


@pytest.mark.realdata
@pytest.mark.skipif(not E4.is_dir(), reason=f"{E4} is absent")
def test_e4_sessions_ingest_worn_throughout_named_by_their_folders(ray_address, tmp_path):
    """Three real E4 sessions (seated, worn throughout): every window is worn, the
    subjects are the folders, and the report says the times were UTC moved to a zone."""
    out = tmp_path / "corpus"
    args = [str(E4 / "S0[1-3]" / "ACC.csv.gz"), "--out", str(out), "--timezone", "Europe/London"]
    job = run_job(args, ray_address)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == EXIT_OK, output
    assert "ingest report: 3 recordings ingested (3 E4): " in output
    manifest = corpus.read_manifest(out)
    windows_of = dict(
        zip(manifest["subject"].to_pylist(), manifest["n_windows"].to_pylist(), strict=True)
    )
    assert set(windows_of) == {pseudonymise(f"S0{i}") for i in (1, 2, 3)}
    for session in ("S01", "S02", "S03"):
        read = read_recording(str(E4 / session / "ACC.csv.gz"))
        expected = expected_windows(int(read.times_ns[0]), int(read.times_ns[-1]))
        assert windows_of[pseudonymise(session)] == expected > 300
    assert manifest["n_wear"].to_pylist() == manifest["n_windows"].to_pylist()
    for table in day_rows(out, manifest).values():
        assert np.isfinite(corpus.decode_windows(table)).all()
    for row in corpus.read_ingest_report(out).to_pylist():
        assert (row["device"], row["sample_rate_hz"], row["status"]) == ("E4", 32.0, "ingested")
        assert row["clock"] == "UTC times moved to the wall clock of Europe/London"
        assert row["utc_offset_seconds"] == 0  # February: GMT
        assert row["gaps"] == 0 and row["nonwear_seconds"] == 0


def _dotnet_ticks_to_wall_clock(ticks: int) -> np.datetime64:
    """An ActiGraph header time (.NET ticks of 100 ns since 0001-01-01, local time)."""
    return np.datetime64("0001-01-01T00:00:00", "ms") + np.timedelta64(ticks // 10_000, "ms")


@pytest.mark.realdata
@pytest.mark.skipif(not DEVICES.is_dir(), reason=f"{DEVICES} is absent")
def test_an_actigraph_set_up_at_minus_5_hours_keeps_its_local_times(ray_address, tmp_path):
    """The real ActiGraph file with its info.txt saying -05:00: the corpus holds the
    header's local times as they are (no zone), and the report keeps the -18000 s offset."""
    import zipfile

    original = DEVICES / "GGIR_actigraph_testfile.gt3x"
    path = actigraph_set_up_in_new_york(original, tmp_path)
    with zipfile.ZipFile(original) as source:
        info = source.read("info.txt").decode()
    header = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    start = _dotnet_ticks_to_wall_clock(int(header["Start Date"]))
    last = _dotnet_ticks_to_wall_clock(int(header["Last Sample Time"]))
    assert str(start) == "2020-08-26T10:09:00.000"

    out = tmp_path / "corpus"
    report = ingest_recordings([str(path)], str(out), quiet())
    assert report.exit_status == EXIT_OK
    (row,) = corpus.read_ingest_report(out).to_pylist()
    assert row["utc_offset_seconds"] == -18000 and "stated by the device" in row["clock"]
    assert row["first_sample"] == "2020-08-26T10:09:00.000"
    (entry,) = corpus.read_manifest(out).to_pylist()
    assert entry["day"] == "2020-08-26"
    stored = pq.read_schema(out / entry["file"]).field("time").type
    assert stored == pa.timestamp("ms") and stored.tz is None
    times = corpus.read_day(str(out), entry)["time"].to_numpy()
    assert times[0] == start
    assert np.all(np.diff(times) == np.timedelta64(10, "s"))
    assert times[-1] + np.timedelta64(10, "s") <= last + np.timedelta64(1, "s")


# ---------------------------------------------------------------- kill and resume


@pytest.mark.slow
def test_ingest_killed_midway_and_rerun_has_every_window_once(ray_address, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    n_recordings, rate, seconds = 12, 30, 86_400  # one day from noon: two subject-days each
    for i in range(n_recordings):
        write_npy(inputs / f"rec{i:02d}.npy", seconds, rate, seed=i)
    out = tmp_path / "corpus"
    args = [str(inputs), "--out", str(out), "--rate", str(rate), "--start", START]
    job = run_job(args + ["--flush-seconds", "0"], ray_address, start_new_session=True)
    manifest_path = out / corpus.MANIFEST_NAME
    listed = 0
    deadline = time.monotonic() + 300
    while job.poll() is None and time.monotonic() < deadline:
        if manifest_path.exists():
            listed = len(set(pq.read_table(manifest_path)["recording"].to_pylist()))
            if 0 < listed < n_recordings:
                os.killpg(job.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"
    assert 0 < listed < n_recordings

    rerun = run_job(args, ray_address)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == EXIT_OK, output
    assert output.count("skipped (already ingested)") >= listed

    manifest = corpus.read_manifest(out)
    last_ns = START_NS + round((seconds * rate - 1) * NS / rate)
    per_recording = expected_windows(START_NS, last_ns)
    assert len(set(manifest["recording"].to_pylist())) == n_recordings
    assert manifest.num_rows == 2 * n_recordings
    assert sum(manifest["n_windows"].to_pylist()) == n_recordings * per_recording
    tables = day_rows(out, manifest)
    assert sum(t.num_rows for t in tables.values()) == n_recordings * per_recording
    _check_day_files(out, manifest)
    day_files = list((out / corpus.DAYS_DIR).rglob("*.parquet"))
    assert len(day_files) == manifest.num_rows  # no stray or temporary files
    assert not list(out.rglob(".tmp-*"))


# ---------------------------------------------------------------- one subject, two recordings


def test_two_recordings_of_one_subject_merge_into_one_day(ray_address, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    day_ns = int(np.datetime64("2024-02-01T00:00:00", "ns").astype(np.int64))
    write_npz(inputs / "first.npz", day_ns, 6 * 3600, 30, seed=1)  # 00:00 to 06:00
    write_npz(inputs / "second.npz", day_ns + 4 * 3600 * NS, 6 * 3600, 30, seed=2)  # 04:00-10:00
    subject_map = tmp_path / "subjects.csv"
    subject_map.write_text("file,subject\nfirst.npz,S7\nsecond.npz,S7\n")
    out = tmp_path / "corpus"
    options = quiet(subject_map=str(subject_map), window_format=corpus.WindowFormat.INT16_MG)
    report = ingest_recordings([str(inputs)], str(out), options)
    assert [r["status"] for r in report.recordings] == ["ingested", "ingested"]

    manifest = corpus.read_manifest(out)
    assert manifest.num_rows == 1
    entry = manifest.to_pylist()[0]
    assert entry["subject"] == pseudonymise("S7")
    assert sorted(entry["recording"].split("+")) == sorted(
        r["recording"] for r in report.recordings
    )
    last_ms = (day_ns + 10 * 3600 * NS - round(NS / 30)) // 1_000_000
    assert entry["n_windows"] == expected_windows(day_ns, last_ms * 1_000_000) == 3600
    table = corpus.read_day(str(out), entry)
    _check_day_files(out, manifest)
    # where both recordings have a window, the first recording's is kept
    first = read_recording(str(inputs / "first.npz"))
    first_windows = preprocess(first.times_ns, first.xyz, 30, IngestOptions().preprocess)
    overlap_ms = first_windows.starts_ns[-1] // 1_000_000
    times = table["time"].cast(pa.int64()).to_numpy()
    row = int(np.flatnonzero(times == overlap_ms)[0])
    stored = corpus.decode_windows(table, [row])[0]
    np.testing.assert_allclose(stored, first_windows.windows[-1], atol=1e-3)

    again = ingest_recordings([str(inputs)], str(out), options)
    assert [r["status"] for r in again.recordings] == ["skipped", "skipped"]


def test_subject_map_missing_a_file_quarantines_it(ray_address, tmp_path):
    write_npy(tmp_path / "a.npy", 60, 30)
    write_npy(tmp_path / "b.npy", 60, 30)
    subject_map = tmp_path / "subjects.csv"
    subject_map.write_text("file,subject\na.npy,S1\n")
    options = quiet(subject_map=str(subject_map), read=ReadOptions(sample_rate_hz=30, start=START))
    report = ingest_recordings(
        [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")], str(tmp_path / "corpus"), options
    )
    status = {Path(r["file"]).name: r["status"] for r in report.recordings}
    assert status == {"a.npy": "ingested", "b.npy": "quarantined"}
    assert report.exit_status == EXIT_QUARANTINED


def test_ingest_into_an_older_corpus_keeps_its_version(ray_address, tmp_path):
    """Versions 1 and 2 stay as they are (a corpus never mixes versions); a new corpus is
    version 3. All read back as the same windows and the same naive wall-clock times."""
    write_npy(tmp_path / "a.npy", 120, 30)
    options = quiet(read=ReadOptions(sample_rate_hz=30, start=START))
    tables, stored_times = {}, {}
    for version in (1, 2, 3):
        out = tmp_path / f"v{version}"
        if version < corpus.CORPUS_VERSION:
            corpus.write_info(out, corpus.CorpusInfo(version=version))
        report = ingest_recordings([str(tmp_path / "a.npy")], str(out), options)
        assert report.exit_status == EXIT_OK
        assert corpus.read_info(out).version == version
        (entry,) = corpus.read_manifest(out).to_pylist()
        tables[version] = corpus.read_day(str(out), entry)
        stored_times[version] = pq.read_schema(out / entry["file"]).field("time").type
    assert pa.types.is_fixed_size_list(tables[1].schema.field("window").type)
    assert pa.types.is_fixed_size_binary(tables[2].schema.field("window").type)
    assert pa.types.is_fixed_size_binary(tables[3].schema.field("window").type)
    assert stored_times == {
        1: pa.timestamp("ms", tz="UTC"),
        2: pa.timestamp("ms", tz="UTC"),
        3: pa.timestamp("ms"),
    }
    first = tables[1]
    assert first.num_rows == 12
    assert first["time"][0].as_py().isoformat() == "2024-01-01T12:00:00"
    for table in tables.values():
        assert table["time"].equals(first["time"])
        np.testing.assert_array_equal(corpus.decode_windows(table), corpus.decode_windows(first))


def test_ingest_refuses_a_corpus_of_a_newer_version(tmp_path):
    write_npy(tmp_path / "a.npy", 60, 30)
    info_path = tmp_path / "corpus" / corpus.INFO_NAME
    info_path.parent.mkdir()
    info_path.write_text(f'{{"version": {corpus.CORPUS_VERSION + 1}}}')
    with pytest.raises(ValueError, match=f"version {corpus.CORPUS_VERSION + 1}") as refused:
        ingest_recordings([str(tmp_path / "a.npy")], str(info_path.parent), quiet())
    assert str(info_path) in str(refused.value)


def test_options_refuse_windows_the_corpus_cannot_hold():
    with pytest.raises(ValueError, match="10-s windows"):
        IngestOptions(preprocess=PreprocessOptions(window_seconds=5))
