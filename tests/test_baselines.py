"""The balanced random forest on window features: learns separable classes, predicts a
minority class, is deterministic for a seed and carries the paper's settings."""

from __future__ import annotations

import numpy as np
import pytest

from wearssl.models.forest import balanced_forest, fit_forest, predict_forest

RATE = 30.0
SAMPLES = 300
TREES = 50
# (frequency Hz, amplitude g) of the oscillation along gravity, one per class
CLASS_MOTION = ((0.0, 0.0), (1.0, 0.2), (2.5, 0.5), (5.0, 0.15))


def synthetic_windows(counts: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose class sets the oscillation's frequency and amplitude, plus noise,
    a random phase and a random slight tilt."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    time_s = np.arange(SAMPLES) / RATE
    hz, amplitude = (np.array(v)[labels, None] for v in zip(*CLASS_MOTION, strict=True))
    phase = rng.uniform(0, 2 * np.pi, (len(labels), 1))
    motion = amplitude * np.sin(2 * np.pi * hz * time_s + phase)
    tilt = rng.normal(0, 0.1, (len(labels), 2, 1))
    windows = np.concatenate(
        [tilt + rng.normal(0, 0.03, (len(labels), 2, SAMPLES)), (1.0 + motion)[:, None]], axis=1
    )
    windows[:, 2] += rng.normal(0, 0.03, (len(labels), SAMPLES))
    order = rng.permutation(len(labels))
    return windows[order].astype(np.float32), labels[order]


def test_paper_settings():
    params = balanced_forest(seed=7, n_jobs=2).get_params()
    assert params["n_estimators"] == 3000
    assert params["bootstrap"] is True
    assert params["replacement"] is True
    assert params["sampling_strategy"] == "not minority"
    assert params["random_state"] == 7
    assert params["n_jobs"] == 2


def test_separable_classes_score_far_above_chance():
    train_x, train_y = synthetic_windows([60, 60, 60, 60], seed=0)
    test_x, test_y = synthetic_windows([30, 30, 30, 30], seed=1)
    model = fit_forest(train_x, train_y, n_estimators=TREES)
    predicted, probabilities = predict_forest(model, test_x)
    assert predicted.shape == test_y.shape
    assert probabilities.shape == (len(test_y), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(predicted, model.classes_[probabilities.argmax(axis=1)])
    assert np.mean(predicted == test_y) > 0.9  # chance is 0.25


def test_minority_class_is_still_predicted():
    train_x, train_y = synthetic_windows([300, 120, 40, 8], seed=2)
    test_x, test_y = synthetic_windows([20, 20, 20, 20], seed=3)
    predicted, _ = predict_forest(fit_forest(train_x, train_y, n_estimators=TREES), test_x)
    minority = test_y == 3
    assert np.mean(predicted[minority] == 3) > 0


def test_deterministic_for_a_seed():
    train_x, train_y = synthetic_windows([40, 40, 10, 10], seed=4)
    test_x, _ = synthetic_windows([10, 10, 10, 10], seed=5)

    def probabilities(seed: int) -> np.ndarray:
        model = fit_forest(train_x, train_y, seed=seed, n_estimators=TREES)
        return predict_forest(model, test_x)[1]

    first = probabilities(0)
    np.testing.assert_array_equal(first, probabilities(0))
    assert not np.array_equal(first, probabilities(1))


def test_classes_missing_from_training_are_absent_from_the_columns():
    train_x, train_y = synthetic_windows([30, 0, 30, 30], seed=6)
    model = fit_forest(train_x, train_y, n_estimators=10)
    predicted, probabilities = predict_forest(model, train_x[:5])
    np.testing.assert_array_equal(model.classes_, [0, 2, 3])
    assert probabilities.shape == (5, 3)
    assert set(predicted) <= {0, 2, 3}


def test_empty_prediction():
    train_x, train_y = synthetic_windows([10, 10, 10, 10], seed=7)
    model = fit_forest(train_x, train_y, n_estimators=5)
    predicted, probabilities = predict_forest(model, train_x[:0])
    assert predicted.shape == (0,)
    assert probabilities.shape == (0, 4)


def test_bad_input_is_named():
    windows, labels = synthetic_windows([5, 5, 0, 0], seed=8)
    with pytest.raises(ValueError, match="labels must have shape"):
        fit_forest(windows, labels[:-1], n_estimators=5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_forest(windows, np.zeros(len(windows), dtype=int), n_estimators=5)
    with pytest.raises(ValueError, match="n_estimators"):
        balanced_forest(n_estimators=0)
