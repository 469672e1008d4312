"""Reading raw recordings: real device files against their truth arrays, and the
self-describing formats (CSV, NumPy) against the values written into them."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wearssl.data.devices import (
    STANDARD_GRAVITY,
    CsvColumns,
    ReadOptions,
    RecordingError,
    read_csv_recording,
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


# ---------------------------------------------------------------- CSV and NumPy


def _signal(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.5, (n, 3)).astype(np.float32)


@pytest.mark.parametrize("gz", [False, True])
def test_csv_with_iso_times_round_trips(tmp_path, gz):
    xyz = _signal(500)
    times = pd.date_range("2024-03-01 23:59:00", periods=500, freq="20ms")
    frame = pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M:%S.%f"), "x": xyz[:, 0]})
    frame["y"], frame["z"] = xyz[:, 1], xyz[:, 2]
    path = tmp_path / ("rec.csv.gz" if gz else "rec.csv")
    text = frame.to_csv(index=False).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    read = read_recording(str(path))
    np.testing.assert_allclose(read.xyz, xyz, atol=1e-6)
    np.testing.assert_array_equal(read.times_ns, times.to_numpy("datetime64[ns]").astype(np.int64))
    assert read.sample_rate_hz == pytest.approx(50)


def test_csv_epoch_millis_in_m_s2_with_renamed_columns_and_timezone(tmp_path):
    xyz = _signal(200)
    start_ms = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC = 23:13:20 in Paris
    frame = pd.DataFrame(
        {
            "ts": start_ms + np.arange(200) * 10,
            "ax": xyz[:, 0] * STANDARD_GRAVITY,
            "ay": xyz[:, 1] * STANDARD_GRAVITY,
            "az": xyz[:, 2] * STANDARD_GRAVITY,
        }
    )
    frame.to_csv(tmp_path / "rec.csv", index=False)
    options = ReadOptions(
        units="m/s2",
        columns=CsvColumns.parse(["time=ts,x=ax", "y=ay", "z=az"]),
        timezone="Europe/Paris",
    )
    read = read_recording(str(tmp_path / "rec.csv"), options)
    np.testing.assert_allclose(read.xyz, xyz, atol=1e-5)
    paris_offset_ns = 3600 * NS
    assert read.times_ns[0] == start_ms * 1_000_000 + paris_offset_ns
    assert read.sample_rate_hz == pytest.approx(100)


def test_csv_rows_with_missing_or_repeated_times_are_dropped_and_counted(tmp_path):
    (tmp_path / "rec.csv").write_text(
        "time,x,y,z\n1700000000.00,0,0,1\n1700000000.01,0,,1\n"
        "1700000000.01,0,0,1\n1700000000.005,1,1,1\n1700000000.02,0,0,1\n"
    )
    read = read_recording(str(tmp_path / "rec.csv"))
    assert read.n_samples == 3
    assert read.read_errors == 2
    assert np.all(np.diff(read.times_ns) > 0)


# ---------------------------------------------------------------- CSV without a header row

BY_POSITION = ReadOptions(columns=CsvColumns.parse(["time=0,x=1,y=2,z=3"]))


def _ggir_rows_exact(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Times (int64 ns, from the text: exact) and x, y, z (float32) of a GGIR CSV."""
    from decimal import Decimal

    times, xyz = [], []
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if ":" in fields[0]:  # wall-clock text, kept as it is
            times.append(np.datetime64(fields[0].replace(" ", "T"), "ns").astype(np.int64))
        else:  # unix seconds
            times.append(int(Decimal(fields[0]) * NS))
        xyz.append([np.float32(v) for v in fields[1:4]])
    return np.array(times, np.int64), np.array(xyz, np.float32)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, device_file, still_g",
    [
        ("GGIR_ax3_testfile_unix_timestamps.csv", "ax3_testfile.cwa", (0.95, 1.15)),
        # the AX6 reads ~0.07 g at rest over these first 2 s, in its .cwa just the same
        # (~1 g later on); gyro columns 4-6 read ~15.8 in magnitude
        ("GGIR_ax6_testfile_formatted_timestamps.csv", "ax6_testfile.cwa", (0.05, 0.1)),
    ],
)
def test_ggir_csvs_read_by_column_position(shared_data, name, device_file, still_g):
    devices = shared_data / "devices"
    read = read_recording(str(devices / name), BY_POSITION)
    times, xyz = _ggir_rows_exact(devices / name)
    assert read.n_samples == len(times) > 200 and read.read_errors == 0  # no header row lost
    np.testing.assert_array_equal(read.times_ns, times)
    np.testing.assert_array_equal(read.xyz, xyz)
    assert np.all(np.diff(read.times_ns) > 0)
    assert read.sample_rate_hz == pytest.approx(100, rel=0.02)
    assert read.duration_seconds == pytest.approx(2.1, abs=0.05)
    # at rest the whole time: one steady magnitude, the device's own over the same span
    magnitude = np.linalg.norm(read.xyz, axis=1)
    assert read.xyz[1:].std(axis=0).max() < 0.15
    assert still_g[0] < np.median(magnitude) < still_g[1]
    device = read_recording(str(devices / device_file))
    span = (device.times_ns >= read.times_ns[0]) & (device.times_ns <= read.times_ns[-1])
    assert np.linalg.norm(device.xyz[span], axis=1).mean() == pytest.approx(
        magnitude.mean(), abs=0.01
    )


@pytest.mark.parametrize("gz", [False, True])
def test_headerless_csv_with_unix_seconds_reads_back_exactly(tmp_path, gz):
    # columns out of order and a column to ignore: z, unused, time, x, y
    xyz = np.array([[0.015625, -0.5, 1.0], [0.25, -0.375, 0.984375], [0.0, 0.125, -1.5]])
    seconds = ["1700000000.000", "1700000000.010", "1700000000.020"]
    text = "".join(
        f"{z},{9.5 * i},{t},{x},{y}\n"
        for i, (t, (x, y, z)) in enumerate(zip(seconds, xyz, strict=True))
    ).encode()
    path = tmp_path / ("rec.csv.gz" if gz else "rec.csv")
    path.write_bytes(gzip.compress(text) if gz else text)
    columns = CsvColumns.parse(["time=2", "x=3", "y=4", "z=0"])
    assert columns.positional
    read = read_recording(str(path), ReadOptions(columns=columns, timezone="Europe/Paris"))
    np.testing.assert_array_equal(read.xyz, xyz.astype(np.float32))
    paris = 3600 * NS  # unix times are absolute: moved onto the Paris wall clock
    expected = 1_700_000_000 * NS + np.array([0, 10, 20]) * 1_000_000 + paris
    np.testing.assert_array_equal(read.times_ns, expected)
    assert read.sample_rate_hz == pytest.approx(100)


def test_headerless_csv_with_wall_clock_strings_and_labels(tmp_path):
    (tmp_path / "rec.csv").write_text(
        "2019-12-23 21:04:06.690,0.5,0.25,-1,walk\n"
        "2019-12-23 21:04:06.700,0.5,0.25,-1.5,walk\n"
        "2019-12-23 21:04:06.710,0.125,0.25,-1,sit\n"
    )
    columns = CsvColumns.parse(["time=0,x=1,y=2,z=3,label=4"])
    read = read_csv_recording(
        str(tmp_path / "rec.csv"), ReadOptions(columns=columns, timezone="Europe/Paris"), True
    )
    start = np.datetime64("2019-12-23T21:04:06.690", "ns").astype(np.int64)  # kept as written
    np.testing.assert_array_equal(read.times_ns, start + np.arange(3) * 10_000_000)
    np.testing.assert_array_equal(read.xyz, [[0.5, 0.25, -1], [0.5, 0.25, -1.5], [0.125, 0.25, -1]])
    assert read.labels.tolist() == ["walk", "walk", "sit"]


@pytest.mark.parametrize(
    "pairs, message",
    [
        (["time=0,x=ax,y=2,z=3"], r"x='ax' is a name but time=0, y=2, z=3 are positions"),
        (["time=ts", "x=1"], r"time='ts' is a name but x=1 is a position"),
        (["time=0,x=1,y=2,z=3,label=activity"], r"label='activity' is a name"),
        (["time=0,x=1"], r"leave \['y', 'z'\] unset"),
        (["time=0,x=1,y=2,z=-1"], r"'z=-1': a position must be 0 or more"),
        (["time=0,x=1,y=1,z=2"], r"position 1 is given for both x and y"),
    ],
)
def test_mixed_or_bad_column_positions_are_refused_naming_the_value(pairs, message):
    with pytest.raises(ValueError, match=message):
        CsvColumns.parse(pairs)


def test_names_and_positions_do_not_mix_when_built_directly():
    with pytest.raises(ValueError, match=r"\{'x': 'ax'\} are names but .*'time': 0"):
        CsvColumns(time=0, x="ax", y=2, z=3)
    with pytest.raises(ValueError, match="label=4 is a position"):
        CsvColumns(label=4)


def test_headerless_csv_errors_name_the_file_the_value_and_the_column_count(tmp_path):
    path = tmp_path / "rec.csv"
    path.write_text("1700000000.00,0,0,1\n1700000000.01,0,0,1\n")
    options = ReadOptions(columns=CsvColumns.parse(["time=0,x=1,y=2,z=7"]))
    with pytest.raises(RecordingError, match=r"rec\.csv: column position z=7 is out of range"):
        read_recording(str(path), options)
    with pytest.raises(RecordingError, match=r"has 4 column\(s\) \(positions 0 to 3\)"):
        read_recording(str(path), options)
    # positions mean no header row: a file with one says so
    (tmp_path / "head.csv").write_text("time,x,y,z\n1700000000.00,0,0,1\n")
    with pytest.raises(RecordingError, match=r"head\.csv: .*must have no header row"):
        read_recording(str(tmp_path / "head.csv"), BY_POSITION)
    # a time column that is neither a number nor a date names the file and the position
    (tmp_path / "times.csv").write_text("soon,0,0,1\nlater,0,0,1\n")
    with pytest.raises(RecordingError, match=r"times\.csv: time column 0: "):
        read_recording(str(tmp_path / "times.csv"), BY_POSITION)
    # a label name among positions is refused before anything is read
    labelled = ReadOptions(columns=CsvColumns(time=0, x=1, y=2, z=3))
    with pytest.raises(RecordingError, match=r"rec\.csv: .*label='label' is a name"):
        read_csv_recording(str(path), labelled, with_labels=True)


def test_npy_needs_rate_and_start_and_gives_regular_times(tmp_path):
    xyz = _signal(300)
    np.save(tmp_path / "rec.npy", xyz)
    with pytest.raises(RecordingError, match="sample rate"):
        read_recording(str(tmp_path / "rec.npy"), ReadOptions(start="2024-01-01T00:00:00"))
    with pytest.raises(RecordingError, match="start time"):
        read_recording(str(tmp_path / "rec.npy"), ReadOptions(sample_rate_hz=25))
    read = read_recording(
        str(tmp_path / "rec.npy"), ReadOptions(sample_rate_hz=25, start="2024-01-01T00:00:00")
    )
    np.testing.assert_array_equal(read.xyz, xyz)
    start_ns = pd.Timestamp("2024-01-01").value
    np.testing.assert_array_equal(read.times_ns, start_ns + np.arange(300) * 40_000_000)


def test_npy_of_wrong_shape_is_rejected(tmp_path):
    np.save(tmp_path / "rec.npy", np.zeros((10, 4)))
    with pytest.raises(RecordingError, match=r"\(n, 3\)"):
        read_recording(
            str(tmp_path / "rec.npy"), ReadOptions(sample_rate_hz=25, start="2024-01-01")
        )


def test_npz_with_times_in_ms(tmp_path):
    xyz = _signal(100)
    times_ms = 1_704_067_200_000 + np.arange(100) * 10
    np.savez(tmp_path / "rec.npz", xyz=xyz, times_ms=times_ms)
    read = read_recording(str(tmp_path / "rec.npz"))
    np.testing.assert_array_equal(read.times_ns, times_ms * 1_000_000)
    assert read.sample_rate_hz == pytest.approx(100)


def test_npz_without_samples_names_the_keys(tmp_path):
    np.savez(tmp_path / "rec.npz", other=np.zeros(3))
    with pytest.raises(RecordingError, match="other"):
        read_recording(str(tmp_path / "rec.npz"))


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
