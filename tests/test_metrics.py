"""Per-subject scores, their summary per arm and the results table, checked on cases
worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from wearssl.downstream.metrics import per_subject_scores, results_markdown, summarise


def test_per_subject_scores_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 1, 1])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 0, 1, 1])
    subjects = np.array(["a", "a", "a", "a", "b", "b", "b", "c", "c"])
    scores = per_subject_scores(y_true, y_pred, subjects, labels=[0, 1, 2])
    assert list(scores.columns) == ["subject", "n_windows", "f1_macro", "kappa", "accuracy"]
    assert list(scores["subject"]) == ["a", "b", "c"]
    assert list(scores["n_windows"]) == [4, 3, 2]
    # macro F1 over the classes in each subject's truth or predictions:
    # a: class 0 = 2/3, class 1 = 0.8 (class 2 absent, not averaged); kappa (0.75 - 0.5) / 0.5
    # b: class 2 = 0.8, predicted-only class 0 = 0; observed 2/3 = expected 2/3, so kappa 0
    # c: one class, all right: F1 1, kappa undefined
    np.testing.assert_allclose(scores["f1_macro"], [(2 / 3 + 0.8) / 2, 0.8 / 2, 1.0])
    np.testing.assert_allclose(scores["kappa"][:2], [0.5, 0.0], atol=1e-12)
    assert math.isnan(scores["kappa"][2])
    np.testing.assert_allclose(scores["accuracy"], [0.75, 2 / 3, 1.0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0, 1], [0], ["a", "a"], [0, 1]), "differ in length"),
        (([0, 1], [0, 1], ["a", "a"], []), "at least one class"),
        (([0, 3], [0, 1], ["a", "a"], [0, 1]), r"\[3\]"),
        (([[0, 1]], [[0, 1]], [["a", "a"]], [0, 1]), "1-D"),
    ],
)
def test_per_subject_scores_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        per_subject_scores(*(np.asarray(a) for a in args[:3]), labels=args[3])


def score_rows(dataset: str, arm: str, f1: list[float], **extra) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "arm": arm,
            "fold": f"split-{i}",
            "seed": 0,
            "subject": f"s{i}",
            "f1_macro": value,
            "kappa": value - 0.1,
            "accuracy": value + 0.1,
            **extra,
        }
        for i, value in enumerate(f1)
    ]


@pytest.fixture
def hand_scores() -> pd.DataFrame:
    rows = (
        score_rows("rowlands", "finetune", [0.8])
        + score_rows("rowlands", "forest", [0.6, 0.8])
        + score_rows("rowlands", "scratch", [0.4, 0.6])
        + score_rows("adl", "scratch", [0.5, 0.5, 0.5])
        + score_rows("adl", "frozen", [0.4, 0.8, 0.6])
    )
    return pd.DataFrame(rows)


def test_summarise_by_hand(hand_scores):
    summary = summarise(hand_scores).set_index(["dataset", "arm"])
    assert len(summary) == 5
    rowlands_forest = summary.loc[("rowlands", "forest")]
    assert rowlands_forest["n_subjects"] == 2
    assert rowlands_forest["f1_mean"] == pytest.approx(0.7)
    assert rowlands_forest["f1_sd"] == pytest.approx(math.sqrt(0.02))
    assert rowlands_forest["kappa_mean"] == pytest.approx(0.6)
    assert rowlands_forest["accuracy_mean"] == pytest.approx(0.8)
    finetune = summary.loc[("rowlands", "finetune")]
    assert finetune["f1_sd"] == 0.0 and finetune["kappa_sd"] == 0.0
    assert finetune["f1_rel_vs_scratch"] == pytest.approx(60.0)
    assert finetune["f1_rel_vs_forest"] == pytest.approx(100 * 0.1 / 0.7)
    assert summary.loc[("rowlands", "scratch"), "f1_rel_vs_scratch"] == pytest.approx(0.0)
    assert summary.loc[("rowlands", "forest"), "f1_rel_vs_scratch"] == pytest.approx(40.0)
    frozen = summary.loc[("adl", "frozen")]
    assert frozen["f1_mean"] == pytest.approx(0.6)
    assert frozen["f1_sd"] == pytest.approx(0.2)
    assert frozen["f1_rel_vs_scratch"] == pytest.approx(20.0)
    assert math.isnan(frozen["f1_rel_vs_forest"])


def test_summarise_orders_arms_as_the_paper(hand_scores):
    summary = summarise(hand_scores.sample(frac=1, random_state=0))
    assert list(zip(summary["dataset"], summary["arm"], strict=True)) == [
        ("adl", "scratch"),
        ("adl", "frozen"),
        ("rowlands", "forest"),
        ("rowlands", "scratch"),
        ("rowlands", "finetune"),
    ]


def test_summarise_skips_undefined_kappa():
    scores = pd.DataFrame(score_rows("d", "scratch", [0.5, 0.7, 0.9]))
    scores.loc[1, "kappa"] = np.nan
    row = summarise(scores).iloc[0]
    assert row["kappa_mean"] == pytest.approx(0.6)
    assert row["f1_mean"] == pytest.approx(0.7)


def test_summarise_counts_subjects_once_and_scores_per_trial():
    scores = pd.DataFrame(
        score_rows("d", "scratch", [0.5, 0.7]) + score_rows("d", "scratch", [0.9, 0.3], seed=1)
    )
    row = summarise(scores).iloc[0]
    assert row["n_subjects"] == 2
    assert row["n_scores"] == 4
    assert row["f1_mean"] == pytest.approx(0.6)


def test_summarise_compares_within_a_seed_selection():
    rows = (
        score_rows("d", "forest", [0.5], selection="all")
        + score_rows("d", "scratch", [0.4], selection="all")
        + score_rows("d", "scratch", [0.5], selection="best")
        + score_rows("d", "finetune", [0.6], selection="all")
        + score_rows("d", "finetune", [0.75], selection="best")
    )
    summary = summarise(pd.DataFrame(rows)).set_index(["arm", "selection"])
    assert summary.loc[("finetune", "best"), "f1_rel_vs_scratch"] == pytest.approx(50.0)
    assert summary.loc[("finetune", "all"), "f1_rel_vs_scratch"] == pytest.approx(50.0)
    assert summary.loc[("finetune", "best"), "f1_rel_vs_forest"] == pytest.approx(50.0)
    assert summary.loc[("finetune", "all"), "f1_rel_vs_forest"] == pytest.approx(20.0)


def test_summarise_bad_input():
    scores = pd.DataFrame(score_rows("d", "scratch", [0.5]))
    with pytest.raises(ValueError, match="kappa"):
        summarise(scores.drop(columns="kappa"))
    with pytest.raises(ValueError, match="tree"):
        summarise(scores.assign(arm="tree"))


def test_results_markdown_holds_every_arm_and_dataset(hand_scores):
    text = results_markdown(summarise(hand_scores))
    for name in ("rowlands", "adl", "forest", "scratch", "frozen", "finetune"):
        assert name in text
    assert "transfer" not in text
    assert "0.700 ± 0.141" in text  # rowlands forest F1
    assert "0.600 ± 0.141" in text  # rowlands forest kappa
    assert "+60.0" in text and "+14.3" in text and "+20.0" in text
    f1_table = text.split("###")[1]
    header = next(line for line in f1_table.splitlines() if line.startswith("| dataset"))
    assert header == "| dataset | forest | scratch | frozen | finetune |"
    adl_row = next(line for line in f1_table.splitlines() if line.startswith("| adl"))
    assert adl_row.count("—") == 2  # no forest, no finetune on adl
    assert text.count("###") == 4


def test_results_markdown_labels_the_seed_selection():
    rows = score_rows("d", "scratch", [0.5], selection="all") + score_rows(
        "d", "scratch", [0.6], selection="best"
    )
    text = results_markdown(summarise(pd.DataFrame(rows)))
    assert "| d (all seeds) |" in text and "| d (best seeds) |" in text
