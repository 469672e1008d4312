"""The paper's random-forest baseline: a balanced random forest on the 22 window features.

Each tree is grown on a bootstrap sample (with replacement) in which every class but the
minority one is undersampled to the minority's size, so no class weights are needed.
imbalanced-learn >= 0.13 defaults to ``bootstrap=False``; the paper's forest bootstraps,
so it is said explicitly.
"""

from __future__ import annotations

import numpy as np
from imblearn.ensemble import BalancedRandomForestClassifier

from wearssl.models.features import window_features


def balanced_forest(
    n_estimators: int = 3000, seed: int = 0, n_jobs: int = 1
) -> BalancedRandomForestClassifier:
    """An unfitted balanced random forest with the paper's settings."""
    if n_estimators < 1:
        raise ValueError(f"n_estimators must be at least 1; got {n_estimators}")
    return BalancedRandomForestClassifier(
        n_estimators=n_estimators,
        replacement=True,
        bootstrap=True,
        sampling_strategy="not minority",
        random_state=seed,
        n_jobs=n_jobs,
    )


def fit_forest(
    windows: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    n_estimators: int = 3000,
    n_jobs: int = 1,
) -> BalancedRandomForestClassifier:
    """Fit the forest on the features of (n, 3, L) windows in g at 30 Hz."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(windows):
        raise ValueError(
            f"labels must have shape ({len(windows)},) to match the windows; got {labels.shape}"
        )
    if len(np.unique(labels)) < 2:
        raise ValueError(f"the forest needs at least 2 classes; labels hold {np.unique(labels)}")
    model = balanced_forest(n_estimators=n_estimators, seed=seed, n_jobs=n_jobs)
    return model.fit(window_features(windows), labels)


def predict_forest(
    model: BalancedRandomForestClassifier, windows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels (n,) and class probabilities (n, k), columns in ``model.classes_`` order.

    k counts the classes seen in training, which may be fewer than the data set's classes.
    """
    classes = model.classes_
    if len(windows) == 0:
        return classes[:0], np.zeros((0, len(classes)))
    probabilities = model.predict_proba(window_features(windows))
    return classes[np.argmax(probabilities, axis=1)], probabilities
