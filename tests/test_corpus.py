"""The corpus format: window encodings and layouts (versions 1 and 2), window std,
manifest merging, splits, pseudonyms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wearssl.data import corpus, privacy
from wearssl.data import sampler as epochs
from wearssl.data.corpus import (
    CHANNELS,
    WINDOW_SAMPLES,
    WindowFormat,
    add_to_manifest,
    decode_windows,
    read_manifest,
    subject_split,
    window_std,
    write_manifest,
)

RANGE_G = 8.0
VERSIONS = (1, 2, 3)
STORED_DTYPE = {
    WindowFormat.FLOAT16: np.float16,
    WindowFormat.INT16_MG: np.int16,
    WindowFormat.FLOAT32: np.float32,
}
DRAW_DTYPE = {
    WindowFormat.FLOAT16: np.float16,
    WindowFormat.INT16_MG: np.float16,
    WindowFormat.FLOAT32: np.float32,
}


def _random_windows(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-RANGE_G, RANGE_G, (n, CHANNELS, WINDOW_SAMPLES)).astype(np.float32)


def _table(
    windows: np.ndarray,
    window_format: WindowFormat = WindowFormat.FLOAT16,
    version: int = corpus.CORPUS_VERSION,
    subject: str = "pa",
) -> pa.Table:
    n = len(windows)
    times = np.arange(n, dtype=np.int64) * 10_000
    wear = np.arange(n) % 5 != 0
    return corpus.day_table(subject, "2024-01-01", times, windows, wear, window_format, version)


def _v1_table_built_by_hand(windows: np.ndarray, window_format: WindowFormat) -> pa.Table:
    """A version-1 day table built from the layout's definition, not by the corpus writer:
    ``window`` a fixed-size list of 900 values of the storage type."""
    if window_format is WindowFormat.INT16_MG:
        stored = np.clip(np.rint(windows * 1000.0), -32768, 32767).astype(np.int16)
    else:
        stored = windows.astype(STORED_DTYPE[window_format])
    values = pa.array(stored.reshape(-1))  # float16, int16 or float32, as numpy has them
    n = len(windows)
    return pa.table(
        {
            "subject": pa.array(["pa"] * n),
            "day": pa.array(["2024-01-01"] * n),
            "time": pa.array(np.arange(n) * 10_000, pa.timestamp("ms", tz="UTC")),
            "window": pa.FixedSizeListArray.from_arrays(values, CHANNELS * WINDOW_SAMPLES),
            "std": pa.array(window_std(windows), pa.float32()),
            "wear": pa.array(np.arange(n) % 5 != 0),
        }
    )


def _assert_identical(first: np.ndarray, second: np.ndarray) -> None:
    assert first.dtype == second.dtype
    assert first.shape == second.shape
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("version", VERSIONS)
def test_float32_round_trip_is_exact(version: int) -> None:
    windows = _random_windows()
    decoded = decode_windows(_table(windows, WindowFormat.FLOAT32, version))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, windows)


@pytest.mark.parametrize("version", VERSIONS)
def test_float16_round_trip_keeps_half_precision(version: int) -> None:
    """float16 keeps 11 significant bits: within 1e-3 g below 2 g, 4 mg at 8 g, and exact
    on the AX3's 1/256 g grid across its +-8 g range."""
    windows = _random_windows()
    decoded = decode_windows(_table(windows, WindowFormat.FLOAT16, version))
    error = np.abs(decoded - windows)
    assert np.all(error <= np.abs(windows) * 2.0**-11 + 1e-7)
    assert np.all(error[np.abs(windows) < 2.0] <= 1e-3)
    ax3 = np.round(windows * 256) / 256
    np.testing.assert_array_equal(decode_windows(_table(ax3, WindowFormat.FLOAT16, version)), ax3)


@pytest.mark.parametrize("version", VERSIONS)
def test_int16_milli_g_round_trip_within_half_a_milli_g(version: int) -> None:
    windows = _random_windows()
    decoded = decode_windows(_table(windows, WindowFormat.INT16_MG, version))
    assert decoded.dtype == np.float32
    assert np.max(np.abs(decoded - windows)) <= 0.5e-3 + 1e-6


@pytest.mark.parametrize("window_format", list(WindowFormat))
def test_version_2_stores_one_little_endian_channel_major_value_per_window(
    window_format: WindowFormat, tmp_path: Path
) -> None:
    windows = np.round(_random_windows(7) * 256) / 256
    entry = corpus.write_day(str(tmp_path), _table(windows, window_format), "rec")
    field = pq.read_schema(tmp_path / entry["file"]).field("window")
    itemsize = np.dtype(STORED_DTYPE[window_format]).itemsize
    assert field.type == pa.binary(CHANNELS * WINDOW_SAMPLES * itemsize)
    read = corpus.read_day(str(tmp_path), entry)
    stored = decode_windows(read, dtype=None)
    if window_format is WindowFormat.INT16_MG:
        expected = np.rint(windows[3] * 1000).astype("<i2").tobytes()
    else:
        expected = windows[3].astype(np.dtype(STORED_DTYPE[window_format]).newbyteorder("<"))
        expected = expected.tobytes()
    assert read["window"][3].as_py() == expected  # (3, L) row-major: channel by channel
    assert stored.dtype == DRAW_DTYPE[window_format]
    np.testing.assert_array_equal(
        decode_windows(read), decode_windows(_table(windows, window_format))
    )
    np.testing.assert_allclose(decode_windows(read), windows, atol=0.5e-3)


@pytest.mark.parametrize("window_format", list(WindowFormat))
def test_version_1_files_read_identically_to_version_2(
    window_format: WindowFormat, tmp_path: Path
) -> None:
    """A day file in the list layout, built by hand and by the version-1 writer, decodes to
    exactly what its version-2 copy does: dtype, shape and values, whole or some rows."""
    windows = _random_windows(20, seed=3)
    v1_by_hand = tmp_path / "v1.parquet"
    pq.write_table(_v1_table_built_by_hand(windows, window_format), v1_by_hand)
    v1_entry = corpus.write_day(str(tmp_path / "v1"), _table(windows, window_format, 1), "r")
    v2_entry = corpus.write_day(str(tmp_path / "v2"), _table(windows, window_format, 2), "r")
    v1 = corpus.read_day(str(tmp_path / "v1"), v1_entry)
    v2 = corpus.read_day(str(tmp_path / "v2"), v2_entry)
    assert pa.types.is_fixed_size_list(v1.schema.field("window").type)
    assert pa.types.is_fixed_size_binary(v2.schema.field("window").type)
    rows = np.array([19, 0, 7, 7, 3])
    for table in (pq.read_table(v1_by_hand), v1):
        for dtype in (np.float32, None):
            _assert_identical(decode_windows(table, dtype=dtype), decode_windows(v2, dtype=dtype))
            _assert_identical(
                decode_windows(table, rows, dtype=dtype), decode_windows(v2, rows, dtype=dtype)
            )
    assert decode_windows(v2, rows, dtype=None).dtype == DRAW_DTYPE[window_format]


@pytest.mark.parametrize("version", VERSIONS)
def test_decode_accepts_chunked_sliced_and_empty_tables(version: int) -> None:
    windows = _random_windows(6)
    table = _table(windows, WindowFormat.FLOAT32, version)
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    assert chunked["window"].num_chunks == 2
    np.testing.assert_array_equal(decode_windows(chunked), windows)
    np.testing.assert_array_equal(decode_windows(chunked.slice(1, 3)), windows[1:4])
    np.testing.assert_array_equal(decode_windows(chunked, [5, 1, 2]), windows[[5, 1, 2]])
    assert decode_windows(table, []).shape == (0, CHANNELS, WINDOW_SAMPLES)


def test_day_tables_of_an_unknown_version_are_refused() -> None:
    for version in (0, corpus.CORPUS_VERSION + 1):
        with pytest.raises(ValueError, match=f"version {version}"):
            _table(_random_windows(2), WindowFormat.FLOAT16, version=version)


def test_decode_refuses_a_window_column_of_neither_layout() -> None:
    unlabelled = pa.table({"window": pa.array([b"\0" * 1800], pa.binary(1800))})
    with pytest.raises(ValueError, match="neither layout"):
        decode_windows(unlabelled)


@pytest.mark.parametrize("window_format", list(WindowFormat))
def test_draw_windows_is_the_same_on_version_1_and_2_copies(
    window_format: WindowFormat, tmp_path: Path
) -> None:
    windows = np.round(_random_windows(60, seed=4) * 256) / 256
    windows[::7] *= 0.01  # a range of std, so that the weighted draw has something to weigh
    for version in VERSIONS:
        corpus.write_day(
            str(tmp_path / f"v{version}"), _table(windows, window_format, version), "r"
        )
    file = corpus.day_file("pa", "2024-01-01")
    for weighted in (True, False):
        item = {"file": file, "row_start": 5, "row_end": 55, "seed": 11}
        v1 = epochs.draw_windows(str(tmp_path / "v1"), item, 30, weighted)
        v2 = epochs.draw_windows(str(tmp_path / "v2"), item, 30, weighted)
        _assert_identical(v1, v2)
        assert v2.shape == (30, CHANNELS, WINDOW_SAMPLES)
        assert v2.dtype == DRAW_DTYPE[window_format]
        worn = decode_windows(_table(windows, window_format), dtype=None)[5:55]
        worn = worn[(np.arange(5, 55) % 5 != 0)]
        assert {w.tobytes() for w in v2} <= {w.tobytes() for w in worn}


def test_window_std_is_std_of_vector_magnitude() -> None:
    constant = np.broadcast_to(np.array([0.6, 0.0, 0.8])[:, None], (3, WINDOW_SAMPLES))
    alternating = np.zeros((3, WINDOW_SAMPLES))
    alternating[1] = np.where(np.arange(WINDOW_SAMPLES) % 2 == 0, 1.0, -3.0)  # |m| = 1, 3
    std = window_std(np.stack([constant, alternating]))
    assert std.dtype == np.float32
    np.testing.assert_allclose(std, [0.0, 1.0], atol=1e-6)


def test_window_std_ignores_orientation() -> None:
    windows = _random_windows(8, seed=1)
    angle = 0.7
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    rotated = np.einsum("dc,ncl->ndl", rotation, windows)
    np.testing.assert_allclose(window_std(rotated), window_std(windows), rtol=1e-5)


def _entry(subject: str, day: str, n_windows: int = 10) -> dict:
    return corpus.manifest_entry(
        subject, day, corpus.day_file(subject, day), n_windows, n_windows, "rec"
    )


def test_add_to_manifest_replaces_a_subject_day(tmp_path: Path) -> None:
    root = str(tmp_path)
    add_to_manifest(root, [_entry("pa", "2024-01-01"), _entry("pa", "2024-01-02")])
    merged = add_to_manifest(root, [_entry("pa", "2024-01-02", 7), _entry("pb", "2024-01-01")])
    manifest = read_manifest(root)
    assert manifest.equals(merged)
    keys = list(zip(manifest["subject"].to_pylist(), manifest["day"].to_pylist(), strict=True))
    assert keys == [("pa", "2024-01-01"), ("pa", "2024-01-02"), ("pb", "2024-01-01")]
    assert manifest["n_windows"].to_pylist() == [10, 7, 10]
    add_to_manifest(root, [_entry("pb", "2024-01-01", 3)])
    assert read_manifest(root)["n_windows"].to_pylist() == [10, 7, 3]


def test_write_manifest_refuses_a_subject_day_twice(tmp_path: Path) -> None:
    table = corpus.manifest_table([_entry("pa", "2024-01-01"), _entry("pa", "2024-01-01", 5)])
    with pytest.raises(ValueError, match="twice"):
        write_manifest(str(tmp_path), table)
    with pytest.raises(FileNotFoundError):
        read_manifest(str(tmp_path))


def test_write_and_read_a_day(tmp_path: Path) -> None:
    windows = np.round(_random_windows(5) * 256) / 256
    times = np.arange(5, dtype=np.int64) * 10_000
    wear = np.array([True, True, False, True, True])
    table = corpus.day_table("pa", "1970-01-01", times, windows, wear)
    entry = corpus.write_day(str(tmp_path), table, "rec")
    assert entry["n_windows"] == 5 and entry["n_wear"] == 4
    read = corpus.read_day(str(tmp_path), entry)
    np.testing.assert_array_equal(decode_windows(read), windows)
    assert not list(tmp_path.rglob(".tmp-*"))
    some = corpus.read_day(str(tmp_path), {**entry, "row_start": 1, "row_end": 3}, columns=["wear"])
    assert some.column_names == ["wear"] and some["wear"].to_pylist() == [True, False]


def test_day_table_rejects_wrong_window_shape() -> None:
    with pytest.raises(ValueError, match="pa/2024-01-01"):
        corpus.day_table(
            "pa", "2024-01-01", np.zeros(2), np.zeros((2, 3, 150), np.float32), np.ones(2)
        )


def test_subject_split_is_stable_and_about_a_fifth_test() -> None:
    ids = [f"p{i:016x}" for i in range(5_000)]
    splits = [subject_split(i) for i in ids]
    assert splits == [subject_split(i) for i in ids]
    assert set(splits) == {"train", "test"}
    assert 0.17 < splits.count("test") / len(ids) < 0.23


def test_pseudonyms_depend_on_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = "study-42/participant-0007"
    monkeypatch.setenv(privacy.KEY_ENV, "first key")
    first = privacy.pseudonymise(raw)
    assert privacy.is_pseudonym(first)
    assert first == privacy.pseudonymise(raw)
    assert raw not in first and "0007" not in first
    assert privacy.pseudonymise(first) == first
    assert privacy.pseudonymise("participant-0008") != first
    monkeypatch.setenv(privacy.KEY_ENV, "second key")
    assert privacy.pseudonymise(raw) != first


def test_read_info_names_a_folder_that_is_not_a_corpus(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        corpus.read_info(tmp_path)


def test_info_round_trip(tmp_path: Path) -> None:
    info = corpus.CorpusInfo(window_format=WindowFormat.INT16_MG.value)
    corpus.write_info(tmp_path, info)
    assert corpus.read_info(tmp_path) == info


def test_new_corpora_are_version_3_with_wall_clock_times_without_a_zone(tmp_path: Path) -> None:
    assert corpus.CORPUS_VERSION == 3
    assert corpus.CorpusInfo().version == corpus.CORPUS_VERSION
    entry = corpus.write_day(str(tmp_path), _table(_random_windows(3)), "rec")
    stored = pq.read_schema(tmp_path / entry["file"]).field("time").type
    assert stored == pa.timestamp("ms") and stored.tz is None
    assert corpus.read_day(str(tmp_path), entry).schema.field("time").type == stored


def _v2_day_file_built_by_hand(root: Path, times_ms: np.ndarray) -> dict:
    """A version-2 corpus of one subject-day, built from that version's definition (not by
    the writer): ``time`` wall-clock values under a UTC label, ``window`` binary float16.
    Returns its manifest entry."""
    n = len(times_ms)
    windows = np.round(_random_windows(n, seed=5) * 256) / 256
    stored = windows.astype("<f2")
    field = pa.field(
        "window",
        pa.binary(CHANNELS * WINDOW_SAMPLES * 2),
        metadata={b"window_format": b"float16"},
    )
    schema = pa.schema(
        [
            ("subject", pa.string()),
            ("day", pa.string()),
            ("time", pa.timestamp("ms", tz="UTC")),
            field,
            ("std", pa.float32()),
            ("wear", pa.bool_()),
        ]
    )
    columns = [
        pa.array(["pv2"] * n),
        pa.array(["2024-03-31"] * n),
        pa.array(times_ms, pa.timestamp("ms", tz="UTC")),
        pa.FixedSizeBinaryArray.from_buffers(field.type, n, [None, pa.py_buffer(stored.tobytes())]),
        pa.array(window_std(windows), pa.float32()),
        pa.array([True] * n),
    ]
    table = pa.Table.from_arrays(columns, schema=schema)
    (root / corpus.DAYS_DIR / "pv2").mkdir(parents=True)
    pq.write_table(table, root / corpus.DAYS_DIR / "pv2" / "2024-03-31.parquet")
    corpus.write_info(root, corpus.CorpusInfo(version=2))
    entry = corpus.manifest_entry("pv2", "2024-03-31", "days/pv2/2024-03-31.parquet", n, n, "r")
    corpus.write_manifest(root, corpus.manifest_table([entry]))
    return entry


def test_a_version_2_corpus_reads_with_the_same_wall_clock_times(tmp_path: Path) -> None:
    """Wall-clock 00:59:50 to 03:00:10 across a daylight-saving night: stored under a UTC
    label by version 2, read back as the same naive wall-clock times."""
    wall_clock = np.array(
        ["2024-03-31T00:59:50", "2024-03-31T02:00:00", "2024-03-31T03:00:10"],
        dtype="datetime64[ms]",
    )
    entry = _v2_day_file_built_by_hand(tmp_path, wall_clock.astype(np.int64))
    assert corpus.read_info(tmp_path).version == 2
    read = corpus.read_day(str(tmp_path), entry)
    assert read.schema.field("time").type == pa.timestamp("ms")
    np.testing.assert_array_equal(read["time"].to_numpy(), wall_clock)
    assert [t.isoformat() for t in read["time"].to_pylist()] == [
        "2024-03-31T00:59:50",
        "2024-03-31T02:00:00",
        "2024-03-31T03:00:10",
    ]
    some = corpus.read_day(str(tmp_path), {**entry, "row_start": 1}, columns=["time"])
    np.testing.assert_array_equal(some["time"].to_numpy(), wall_clock[1:])


def test_windows_added_to_a_version_2_corpus_are_written_as_version_2(tmp_path: Path) -> None:
    """A corpus never mixes versions: new days of a version-2 corpus keep its UTC-labelled
    ``time``, and read back as naive wall-clock times like its old days."""
    _v2_day_file_built_by_hand(tmp_path, np.arange(2, dtype=np.int64) * 10_000)
    info = corpus.info_to_write(tmp_path, corpus.CorpusInfo())
    assert info.version == 2
    windows = _random_windows(2)
    table = _table(windows, WindowFormat(info.window_format), info.version, subject="pnew")
    entry = corpus.write_day(str(tmp_path), table, "rec")
    assert pq.read_schema(tmp_path / entry["file"]).field("time").type == pa.timestamp(
        "ms", tz="UTC"
    )
    read = corpus.read_day(str(tmp_path), entry)
    assert read["time"].cast(pa.int64()).to_pylist() == [0, 10_000]
    assert read.schema.field("time").type == pa.timestamp("ms")


def test_a_corpus_of_a_newer_version_is_refused_naming_its_info_file(tmp_path: Path) -> None:
    info = {**corpus.CorpusInfo().__dict__, "version": corpus.CORPUS_VERSION + 1}
    (tmp_path / corpus.INFO_NAME).write_text(json.dumps(info))
    newer = f"version {corpus.CORPUS_VERSION + 1}"
    with pytest.raises(ValueError, match=newer) as refused:
        corpus.read_info(tmp_path)
    assert str(tmp_path / corpus.INFO_NAME) in str(refused.value)
    with pytest.raises(ValueError, match=newer):
        corpus.info_to_write(tmp_path, corpus.CorpusInfo())


def test_windows_added_to_a_version_1_corpus_keep_its_version(tmp_path: Path) -> None:
    v1 = corpus.CorpusInfo(window_format=WindowFormat.INT16_MG.value, version=1)
    corpus.write_info(tmp_path, v1)
    wanted = corpus.CorpusInfo(window_format=WindowFormat.INT16_MG.value)
    assert corpus.info_to_write(tmp_path, wanted) == v1
    assert corpus.info_to_write(tmp_path / "new", wanted) == wanted
    with pytest.raises(ValueError, match="cannot add windows"):
        corpus.info_to_write(tmp_path, corpus.CorpusInfo())
