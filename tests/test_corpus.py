"""The corpus format: window encodings, window std, manifest merging, splits, pseudonyms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from wearssl import corpus, privacy
from wearssl.corpus import (
    CHANNELS,
    WINDOW_SAMPLES,
    WindowFormat,
    add_to_manifest,
    decode_windows,
    encode_windows,
    read_manifest,
    subject_split,
    window_std,
    write_manifest,
)

RANGE_G = 8.0


def _random_windows(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-RANGE_G, RANGE_G, (n, CHANNELS, WINDOW_SAMPLES)).astype(np.float32)


def test_float32_round_trip_is_exact() -> None:
    windows = _random_windows()
    decoded = decode_windows(encode_windows(windows, WindowFormat.FLOAT32))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, windows)


def test_float16_round_trip_keeps_half_precision() -> None:
    """float16 keeps 11 significant bits: within 1e-3 g below 2 g, 4 mg at 8 g, and exact
    on the AX3's 1/256 g grid across its +-8 g range."""
    windows = _random_windows()
    decoded = decode_windows(encode_windows(windows, WindowFormat.FLOAT16))
    error = np.abs(decoded - windows)
    assert np.all(error <= np.abs(windows) * 2.0**-11 + 1e-7)
    assert np.all(error[np.abs(windows) < 2.0] <= 1e-3)
    ax3 = np.round(windows * 256) / 256
    np.testing.assert_array_equal(decode_windows(encode_windows(ax3, WindowFormat.FLOAT16)), ax3)


def test_int16_milli_g_round_trip_within_half_a_milli_g() -> None:
    windows = _random_windows()
    decoded = decode_windows(encode_windows(windows, WindowFormat.INT16_MG))
    assert decoded.dtype == np.float32
    assert np.max(np.abs(decoded - windows)) <= 0.5e-3 + 1e-6


def test_decode_accepts_chunked_columns_and_other_lengths() -> None:
    windows = _random_windows(6)[:, :, :150]
    column = encode_windows(windows, WindowFormat.FLOAT32)
    chunked = pa.chunked_array([column.slice(0, 2), column.slice(2)])
    np.testing.assert_array_equal(decode_windows(chunked, length=150), windows)


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
    np.testing.assert_array_equal(decode_windows(read["window"]), windows)
    assert not list(tmp_path.rglob(".tmp-*"))


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
