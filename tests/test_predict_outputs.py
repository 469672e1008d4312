"""Prediction's tables from per-window labels and ENMO: minutes, hours, days, adjusted
figures, bouts, wear facts and the near-chance check of a model's validation scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wearssl.data.preprocess import NS_PER_SECOND
from wearssl.predict.bouts import bouts_table
from wearssl.predict.info import chance_check, wear_info
from wearssl.predict.outputs import (
    NON_WEAR,
    NS_PER_HOUR,
    NS_PER_MINUTE,
    activity_minutes,
    enmo_mg,
    minutely_table,
)
from wearssl.predict.summary import adjusted_figures, covers_24h, daily_summary, daily_table

DAY0_NS = int(np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64))
NAMES = ["sit", "walk"]


def windows_from(first_ns: int, count: int, window_seconds: int) -> np.ndarray:
    return first_ns + np.arange(count, dtype=np.int64) * window_seconds * NS_PER_SECOND


def test_enmo_is_the_mean_excess_over_1g_in_milli_g_and_nan_when_not_worn() -> None:
    windows = np.zeros((4, 3, 10), np.float32)
    windows[0, 2] = 1.0  # still, upright: 0 mg
    windows[1, 0] = 1.5  # 1.5 g throughout: 500 mg
    windows[2, 1, :5], windows[2, 1, 5:] = 2.0, 0.5  # 1000 mg half the time, 0 (not -500)
    windows[3, 2] = 3.0
    enmo = enmo_mg(windows, np.array([True, True, True, False]))
    np.testing.assert_allclose(enmo[:3], [0.0, 500.0, 500.0], atol=1e-3)
    assert math.isnan(enmo[3])


def test_a_minutes_label_is_its_most_frequent_worn_label() -> None:
    starts = windows_from(DAY0_NS, 18, 10)  # three minutes of 10-s windows
    labels = np.array(
        [0, 1, 1, NON_WEAR, NON_WEAR, 1] + [0, 0, 1, 1, NON_WEAR, NON_WEAR] + [-1] * 6
    )
    enmo = np.where(labels == NON_WEAR, np.nan, np.arange(18.0))
    minutes = activity_minutes(starts, labels, enmo, NAMES, 10, NS_PER_MINUTE)
    table = minutely_table(minutes, NAMES)
    assert list(table.columns) == ["time", "label", "enmo_mg", "wear_fraction"]
    assert table["time"].dt.strftime("%H:%M").tolist() == ["00:00", "00:01", "00:02"]
    assert table["label"].tolist() == ["walk", "sit", ""]  # a tie goes to the first class
    np.testing.assert_allclose(table["wear_fraction"], [4 / 6, 4 / 6, 0.0])
    np.testing.assert_allclose(table["enmo_mg"][:2], [np.mean([0, 1, 2, 5]), np.mean([6, 7, 8, 9])])
    assert math.isnan(table["enmo_mg"][2])


def test_hours_hold_the_minutes_of_each_activity_and_the_worn_enmo() -> None:
    starts = windows_from(DAY0_NS + 30 * NS_PER_MINUTE, 90, 60)  # 00:30 to 02:00
    labels = np.array([0] * 30 + [1] * 20 + [NON_WEAR] * 10 + [0] * 30)
    enmo = np.where(labels == NON_WEAR, np.nan, 10.0 + 90.0 * labels)
    hourly = activity_minutes(starts, labels, enmo, NAMES, 60, NS_PER_HOUR)
    assert list(hourly.columns) == [
        "time",
        "sit_minutes",
        "walk_minutes",
        "wear_minutes",
        "enmo_mg",
    ]
    assert hourly["time"].dt.strftime("%H:%M").tolist() == ["00:00", "01:00"]
    assert hourly["sit_minutes"].tolist() == [30, 30]
    assert hourly["walk_minutes"].tolist() == [0, 20]
    assert hourly["wear_minutes"].tolist() == [30, 50]
    np.testing.assert_allclose(hourly["enmo_mg"], [10.0, (30 * 10 + 20 * 100) / 50])


def two_days(second_day_worn_until_hour: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two days of 1-minute windows: day 1 sit until noon then walk, all worn; day 2 sit
    until ``second_day_worn_until_hour``, then not worn. ENMO: 10 mg sitting on day 1,
    20 mg on day 2, 100 mg walking."""
    starts = windows_from(DAY0_NS, 2 * 1440, 60)
    labels = np.array([0] * 720 + [1] * 720 + [0] * 1440)
    labels[1440 + second_day_worn_until_hour * 60 :] = NON_WEAR
    enmo = np.where(labels == 1, 100.0, 10.0)
    enmo[1440:] = 20.0
    return starts, labels, np.where(labels == NON_WEAR, np.nan, enmo)


def test_adjusted_figures_fill_non_wear_from_the_same_minutes_of_other_days() -> None:
    starts, labels, enmo = two_days(second_day_worn_until_hour=12)
    minutes = activity_minutes(starts, labels, enmo, NAMES, 60, NS_PER_MINUTE)
    daily, overall = daily_table(daily_summary(starts, labels, enmo, NAMES, 60), minutes, NAMES)
    assert daily["sit_minutes"].tolist() == [720, 720]
    assert daily["walk_minutes"].tolist() == [720, 0]  # as worn: day 2's afternoon unknown
    assert daily["sit_minutes_adjusted"].tolist() == [720, 720]
    assert daily["walk_minutes_adjusted"].tolist() == [720, 720]  # from day 1's afternoon
    np.testing.assert_allclose(daily["enmo_mg"], [55.0, 20.0])
    np.testing.assert_allclose(daily["enmo_mg_adjusted"], [55.0, (720 * 20 + 720 * 100) / 1440])
    assert overall["sit_minutes_adjusted"] == overall["walk_minutes_adjusted"] == 720
    # the morning's profile is the mean of both days (10 and 20 mg), the afternoon day 1's
    assert overall["enmo_mg_adjusted"] == pytest.approx((720 * 15 + 720 * 100) / 1440)
    assert list(daily.columns[-2:]) == ["partial_day", "poor_wear"]


def test_a_minute_no_day_wore_leaves_the_adjusted_figures_undefined() -> None:
    starts, labels, enmo = two_days(second_day_worn_until_hour=24)
    labels[[180, 1440 + 180]] = NON_WEAR  # 03:00 on both days
    enmo[labels == NON_WEAR] = np.nan
    minutes = activity_minutes(starts, labels, enmo, NAMES, 60, NS_PER_MINUTE)
    daily, overall = adjusted_figures(minutes, NAMES)
    assert daily["sit_minutes_adjusted"].isna().all()
    assert all(math.isnan(value) for value in overall.values())


def test_a_partial_day_is_completed_to_a_whole_adjusted_day() -> None:
    starts, labels, enmo = two_days(second_day_worn_until_hour=24)
    starts, labels, enmo = starts[360:], labels[360:], enmo[360:]  # day 1 from 06:00
    minutes = activity_minutes(starts, labels, enmo, NAMES, 60, NS_PER_MINUTE)
    daily, _ = adjusted_figures(minutes, NAMES)
    # 00:00-06:00 of day 1 comes from day 2, which sat then
    assert daily["sit_minutes_adjusted"].tolist() == [720, 1440]
    total = daily["sit_minutes_adjusted"] + daily["walk_minutes_adjusted"]
    assert total.tolist() == [1440, 1440]


def test_bouts_are_runs_of_one_worn_label_broken_by_non_wear() -> None:
    starts = windows_from(DAY0_NS, 7, 60)
    labels = np.array([0, 0, 1, NON_WEAR, 1, 1, 0])
    enmo = np.array([1.0, 3.0, 50.0, np.nan, 60.0, 80.0, 2.0])
    bouts = bouts_table(starts, labels, enmo, NAMES, 60)
    assert list(bouts.columns) == ["start", "end", "duration_minutes", "label", "enmo_mg"]
    assert bouts["label"].tolist() == ["sit", "walk", "walk", "sit"]
    assert bouts["duration_minutes"].tolist() == [2, 1, 2, 1]
    assert bouts["start"].dt.strftime("%H:%M").tolist() == ["00:00", "00:02", "00:04", "00:06"]
    assert bouts["end"].dt.strftime("%H:%M").tolist() == ["00:02", "00:03", "00:06", "00:07"]
    assert bouts["enmo_mg"].tolist() == [2.0, 50.0, 70.0, 2.0]


def test_wear_facts_count_non_wear_episodes_and_hours_of_the_day() -> None:
    starts = windows_from(DAY0_NS + 6 * NS_PER_HOUR, 24 * 60, 60)  # 06:00 to 06:00
    labels = np.zeros(len(starts), np.int64)
    labels[60:120] = labels[600:630] = NON_WEAR
    hourly = activity_minutes(starts, labels, labels * 1.0, NAMES, 60, NS_PER_HOUR)
    info = wear_info(starts, labels, 60, covers_24h(hourly))
    assert info["NonwearEpisodes"]["Count"] == 2
    assert info["NonwearEpisodes"]["List"][0] == {
        "start": "2024-01-01T07:00:00",
        "end": "2024-01-01T08:00:00",
    }
    assert info["NonwearTime(days)"] == pytest.approx(90 / 1440)
    assert info["WearTime(days)"] == pytest.approx(1 - 90 / 1440)
    assert info["Covers24hOK"] is False  # 07:00-08:00 was never worn
    labels[60:120] = 0
    hourly = activity_minutes(starts, labels, labels * 1.0, NAMES, 60, NS_PER_HOUR)
    assert covers_24h(hourly) is True


@pytest.mark.parametrize(
    ("scores", "near"),
    [
        ({"f1_mean": 0.22, "val_loss": 1.55}, True),  # 5 classes: chance 0.2 and ln 5 = 1.61
        ({"f1_mean": 0.75, "val_loss": 0.6}, False),
        ({"f1_mean": 0.72, "val_loss": 1.58}, True),  # either score near chance warns
        ({}, None),
    ],
)
def test_a_models_validation_scores_are_judged_against_chance(scores: dict, near) -> None:
    check = chance_check({"labels": list("abcde"), **scores}, 5)
    assert check.near_chance is near
    assert check.scores == scores
    assert check.chance["f1_mean"] == pytest.approx(0.2)
    assert check.chance["val_loss"] == pytest.approx(math.log(5))
    if near is None:
        assert "no validation scores" in check.message
    elif near:
        assert "near chance" in check.message
