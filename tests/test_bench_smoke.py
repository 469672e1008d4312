"""Smoke test of the benchmark harness's measuring functions at a tiny size.

Checks that each returns finite, positive figures and that the correctness gate fails on
a NaN; it asserts nothing about speed.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wearssl.data import corpus

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
common = importlib.import_module("common")
hardware = importlib.import_module("hardware")
model_step = common.load_bench("model_step")
memory = common.load_bench("memory")
formats = common.load_bench("formats")
pipeline = common.load_bench("pipeline")
harness = common.load_bench("run")
CPU = torch.device("cpu")


def _positive(*values: float) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def _quantised_windows(n: int, seed: int) -> np.ndarray:
    """Random windows on the AX3's 1/256 g grid around 1 g of gravity."""
    rng = np.random.default_rng(seed)
    windows = rng.normal(0.0, 0.2, (n, corpus.CHANNELS, corpus.WINDOW_SAMPLES))
    windows[:, 2] += 1.0
    return (np.round(windows * 256) / 256).astype(np.float32)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread: tiny batches gain nothing from more, and on a busy machine spinning
    threads waiting for a core cost more than the work."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> str:
    """Three subjects x one day of 40 windows each, written through the corpus API."""
    root = tmp_path / "tiny"
    entries = []
    for index in range(3):
        windows = _quantised_windows(40, index)
        table = corpus.day_table(
            f"psmoke{index:012d}",
            "2024-01-01",
            np.arange(40, dtype=np.int64) * 10_000,
            windows,
            np.ones(40, bool),
        )
        entries.append(corpus.write_day(str(root), table, "smoke"))
    corpus.write_manifest(root, corpus.manifest_table(entries))
    corpus.write_info(root, corpus.CorpusInfo())
    return str(root)


def test_model_step_variant_reports_positive_finite_rates():
    result = model_step.measure_variant(CPU, model_step.FP32, batch=2, steps=1, warmup=0)
    assert _positive(result["windows_per_s"], result["windows_per_cpu_s"])
    assert result["peak_memory_bytes"] > 0
    assert result["finite_loss"]


def test_channels_last_1d_keeps_values_and_puts_channels_fastest():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    laid_out = model_step.channels_last_1d(x)
    assert torch.equal(laid_out, x)
    assert laid_out.stride() == (15, 1, 3)


def test_feature_check_passes_an_fp32_layout_change():
    (check,) = model_step.feature_check(CPU, [model_step.StepFlags(channels_last=True)], batch=2)
    assert check["ok"]
    assert 0 <= check["relative_error"] <= check["tolerance"]


def test_correctness_gate_fails_on_nan():
    reference = torch.ones(4, 8)
    poisoned = reference.clone()
    poisoned[1, 3] = math.nan
    error = model_step.relative_error(reference, poisoned)
    assert math.isnan(error)
    assert not model_step.check_error("bf16", error, model_step.TOLERANCE_BF16)["ok"]
    assert model_step.check_error("bf16", model_step.relative_error(reference, reference), 0.0)[
        "ok"
    ]
    result = {
        "model_step": {
            "checks": [model_step.check_error("bf16", error, model_step.TOLERANCE_BF16)],
            "variants": {"fp32": {"finite_loss": True}},
        }
    }
    assert harness.failures(result) == [
        "features bf16 vs fp32: relative error nan (tolerance 0.05)"
    ]


def test_matmul_peak_and_mfu():
    peak = model_step.matmul_peak(CPU, size=64, repeats=2)
    assert _positive(peak["flop_per_s"], peak["flop_per_cpu_s"])
    assert hardware.mfu(1000.0, 1000.0 * hardware.FLOP_PER_WINDOW) == pytest.approx(1.0)


def test_transforms_measure_at_tiny_size():
    transforms = common.load_bench("transforms")
    result = transforms.measure(8, 300, "cpu", repeats=1, loop_windows=4)
    assert _positive(result["vectorised_windows_per_s"], result["loop_windows_per_s"])


def test_planning_time_covers_every_training_subject():
    result = memory.planning_time(subjects=200, days=2)
    manifest = memory.synthetic_manifest(200, 2)
    train = {
        s
        for s, split in zip(
            manifest["subject"].to_pylist(), manifest["split"].to_pylist(), strict=True
        )
        if split == "train"
    }
    assert result["manifest_rows"] == 400
    assert result["planned_subject_days"] == len(train)
    assert _positive(result["wall_s"], result["cpu_s"])


def test_format_measurement_on_a_tiny_day(tmp_path: Path):
    windows = _quantised_windows(30, seed=0)
    source = {
        "subject": "psmoke000000000000",
        "day": "2024-01-01",
        "times_ms": np.arange(30, dtype=np.int64) * 10_000,
        "windows": windows,
        "wear": np.ones(30, bool),
    }
    rows = [formats.measure_format(source, f, tmp_path, repeats=1) for f in corpus.WindowFormat]
    for row in rows:
        assert _positive(
            row["bytes_per_window"],
            row["decode_windows_per_cpu_s"],
            row["draw_windows_per_cpu_s"],
            row["read_gb_per_s_at_target"],
        )
    by_format = {row["format"]: row for row in rows}
    assert by_format["float16"]["max_error_mg"] == 0.0  # 1/256 g steps are exact in float16
    assert by_format["int16_mg"]["max_error_mg"] <= 0.5 + 1e-3
    assert formats.recommend(rows)["format"] in by_format


def test_draw_rate_and_replicated_corpus(tiny_corpus: str, tmp_path: Path):
    result = pipeline.draw_rate(tiny_corpus, draws=2, windows_per_subject=10)
    assert result["windows"] == 20
    assert _positive(result["windows_per_s"], result["windows_per_cpu_s"])
    replicated = common.replicated_corpus(tiny_corpus, tmp_path / "replicated", copies=3)
    manifest = corpus.read_manifest(replicated)
    assert manifest.num_rows == 9
    assert len(set(manifest["subject"].to_pylist())) == 9
    assert all((Path(replicated) / f).is_file() for f in manifest["file"].to_pylist())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(hardware.DeviceUnavailable, match="torch.cuda.is_available"):
        hardware.require_device("cuda")


def test_read_task_cpu_time_is_parsed_from_ray_data_stats():
    stats = (
        "Operator 0 FromItems: 1 tasks executed, 4 blocks produced in 0.24s\n"
        "* Remote cpu time: 1.89ms min, 74.42ms max, 20.07ms mean, 80.28ms total\n\n"
        "Operator 1 MapBatches(_draw_batch): 4 tasks executed, 4 blocks produced in 5.0s\n"
        "* Remote wall time: 348.14ms min, 1.36s max, 833.09ms mean, 3.33s total\n"
        "* Remote cpu time: 84.16ms min, 372.67ms max, 183.24ms mean, 1.5s total\n"
    )
    assert pipeline.read_task_cpu_seconds(stats) == pytest.approx(1.5)
    assert pipeline.read_task_cpu_seconds("no operators here") is None


def test_ssl_check_compares_pretrained_and_random_features(tmp_path: Path):
    """The linear-probe check end to end on a tiny set: both rows, their difference."""
    import json
    import subprocess

    from wearssl.data.labelled_set import write_labelled_set
    from wearssl.data.synthetic import synthetic_labelled_set
    from wearssl.models.harnet import harnet, save_checkpoint

    labelled = synthetic_labelled_set(4, seed=0, window_seconds=10, minutes_per_activity=0.2)
    write_labelled_set(str(tmp_path / "set"), labelled)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "model.pt", harnet(10), window_seconds=10)
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "ssl_check.py"),
            "--set",
            str(tmp_path / "set"),
            "--pretrained",
            str(tmp_path / "model.pt"),
            "--out",
            str(tmp_path / "out"),
            "--max-folds",
            "1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "ssl_check.json").read_text())
    assert result["folds"] == 1
    for features in ("pretrained", "random"):
        assert 0.0 <= result[features]["f1_mean"] <= 1.0
    assert result["difference_f1"] == pytest.approx(
        result["pretrained"]["f1_mean"] - result["random"]["f1_mean"]
    )
    assert "difference in macro F1" in done.stdout
