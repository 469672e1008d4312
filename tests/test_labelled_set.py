"""Labelled sets on disk: the subject order, the batch size, and folds that follow them."""

from __future__ import annotations

import hmac

import numpy as np

from wearssl.data.labelled_set import LabelledSet, read_labelled_set, write_labelled_set
from wearssl.data.splits import protocol_folds


def labelled_set(
    pseudonyms: dict[str, str], order: list[str], batch_size: int | None
) -> LabelledSet:
    """Two windows per source subject, rows deliberately NOT in the source order."""
    raw = [s for s in reversed(order) for _ in range(2)]
    n = len(raw)
    return LabelledSet(
        name="set",
        window_seconds=10,
        label_names=["a", "b"],
        windows=np.random.default_rng(0).normal(size=(n, 3, 300)).astype(np.float32),
        labels=np.arange(n, dtype=np.int64) % 2,
        subjects=np.array([pseudonyms[s] for s in raw], dtype=object),
        times_ms=np.arange(n, dtype=np.int64) * 10_000,
        batch_size=batch_size,
        subject_order=[pseudonyms[s] for s in order],
    )


def keyed(key: str, order: list[str]) -> dict[str, str]:
    return {s: "p" + hmac.new(key.encode(), s.encode(), "sha256").hexdigest()[:16] for s in order}


def test_rows_follow_the_subject_order_and_folds_do_not_depend_on_the_key(tmp_path):
    order = [f"s{i}" for i in range(7)]
    folds = []
    for key in ("lab-a", "lab-b"):
        pseudonyms = keyed(key, order)
        write_labelled_set(str(tmp_path / key), labelled_set(pseudonyms, order, None))
        back = read_labelled_set(str(tmp_path / key))
        first_rows = list(dict.fromkeys(back.subjects.tolist()))
        assert first_rows == [pseudonyms[s] for s in order]
        folds.append(
            [
                (f.train.tolist(), f.val.tolist(), f.test.tolist())
                for f in protocol_folds(back.subjects)
            ]
        )
    assert folds[0] == folds[1]


def test_batch_size_is_kept_and_optional(tmp_path):
    order = ["x", "y", "z"]
    pseudonyms = keyed("k", order)
    write_labelled_set(str(tmp_path / "with"), labelled_set(pseudonyms, order, 50))
    write_labelled_set(str(tmp_path / "without"), labelled_set(pseudonyms, order, None))
    assert read_labelled_set(str(tmp_path / "with")).batch_size == 50
    assert read_labelled_set(str(tmp_path / "without")).batch_size is None
