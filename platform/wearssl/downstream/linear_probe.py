"""The ``linear_probe`` arm: a quick, standard measure of a representation's quality.

The pre-trained feature extractor is frozen and run once over the fold's windows (in eval
mode, on the GPU when there is one); a multinomial logistic regression (scikit-learn) on
the standardised 1,024-d features then predicts the activity. Nothing of the network is
trained, so the probe costs seconds on a CPU where fine-tuning costs hours, and features
from a pre-trained and from a randomly initialised network can be compared on equal terms.

The regularisation strength is chosen on the validation subjects (the grid
``PROBE_REGULARISATION``, by class-weighted log loss), then the probe is refit with it on
every non-test window, as the forest is. Classes are weighted by inverse frequency, as the
neural arms' loss is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold
from wearssl.models.harnet import harnet

# inverse regularisation strengths tried on the validation subjects
PROBE_REGULARISATION = (0.001, 0.01, 0.1, 1.0)
PROBE_MAX_ITERATIONS = 2000
FEATURE_BATCH_WINDOWS = 512


@torch.no_grad()
def frozen_features(
    weights: str | Path, windows: np.ndarray, window_seconds: int, batch_size: int
) -> np.ndarray:
    """(n, 3, L) windows -> (n, 1024) float32 features of the frozen extractor at ``weights``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extractor = harnet(window_seconds, pretrained=weights).feature_extractor.to(device).eval()
    chunks = [
        extractor(torch.tensor(windows[start : start + batch_size], device=device)).float().cpu()
        for start in range(0, len(windows), batch_size)
    ]
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(chunks).flatten(1).numpy()


def probe(regularisation: float, seed: int) -> Pipeline:
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=regularisation,
            class_weight="balanced",
            max_iter=PROBE_MAX_ITERATIONS,
            random_state=seed,
        ),
    )


def choose_regularisation(
    features: np.ndarray, labels: np.ndarray, fold: Fold, seed: int
) -> tuple[float, float]:
    """(C, validation log loss) of the grid point with the lowest validation loss."""
    train_classes = np.unique(labels[fold.train])
    scored = []
    for regularisation in PROBE_REGULARISATION:
        model = probe(regularisation, seed).fit(features[fold.train], labels[fold.train])
        seen = np.isin(labels[fold.val], train_classes)
        if not seen.any():
            return regularisation, math.nan
        loss = log_loss(
            labels[fold.val][seen],
            model.predict_proba(features[fold.val][seen]),
            labels=train_classes,
        )
        scored.append((loss, regularisation))
    loss, regularisation = min(scored)
    return regularisation, float(loss)


def train_linear_probe_arm(
    data: LabelledSet, fold: Fold, seed: int, weights: str | Path
) -> tuple[np.ndarray, float]:
    """(test probabilities over every class of ``data``, validation loss) of the probe."""
    used = np.sort(np.concatenate([fold.train, fold.val, fold.test]))
    computed = frozen_features(
        weights, data.windows[used], data.window_seconds, FEATURE_BATCH_WINDOWS
    )
    features = np.zeros((len(data.labels), computed.shape[1]), dtype=np.float32)
    features[used] = computed
    return fit_probe(features, data.labels, fold, seed, len(data.label_names))


def fit_probe(
    features: np.ndarray, labels: np.ndarray, fold: Fold, seed: int, n_classes: int
) -> tuple[np.ndarray, float]:
    """The probe on precomputed features (one row per window of the set): the
    regularisation chosen on the validation subjects, then a fit on every non-test window.
    Returns (test probabilities over ``n_classes``, validation loss)."""
    regularisation, val_loss = choose_regularisation(features, labels, fold, seed)
    fit_on = np.sort(np.concatenate([fold.train, fold.val]))
    model = probe(regularisation, seed).fit(features[fit_on], labels[fit_on])
    probabilities = np.zeros((len(fold.test), n_classes), dtype=np.float32)
    if len(fold.test):
        probabilities[:, model.classes_] = model.predict_proba(features[fold.test])
    return probabilities, val_loss
