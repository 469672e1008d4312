"""Std-weighted sampling of windows without replacement."""

from __future__ import annotations

import numpy as np
import pytest

from wearssl.data.weighted_sampling import sample_window_indices

REPEATS = 20_000


def _single_draw_frequencies(std: np.ndarray, weighted: bool = True) -> np.ndarray:
    rng = np.random.default_rng(0)
    counts = np.zeros(len(std))
    for _ in range(REPEATS):
        counts[sample_window_indices(std, 1, rng, weighted=weighted)] += 1
    return counts / REPEATS


def _within_binomial_error(observed: np.ndarray, expected: np.ndarray) -> bool:
    standard_error = np.sqrt(expected * (1 - expected) / REPEATS)
    return bool(np.all(np.abs(observed - expected) <= 5 * standard_error + 1e-12))


def test_single_draws_follow_std() -> None:
    std = np.array([0.01, 0.05, 0.2, 0.4, 0.8])
    frequencies = _single_draw_frequencies(std)
    assert _within_binomial_error(frequencies, std / std.sum())
    assert frequencies[4] / frequencies[0] > 40  # std ratio 80


def test_uniform_option_ignores_std() -> None:
    std = np.array([0.01, 0.05, 0.2, 0.4, 0.8])
    frequencies = _single_draw_frequencies(std, weighted=False)
    assert _within_binomial_error(frequencies, np.full(5, 0.2))


def test_zero_std_windows_are_drawn_only_when_positive_ones_run_out() -> None:
    std = np.array([0.0, 0.3, 0.0, 0.1, 0.2, 0.0])
    rng = np.random.default_rng(1)
    for _ in range(2_000):
        assert set(sample_window_indices(std, 3, rng)) == {1, 3, 4}
    drawn = sample_window_indices(std, 4, rng)
    assert set(drawn[:3]) == {1, 3, 4} and std[drawn[3]] == 0.0


def test_no_window_is_drawn_twice() -> None:
    rng = np.random.default_rng(2)
    std = rng.gamma(0.5, 0.05, size=500)
    for k in (1, 100, 250, 499):
        drawn = sample_window_indices(std, k, rng)
        assert len(drawn) == k == len(np.unique(drawn))


def test_eligible_excludes_windows() -> None:
    rng = np.random.default_rng(3)
    std = rng.uniform(0.0, 1.0, size=200)
    eligible = rng.random(200) < 0.5
    std[~eligible] = 10.0  # would dominate if they were not excluded
    for _ in range(200):
        assert np.all(eligible[sample_window_indices(std, 20, rng, eligible=eligible)])


def test_k_beyond_the_eligible_returns_all_of_them() -> None:
    std = np.array([0.2, 0.0, 0.5, 0.1, 0.3])
    eligible = np.array([True, True, False, True, False])
    drawn = sample_window_indices(std, 10, np.random.default_rng(4), eligible=eligible)
    assert sorted(drawn) == [0, 1, 3]
    assert len(sample_window_indices(std, 0, np.random.default_rng(4))) == 0


def test_same_rng_state_gives_the_same_draw() -> None:
    std = np.random.default_rng(5).uniform(size=1_000)
    first = sample_window_indices(std, 300, np.random.default_rng(6))
    second = sample_window_indices(std, 300, np.random.default_rng(6))
    np.testing.assert_array_equal(first, second)


def test_high_std_windows_dominate_a_large_draw() -> None:
    """Drawing 1,500 of 8,640 windows of a day that is mostly still picks mostly active ones."""
    rng = np.random.default_rng(7)
    std = np.where(rng.random(8_640) < 0.7, 0.005, 0.3)
    drawn = sample_window_indices(std, 1_500, rng)
    assert np.mean(std[drawn] == 0.3) > 0.9
    uniform = sample_window_indices(std, 1_500, rng, weighted=False)
    assert np.mean(std[uniform] == 0.3) < 0.4


@pytest.mark.parametrize(
    ("std", "k"),
    [
        (np.array([0.1, -0.2, 0.3]), 1),
        (np.array([0.1, np.nan, 0.3]), 1),
        (np.array([0.1, np.inf, 0.3]), 1),
        (np.array([0.1, 0.2, 0.3]), -1),
        (np.ones((2, 3)), 1),
    ],
)
def test_bad_input_raises_value_error(std: np.ndarray, k: int) -> None:
    with pytest.raises(ValueError):
        sample_window_indices(std, k, np.random.default_rng(0))
