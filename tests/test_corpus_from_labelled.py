"""Labelled windows as unlabelled pre-training data: test subjects left out, overlaps
thinned, and a corpus the sampler and the GPU check both read."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from wearssl.data import corpus
from wearssl.data.corpus_from_labelled import add_labelled_windows, non_overlapping
from wearssl.data.labelled_set import LabelledSet

BENCH = Path(__file__).resolve().parents[1] / "bench"


def subjects_in_both_splits(n: int) -> list[str]:
    """``n`` pseudonym-like ids, at least one of them a held-out (test) subject."""
    ids = [f"p{i:016x}" for i in range(200)]
    test = [s for s in ids if corpus.subject_split(s) == "test"][:1]
    train = [s for s in ids if corpus.subject_split(s) == "train"][: n - 1]
    return test + train


def overlapping_set(subjects: list[str], per_subject: int = 12) -> LabelledSet:
    """10-s windows every 5 s (half overlapping), as a benchmark recipe cuts them."""
    rng = np.random.default_rng(0)
    n = len(subjects) * per_subject
    windows = (0.2 * rng.normal(size=(n, 3, 300))).astype(np.float32)
    windows[:, 2] += 1.0
    return LabelledSet(
        name="bench",
        window_seconds=10,
        label_names=["a", "b"],
        windows=windows,
        labels=np.arange(n, dtype=np.int64) % 2,
        subjects=np.repeat(np.array(subjects, dtype=object), per_subject),
        times_ms=np.tile(np.arange(per_subject, dtype=np.int64) * 5_000, len(subjects)),
    )


def test_non_overlapping_keeps_every_other_half_overlapping_window():
    starts = np.array([15_000, 0, 5_000, 10_000, 20_000, 31_000], dtype=np.int64)
    kept = non_overlapping(starts, 10_000)
    assert starts[kept].tolist() == [0, 10_000, 20_000, 31_000]


def test_excluded_subjects_never_reach_the_corpus(tmp_path):
    subjects = subjects_in_both_splits(5)
    root = str(tmp_path / "corpus")
    added = add_labelled_windows(root, overlapping_set(subjects), exclude=subjects[:2])
    manifest = corpus.read_manifest(root)
    assert set(manifest["subject"].to_pylist()) == set(subjects[2:]) == set(added)
    assert all(n == 6 for n in added.values())  # 12 half-overlapping windows -> 6
    assert manifest["n_wear"].to_pylist() == manifest["n_windows"].to_pylist()


def test_the_gpu_check_runs_on_a_cpu_at_a_small_size(tmp_path):
    sys.path.insert(0, str(BENCH))
    import gpu

    root = tmp_path / "corpus"
    add_labelled_windows(str(root), overlapping_set(subjects_in_both_splits(4)))
    data = gpu.RealWindows.load(root)
    assert len(data.test) == 1 and len(data.train) == 3
    size = gpu.SIZES["small"]
    e2e = gpu.measure_end_to_end(data, size, gpu.torch.device("cpu"))
    assert e2e["finite_loss"] and e2e["windows_per_s"] > 0
    run = gpu.pretrain(data, size, gpu.torch.device("cpu"), 0.0, tmp_path)
    assert run["epochs"] == 1 and np.isfinite(run["best"]["val/loss"])
    parts = sorted(tmp_path.glob("harnet10.pt.part*"))
    assert parts and all(p.stat().st_size <= gpu.PART_BYTES for p in parts)
    whole = tmp_path / "whole.pt"
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    from wearssl.models.harnet import harnet

    assert harnet(10, pretrained=whole) is not None


@pytest.mark.parametrize("part_bytes", [7, 1 << 20])
def test_parts_put_back_together_are_the_file(tmp_path, part_bytes):
    sys.path.insert(0, str(BENCH))
    import gpu

    original = np.random.default_rng(1).bytes(100)
    path = tmp_path / "model.pt"
    path.write_bytes(original)
    names = gpu.split_into_parts(path, part_bytes)
    assert not path.exists()
    assert b"".join((tmp_path / n).read_bytes() for n in names) == original
