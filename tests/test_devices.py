"""Reading device recordings: real device files against their truth arrays, bad files,
format detection, ActiGraph idle sleep and clocks, Empatica E4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import actigraph_set_up_in_new_york
from wearssl.data.devices import (
    CLOCK_DEVICE_LOCAL,
    CLOCK_DEVICE_OFFSET,
    CsvColumns,
    ReadOptions,
    RecordingError,
    read_recording,
    recording_format,
    recording_stem,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEVICES = DATA / "devices"
DEVICE_FILES = sorted(
    p.name for p in DEVICES.glob("*") if recording_format(p.name) in ("cwa", "gt3x", "bin")
)
needs_devices = pytest.mark.skipif(not DEVICES.is_dir(), reason=f"{DEVICES} is absent")
NS = 1_000_000_000


def _seconds(times_ns: np.ndarray) -> np.ndarray:
    return times_ns / NS


# ---------------------------------------------------------------- real device files


@needs_devices
@pytest.mark.realdata
@pytest.mark.parametrize(
    "recording, truth, value_tolerance",
    [
        ("skdh_ax3_sample.cwa", "skdh_ax3_data.npz", 1e-6),
        ("skdh_ax6_sample.cwa", "skdh_ax6_data.npz", 1e-6),
        # GENEActiv stores raw counts; the truth applied the header's calibration in float64
        ("skdh_gnactv_sample.bin", "skdh_gnactv_data.npz", 1e-4),
    ],
)
def test_device_values_equal_truth_arrays(recording, truth, value_tolerance):
    read = read_recording(str(DEVICES / recording))
    expected = np.load(DEVICES / truth)
    assert read.n_samples == len(expected["time"])
    np.testing.assert_allclose(read.xyz, expected["accel"], rtol=0, atol=value_tolerance)
    # the truth's times are float64 seconds; the readers' are within a millisecond of them
    np.testing.assert_allclose(_seconds(read.times_ns), expected["time"], rtol=0, atol=1.5e-3)


def _ggir_truth(name: str) -> np.ndarray:
    """(n, 4) unix seconds, x, y, z from one of the GGIR CSVs."""
    table = pd.read_csv(DEVICES / name, header=None)
    if pd.api.types.is_numeric_dtype(table[0]):
        seconds = table[0].to_numpy(np.float64)
    else:
        seconds = pd.to_datetime(table[0]).to_numpy("datetime64[ns]").astype(np.int64) / NS
    return np.column_stack([seconds, table[[1, 2, 3]].to_numpy(np.float64)])


@needs_devices
@pytest.mark.realdata
@pytest.mark.parametrize(
    "recording, truth",
    [
        ("ax3_testfile.cwa", "GGIR_ax3_testfile_unix_timestamps.csv"),
        ("ax6_testfile.cwa", "GGIR_ax6_testfile_formatted_timestamps.csv"),
    ],
)
def test_device_values_match_ggir_truth(recording, truth):
    """GGIR's export interpolates its own timestamps within a block and leaves out an odd
    sample, so each of its rows must be one of ours: same values, time within 20 ms."""
    read = read_recording(str(DEVICES / recording))
    seconds = _seconds(read.times_ns)
    rows = _ggir_truth(truth)
    assert len(rows) > 100
    for t, *values in rows:
        near = np.abs(seconds - t) < 0.02
        assert np.any(near & np.all(np.abs(read.xyz - values) < 1e-5, axis=1)), (
            f"{truth}: no sample at {t} with values {values}"
        )


@needs_devices
@pytest.mark.realdata
@pytest.mark.parametrize("name", DEVICE_FILES)
def test_every_device_file_reads(name):
    read = read_recording(str(DEVICES / name))
    assert read.n_samples > 100
    assert np.all(np.diff(read.times_ns) > 0)
    assert np.isfinite(read.xyz).all() and np.abs(read.xyz).max() < 20
    assert 5 < read.sample_rate_hz < 500
    assert read.duration_seconds > 10
    # a device at rest or moving measures about 1 g on average
    assert 0.5 < np.linalg.norm(read.xyz, axis=1).mean() < 2


@needs_devices
@pytest.mark.realdata
def test_corrupt_ax3_blocks_are_skipped_and_counted():
    name = "ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa"
    corrupt = read_recording(str(DEVICES / name))
    clean = read_recording(str(DEVICES / "ax3_testfile.cwa"))
    assert corrupt.read_errors == 6
    lost_samples = clean.n_samples - corrupt.n_samples
    assert lost_samples > 0
    assert corrupt.lost_seconds == pytest.approx(lost_samples / clean.sample_rate_hz, rel=0.05)
    assert corrupt.kept_fraction == pytest.approx(corrupt.n_samples / clean.n_samples, rel=0.01)
    assert any("CWA block" in note for note in corrupt.notes)
    # what was kept is exactly the clean file's other blocks (120 samples each)
    blocks = clean.xyz.reshape(-1, 120, 3)
    kept = np.delete(blocks, [0, 13, 14, 142, 143, 144], axis=0).reshape(-1, 3)
    np.testing.assert_array_equal(corrupt.xyz, kept)


@needs_devices
@pytest.mark.realdata
def test_truncated_geneactiv_keeps_what_is_there():
    read = read_recording(str(DEVICES / "GENEActiv_testfile.bin"))
    header_samples = 222_048 * 300
    assert read.n_samples > 0 and read.read_errors > 0
    assert read.lost_seconds == pytest.approx(
        (header_samples - read.n_samples) / read.sample_rate_hz
    )
    assert read.kept_fraction == pytest.approx(read.n_samples / header_samples)
    assert any("222048" in note for note in read.notes)


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.cwa", b"", "empty"),
        ("garbage.cwa", bytes(range(256)) * 40, "not a readable device file"),
        ("garbage.gt3x", b"not a zip" * 100, "not a readable device file"),
        ("notes.xyz", b"1,2,3\n", "unknown recording format"),
        ("bad.csv", b"a,b\n1,2\n", "cannot read as CSV"),
        ("bad.npy", b"\x93NUMPY garbage", "not a readable .npy"),
    ],
)
def test_bad_files_raise_recording_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=reason) as raised:
        read_recording(str(path), ReadOptions(sample_rate_hz=30, start="2024-01-01T00:00:00"))
    assert name in str(raised.value)


def test_missing_file_is_a_recording_error(tmp_path):
    with pytest.raises(RecordingError, match="not found"):
        read_recording(str(tmp_path / "absent.cwa"))


def test_format_and_stem_from_names():
    assert recording_format("/x/P01.cwa.gz") == "cwa"
    assert recording_format("P01.CWA") == "cwa"
    assert recording_format("a.BIN") == "bin"
    assert recording_format("a.csv.gz") == "csv"
    assert recording_format("a.txt") is None
    assert recording_format(".cwa") is None
    assert recording_stem("/x/P01.cwa.gz") == "P01"
    assert recording_stem("s1.2.csv") == "s1.2"


def test_read_options_reject_bad_values():
    with pytest.raises(ValueError, match="units"):
        ReadOptions(units="mg")
    with pytest.raises(ValueError, match="timezone"):
        ReadOptions(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="ROLE=NAME"):
        CsvColumns.parse(["speed=v"])


# ---------------------------------------------------------------- ActiGraph idle sleep, clocks


@needs_devices
@pytest.mark.realdata
def test_actigraph_idle_sleep_is_filled_with_the_last_sample():
    """The wGT3X-BT file logs 23 idle-sleep periods (sleep/wake events) totalling 1180 s;
    actipy returns no samples for them. Each is filled at 30 Hz with the sample before it."""
    import actipy

    raw, _ = actipy.read_device(
        str(DEVICES / "GGIR_actigraph_testfile.gt3x"),
        lowpass_hz=None,
        calibrate_gravity=False,
        detect_nonwear=False,
        resample_hz=None,
        verbose=False,
    )
    raw_times = raw.index.values.astype("datetime64[ns]").view(np.int64)
    read = read_recording(str(DEVICES / "GGIR_actigraph_testfile.gt3x"))
    assert read.idle_sleep_seconds == pytest.approx(1180.0)
    assert read.n_samples == len(raw) + 1180 * 30
    steps = np.diff(read.times_ns)
    assert steps.min() > 0 and steps.max() <= 34_000_000  # 30 Hz throughout, no gap left
    before_gap = np.flatnonzero(np.diff(raw_times) > NS)
    assert len(before_gap) == 23
    for index in before_gap:
        at = np.flatnonzero(read.times_ns == raw_times[index])[0]
        following = read.times_ns < raw_times[index + 1]
        filled = read.xyz[at : np.flatnonzero(following)[-1] + 1]
        np.testing.assert_array_equal(filled, np.broadcast_to(filled[0], filled.shape))
    np.testing.assert_array_equal(read.xyz[np.isin(read.times_ns, raw_times)], raw[["x", "y", "z"]])


@needs_devices
@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, offset_seconds",
    [
        ("GGIR_actigraph_testfile.gt3x", 2 * 3600),  # info.txt: "TimeZone: 02:00:00"
        ("GENEActiv_testfile.bin", 3600),  # header: "Time Zone:GMT +01:00"
        ("ax3_testfile.cwa", None),  # a CWA header states no zone
    ],
)
def test_device_times_are_the_wall_clock_with_the_offset_the_device_states(name, offset_seconds):
    read = read_recording(str(DEVICES / name))
    assert read.utc_offset_seconds == offset_seconds
    assert read.clock == (CLOCK_DEVICE_LOCAL if offset_seconds is None else CLOCK_DEVICE_OFFSET)
    assert read.device_id


@needs_devices
@pytest.mark.realdata
def test_actigraph_negative_time_zone_is_read_from_its_header(tmp_path):
    """The real file with its info.txt saying -05:00 (an ActiGraph set up in New York)."""
    path = actigraph_set_up_in_new_york(DEVICES / "GGIR_actigraph_testfile.gt3x", tmp_path)
    read = read_recording(str(path))
    original = read_recording(str(DEVICES / "GGIR_actigraph_testfile.gt3x"))
    assert read.utc_offset_seconds == -5 * 3600
    np.testing.assert_array_equal(read.times_ns, original.times_ns)  # wall clock kept


# ---------------------------------------------------------------- Empatica E4


E4 = DATA / "e4-stress"
needs_e4 = pytest.mark.skipif(not E4.is_dir(), reason=f"{E4} is absent")


@needs_e4
@pytest.mark.realdata
def test_e4_acc_file_reads_as_a_device_named_by_its_folder():
    path = E4 / "S01" / "ACC.csv.gz"
    table = pd.read_csv(path, header=None)
    start, rate = float(table.iloc[0, 0]), float(table.iloc[1, 0])
    counts = table.iloc[2:].to_numpy(np.float64)
    assert recording_format(str(path)) == "e4" and recording_stem(str(path)) == "S01"
    read = read_recording(str(path), ReadOptions(timezone="America/New_York"))
    assert (read.device, read.sample_rate_hz, read.resolution_g) == ("E4", 32.0, 1 / 64)
    assert read.n_samples == len(counts) and read.read_errors == 0
    np.testing.assert_array_equal(read.xyz, (counts / 64).astype(np.float32))
    # the start is Unix time (UTC): on New York's wall clock (EST in February) 5 h earlier
    assert read.utc_offset_seconds == -5 * 3600
    assert read.times_ns[0] == (int(start) - 5 * 3600) * NS
    assert read.times_ns[-1] == read.times_ns[0] + round((len(counts) - 1) * NS / rate)
    assert "New_York" in read.clock


def test_e4_file_with_a_bad_header_names_the_file_and_the_rows(tmp_path):
    folder = tmp_path / "S99"
    folder.mkdir()
    (folder / "ACC.csv").write_text("1644226061.0, 1644226099.0, 1644226061.0\n32, 32, 32\n1,2,3\n")
    with pytest.raises(RecordingError, match=r"S99/ACC\.csv: not an Empatica E4 file: row 1"):
        read_recording(str(folder / "ACC.csv"))
