"""Training one arm on one fold: class weights, frozen/fine-tuned/transfer initialisation,
early stopping, the forest arm."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

from wearssl.config.evaluate import Finetune
from wearssl.data.labelled_set import LabelledSet
from wearssl.data.splits import Fold, protocol_folds
from wearssl.downstream.finetune import (
    build_classifier,
    class_weights,
    downstream_optimiser,
    expand_probabilities,
    fit_classifier,
    settings_for,
    train_arm,
    train_forest_arm,
    train_transfer_source,
    validation_loss,
)
from wearssl.downstream.linear_probe import frozen_features
from wearssl.downstream.metrics import per_subject_scores
from wearssl.models.harnet import CheckpointError, harnet, load_checkpoint, save_checkpoint

LEARNABLE_LABELS = ["still", "walking", "running"]


def learnable_set(
    n_subjects: int = 6, per_class: int = 8, seed: int = 0, window_seconds: int = 5
) -> LabelledSet:
    """Three classes a small network learns in a few epochs: near-still, a 2 Hz 0.5 g and a
    5 Hz 1.5 g oscillation along a random direction, on top of gravity (about +z, tilted at
    random) and sensor noise; amplitude and frequency vary a little per window."""
    rng = np.random.default_rng(seed)
    length = window_seconds * 30
    t = np.arange(length) / 30
    frequencies, amplitudes = (1.0, 2.0, 5.0), (0.02, 0.5, 1.5)
    windows, labels, subjects = [], [], []
    for subject in range(n_subjects):
        for label in range(len(LEARNABLE_LABELS)):
            for _ in range(per_class):
                direction = rng.normal(size=3)
                gravity = np.array([0.0, 0.0, 1.0]) + 0.2 * rng.normal(size=3)
                frequency = frequencies[label] * rng.uniform(0.9, 1.1)
                wave = (
                    amplitudes[label]
                    * rng.uniform(0.8, 1.2)
                    * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
                )
                signal = (
                    (gravity / np.linalg.norm(gravity))[:, None]
                    + (direction / np.linalg.norm(direction))[:, None] * wave
                    + 0.03 * rng.normal(size=(3, length))
                )
                windows.append(signal)
                labels.append(label)
                subjects.append(f"p{seed}-{subject:02d}")
    n = len(labels)
    return LabelledSet(
        name=f"learnable-{seed}",
        window_seconds=window_seconds,
        label_names=list(LEARNABLE_LABELS),
        windows=np.asarray(windows, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        subjects=np.asarray(subjects, dtype=object),
        times_ms=np.arange(n, dtype=np.int64) * window_seconds * 1000,
    )


def tiny_fold(data: LabelledSet, n_train: int = 16, n_val: int = 8) -> Fold:
    """A fold of a few windows (not subject-wise): for tests of mechanics, not of skill."""
    order = np.random.default_rng(0).permutation(len(data.labels))
    return Fold("tiny", order[:n_train], order[n_train : n_train + n_val], order[-6:])


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Small batches gain nothing from a second thread, and where other work keeps the
    cores busy, torch's threads wait on each other for many times the compute."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def single_threaded() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def data() -> LabelledSet:
    return learnable_set()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A stand-in pre-trained model: random harnet5 with BatchNorm statistics of real
    running (so frozen-BN checks see non-trivial buffers)."""
    torch.manual_seed(7)
    model = harnet(5)
    model.train()
    with torch.no_grad():
        model.features(torch.randn(32, 3, 150) * 0.5 + 0.3)
    path = tmp_path_factory.mktemp("pretrained") / "ssl.pt"
    save_checkpoint(path, model, window_seconds=5)
    return str(path)


QUICK = Finetune(lr=1e-3, batch_size=8, max_epochs=1, patience=1, augment=True)


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_class_weights_known_answer():
    labels = np.array([0, 0, 0, 1, 1, 3])
    weights = class_weights(labels, n_classes=4)
    # n / (k_present * n_c) with n = 6, k_present = 3; absent class 2 gets 0
    assert torch.allclose(weights, torch.tensor([6 / 9, 6 / 6, 0.0, 6 / 3]))
    # every present class then carries the same total weight, n / k_present
    per_class = np.bincount(labels, minlength=4) * weights.numpy()
    assert np.allclose(per_class[[0, 1, 3]], 2.0)


def test_class_weights_reject_labels_out_of_range():
    with pytest.raises(ValueError, match="labels must lie in"):
        class_weights(np.array([0, 3]), n_classes=3)


def test_frozen_arm_trains_only_the_head(data, pretrained):
    model = build_classifier("frozen", 5, 3, seed=0, init=pretrained)
    donor = harnet(5, pretrained=pretrained)
    assert states_equal(clone_state(model.feature_extractor), clone_state(donor.feature_extractor))
    extractor_before = clone_state(model.feature_extractor)
    head_before = clone_state(model.classifier)
    fold = tiny_fold(data)
    fit_classifier(
        model,
        (data.windows[fold.train], data.labels[fold.train]),
        (data.windows[fold.val], data.labels[fold.val]),
        QUICK,
        seed=0,
    )
    # weights and BatchNorm running statistics (and batch counters) are untouched
    assert states_equal(clone_state(model.feature_extractor), extractor_before)
    assert not states_equal(clone_state(model.classifier), head_before)


def test_finetune_arm_trains_every_layer(data, pretrained):
    model = build_classifier("finetune", 5, 3, seed=0, init=pretrained)
    extractor_before = clone_state(model.feature_extractor)
    fold = tiny_fold(data)
    fit_classifier(
        model,
        (data.windows[fold.train], data.labels[fold.train]),
        (data.windows[fold.val], data.labels[fold.val]),
        QUICK,
        seed=0,
    )
    after = clone_state(model.feature_extractor)
    changed = [key for key in after if not torch.equal(after[key], extractor_before[key])]
    assert any(key.endswith("running_mean") for key in changed)
    assert any(key.endswith("conv1.weight") for key in changed)


def test_transfer_arm_takes_only_the_source_feature_extractor(tmp_path):
    torch.manual_seed(3)
    source = harnet(5, n_classes=5)
    path = tmp_path / "source.pt"
    save_checkpoint(path, source, window_seconds=5, labels=list("abcde"))
    model = build_classifier("transfer", 5, 3, seed=0, init=path)
    assert states_equal(clone_state(model.feature_extractor), clone_state(source.feature_extractor))
    assert model.classifier.linear2.out_features == 3
    # the head is fresh, not the source's hidden layer
    assert not torch.equal(model.classifier.linear1.weight, source.classifier.linear1.weight)


def test_scratch_arm_depends_on_seed_only():
    a = build_classifier("scratch", 5, 3, seed=11)
    b = build_classifier("scratch", 5, 3, seed=11)
    c = build_classifier("scratch", 5, 3, seed=12)
    assert states_equal(clone_state(a), clone_state(b))
    assert not states_equal(clone_state(a), clone_state(c))


def test_pretrained_window_length_must_match(tmp_path):
    path = tmp_path / "ten.pt"
    save_checkpoint(path, harnet(10), window_seconds=10)
    with pytest.raises(CheckpointError, match=r"10-s.*harnet5|harnet5.*10-s"):
        build_classifier("finetune", 5, 3, seed=0, init=path)


def test_initialised_arms_need_weights():
    with pytest.raises(ValueError, match="needs weights"):
        build_classifier("finetune", 5, 3, seed=0)
    with pytest.raises(ValueError, match="not a neural arm"):
        build_classifier("forest", 5, 3, seed=0)


def test_early_stopping_restores_the_best_validation_weights(data):
    model = build_classifier("scratch", 5, 3, seed=0)
    fold = tiny_fold(data, n_train=16, n_val=8)
    settings = Finetune(lr=3e-3, batch_size=8, max_epochs=4, patience=1, augment=False)
    val = (data.windows[fold.val], data.labels[fold.val])
    fit = fit_classifier(
        model, (data.windows[fold.train], data.labels[fold.train]), val, settings, 0
    )
    losses = [epoch.val_loss for epoch in fit.history]
    assert fit.best_val_loss == min(losses)
    assert fit.best_epoch == int(np.argmin(losses))
    # stopped within `patience` epochs of the best one (or at max_epochs)
    assert len(losses) <= min(settings.max_epochs, fit.best_epoch + 1 + settings.patience)
    weights = class_weights(data.labels[fold.train], 3)
    assert validation_loss(model, *val, weights, 8) == pytest.approx(fit.best_val_loss, rel=1e-5)


def test_forest_arm_learns_from_every_non_test_window(data):
    fold = protocol_folds(data.subjects)[0]
    outcome = train_forest_arm(data, fold, seed=0, n_estimators=30)
    assert outcome.probabilities.shape == (len(fold.test), 3)
    assert np.allclose(outcome.probabilities.sum(1), 1.0, atol=1e-5)
    assert math.isnan(outcome.val_loss) and outcome.model is None
    predicted = outcome.probabilities.argmax(1)
    scores = per_subject_scores(
        data.labels[fold.test], predicted, data.subjects[fold.test], [0, 1, 2]
    )
    assert scores["f1_macro"].mean() > 0.8


def test_forest_is_fit_on_the_validation_subjects_too(data):
    """A class seen only by the validation subjects is still predicted: the forest has no
    early stopping, so the paper fits it on training and validation windows together."""
    fold = protocol_folds(data.subjects)[0]
    only_val = Fold(
        fold.name,
        train=fold.train[data.labels[fold.train] != 2],
        val=fold.val,
        test=fold.test,
    )
    outcome = train_forest_arm(data, only_val, seed=0, n_estimators=30)
    assert outcome.probabilities[:, 2].max() > 0.5


def test_downstream_optimiser_is_adam_with_amsgrad():
    model = build_classifier("scratch", 5, 3, seed=0)
    optimiser = downstream_optimiser(model, Finetune(lr=1e-4))
    assert isinstance(optimiser, torch.optim.Adam)
    assert optimiser.param_groups[0]["amsgrad"] is True
    assert optimiser.param_groups[0]["lr"] == 1e-4


def test_paper_protocol_defaults():
    settings = Finetune()
    assert (settings.lr, settings.max_epochs, settings.patience) == (1e-4, 200, 5)
    assert settings.augment


def test_a_labelled_set_brings_its_own_batch_size(data):
    settings = Finetune(batch_size=256)
    assert settings_for(data, settings).batch_size == 256
    small = replace(data, batch_size=50)
    assert settings_for(small, settings).batch_size == 50
    assert settings.batch_size == 256


def test_probabilities_are_expanded_to_every_class():
    seen = np.array([[0.25, 0.75], [1.0, 0.0]])
    full = expand_probabilities(seen, classes=np.array([0, 2]), n_classes=4)
    assert full.shape == (2, 4)
    assert np.allclose(full[:, [0, 2]], seen) and not full[:, [1, 3]].any()


def test_transfer_source_checkpoint_carries_labels(tmp_path, data):
    fold = tiny_fold(data)
    settings = Finetune(lr=1e-3, batch_size=8, max_epochs=1, augment=False)
    path = train_transfer_source(data, fold, settings, seed=0, out=tmp_path / "source.pt")
    content = load_checkpoint(path)
    assert content["labels"] == LEARNABLE_LABELS and content["n_classes"] == 3
    assert content["dataset"] == data.name and content["window_seconds"] == 5


def test_linear_probe_predicts_from_frozen_features(data, pretrained):
    fold = protocol_folds(data.subjects)[0]
    before = {k: v.clone() for k, v in harnet(5, pretrained=pretrained).state_dict().items()}
    outcome = train_arm("linear_probe", data, fold, 0, Finetune(), init=pretrained)
    assert outcome.probabilities.shape == (len(fold.test), 3) and outcome.model is None
    assert np.allclose(outcome.probabilities.sum(1), 1.0, atol=1e-5)
    assert math.isfinite(outcome.val_loss)
    after = harnet(5, pretrained=pretrained).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    scores = per_subject_scores(
        data.labels[fold.test], outcome.probabilities.argmax(1), data.subjects[fold.test], [0, 1, 2]
    )
    assert scores["f1_macro"].mean() > 0.8  # three classes: chance is about 0.33


def test_linear_probe_features_are_the_frozen_extractor_outputs(data, pretrained):
    model = harnet(5, pretrained=pretrained).eval()
    with torch.no_grad():
        expected = model.feature_extractor(torch.from_numpy(data.windows[:7])).flatten(1)
    features = frozen_features(pretrained, data.windows[:7], 5, batch_size=3)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_linear_probe_needs_weights(data):
    with pytest.raises(ValueError, match="linear_probe"):
        train_arm("linear_probe", data, tiny_fold(data), 0, Finetune())
