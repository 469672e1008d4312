"""Reading self-describing recordings: CSV files (with and without a header row,
damaged lines, bad samples) and NumPy arrays, against the values written into them."""

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
)

NS = 1_000_000_000


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


# ---------------------------------------------------------------- bad samples in a long CSV


def _long_csv_rows(shared_data: Path, n: int = 72_000) -> list[str]:
    """``n`` real E4 samples (session S02) as ``time,x,y,z`` lines, time in Unix ms."""
    read = read_recording(str(shared_data / "e4-stress" / "S02" / "ACC.csv.gz"))
    ms = read.times_ns[:n] // 1_000_000
    return [f"{t},{x:g},{y:g},{z:g}" for t, (x, y, z) in zip(ms, read.xyz[:n], strict=True)]


def _write_csv(path: Path, rows: list[str]) -> str:
    path.write_text("time,x,y,z\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "garbage",
    [
        {100: "@@@ garbage @@@", 40_000: "x,y", 71_000: "1644226061000,a,b,c"},
        {36_000: "1644226061000,0.1,0.2,0.3,0.4"},  # one row with too many columns
    ],
)
def test_a_few_malformed_lines_in_a_long_csv_are_dropped_and_counted(
    shared_data, tmp_path, garbage
):
    rows = _long_csv_rows(shared_data)
    for index, line in sorted(garbage.items(), reverse=True):
        rows.insert(index, line)
    read = read_recording(_write_csv(tmp_path / "long.csv", rows))
    assert read.n_samples == 72_000
    assert read.dropped_rows == {"malformed lines": len(garbage)}
    assert read.read_errors == len(garbage)
    assert any(f"dropped {len(garbage)} malformed lines" in note for note in read.notes)


def test_a_csv_that_is_mostly_malformed_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "semicolons.csv"
    path.write_text("time,x,y,z\n" + "".join(f"{i};0;0;1\n" for i in range(100)))
    with pytest.raises(RecordingError, match=r"semicolons\.csv: cannot read as CSV"):
        read_recording(str(path))


@pytest.mark.realdata
def test_time_going_backwards_is_reported_as_lost(shared_data, tmp_path):
    rows = _long_csv_rows(shared_data)
    times = [int(row.split(",", 1)[0]) for row in rows]
    # the clock steps back 2 s at row 36,000: the 64 rows that repeat covered time go
    moved = zip(times[36_000:], rows[36_000:], strict=True)
    rows[36_000:] = [f"{t - 2000},{row.split(',', 1)[1]}" for t, row in moved]
    read = read_recording(_write_csv(tmp_path / "backwards.csv", rows))
    assert read.dropped_rows == {"time not increasing": 64}
    assert read.lost_seconds == pytest.approx(64 / 32, rel=0.01)
    assert read.kept_fraction == pytest.approx(71_936 / 72_000, rel=1e-3)
    back_ms = 2000 - (times[36_000] - times[35_999])  # from a sample to the next, less 2 s
    assert f"time goes backwards 1 times (by up to {back_ms / 1000:.3f} s)" in read.notes[0]


@pytest.mark.realdata
def test_huge_values_are_clipped_and_nan_samples_are_gaps(shared_data, tmp_path):
    from wearssl.data import corpus
    from wearssl.data.preprocess import preprocess

    rows = _long_csv_rows(shared_data)
    for index in range(20_000, 20_005):  # a sensor fault: values x 10^6
        t, x, y, z = rows[index].split(",")
        rows[index] = f"{t},{float(x) * 1e6},{float(y) * 1e6 + 3e6},{z}"
    for index in range(50_000, 50_160):  # 5 s of NaN samples
        rows[index] = rows[index].split(",")[0] + ",nan,nan,nan"
    read = read_recording(_write_csv(tmp_path / "faulty.csv", rows))
    assert read.clipped_samples == 5
    assert np.abs(read.xyz).max() == 16.0
    assert read.dropped_rows == {"missing or non-finite values": 160}
    windowed = preprocess(read.times_ns, read.xyz, read.sample_rate_hz)
    gap_from, gap_to = read.times_ns[49_999], read.times_ns[50_000]
    assert gap_to - gap_from == pytest.approx(161 * NS / 32, abs=2_000_000)
    over_gap = (windowed.starts_ns + 9_967_000_000 > gap_from) & (windowed.starts_ns < gap_to)
    assert over_gap.any() and not windowed.wear[over_gap].any()
    assert windowed.wear[~over_gap].all()
    table = corpus.day_table(
        "s", "2022-02-07", windowed.starts_ns // 1_000_000, windowed.windows, windowed.wear
    )
    assert np.isfinite(corpus.decode_windows(table)).all()
