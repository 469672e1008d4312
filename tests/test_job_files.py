"""What the evaluation and ablation jobs write and log: atomic files, execution markers,
which values count as metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from wearssl.infra.files import add_marker, count_markers, storage_location, write_json
from wearssl.infra.mlflow_runs import finite


@pytest.mark.parametrize(
    ("value", "logged"),
    [(0, True), (0.5, True), (-3, True), (True, False), (False, False), (math.nan, False),
     (math.inf, False), ("0.5", False), (None, False)],
)  # fmt: skip
def test_only_finite_numbers_are_metrics_and_a_bool_is_not_one(value, logged):
    assert finite(value) is logged


def test_json_is_written_whole_and_nothing_partial_is_left(tmp_path: Path):
    path = tmp_path / "trial" / "record.json"
    write_json(path, {"f1_mean": 0.5})
    write_json(path, {"f1_mean": 0.75})
    assert json.loads(path.read_text()) == {"f1_mean": 0.75}
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_markers_count_every_execution(tmp_path: Path):
    folder = tmp_path / "executions"
    assert count_markers(folder) == 0
    assert [add_marker(folder, "a/seed0") for _ in range(3)] == [1, 2, 3]
    assert count_markers(folder) == 3


def test_storage_locations_keep_uris_and_make_paths_absolute(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage_location("s3://bucket/runs") == "s3://bucket/runs"
    assert storage_location("runs") == str(tmp_path / "runs")
