"""The activity HMM: fitting from labelled data, Viterbi decoding, storage in checkpoints."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from wearssl.models.export import save_prediction_model
from wearssl.models.harnet import CheckpointError, harnet, load_checkpoint
from wearssl.models.hmm import (
    HMM_KEY,
    HmmParams,
    checkpoint_hmm,
    fit_hmm,
    label_sequences,
    viterbi,
)


def sticky(k: int, stay: float, accuracy: float) -> HmmParams:
    """Uniform prior, ``stay`` self-transition, emissions right with ``accuracy``."""
    transitions = np.full((k, k), (1 - stay) / (k - 1))
    np.fill_diagonal(transitions, stay)
    emissions = np.full((k, k), (1 - accuracy) / (k - 1))
    np.fill_diagonal(emissions, accuracy)
    return HmmParams(np.full(k, 1 / k), transitions, emissions)


def path_log_probability(
    path: tuple[int, ...], observations: np.ndarray, params: HmmParams
) -> float:
    total = np.log(params.prior[path[0]]) + np.log(params.emissions[path[0], observations[0]])
    for t in range(1, len(path)):
        total += np.log(params.transitions[path[t - 1], path[t]])
        total += np.log(params.emissions[path[t], observations[t]])
    return float(total)


def random_params(rng: np.random.Generator, k: int) -> HmmParams:
    return HmmParams(
        rng.dirichlet(np.ones(k)),
        rng.dirichlet(np.ones(k), size=k),
        rng.dirichlet(np.ones(k), size=k),
    )


def test_viterbi_hand_made_case() -> None:
    # Two states that stay put 80 % of the time and emit their own symbol 90 % of the
    # time. Explaining the lone 1 at t=2 by staying in 0 beats leaving and coming back:
    # (0.8 * 0.8 * 0.1) / (0.2 * 0.2 * 0.9) = 1.78 > 1. The final run of three 1s is a
    # real change: one switch (0.2 / 0.8) against emissions (0.9 / 0.1) ** 3.
    params = HmmParams(
        np.array([0.5, 0.5]),
        np.array([[0.8, 0.2], [0.2, 0.8]]),
        np.array([[0.9, 0.1], [0.1, 0.9]]),
    )
    observations = np.array([0, 0, 1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(viterbi(observations, params), [0, 0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_finds_the_most_probable_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, n = 3, 6
    params = random_params(rng, k)
    observations = rng.integers(0, k, n)
    best = max(
        itertools.product(range(k), repeat=n),
        key=lambda path: path_log_probability(path, observations, params),
    )
    found = tuple(viterbi(observations, params).tolist())
    assert path_log_probability(found, observations, params) == pytest.approx(
        path_log_probability(best, observations, params)
    )


def test_sticky_transitions_remove_isolated_flips() -> None:
    params = sticky(4, stay=0.98, accuracy=0.8)
    truth = np.repeat([0, 2, 1, 3], 30)
    observed = truth.copy()
    flips = [5, 17, 44, 71, 100]
    for t in flips:
        observed[t] = (observed[t] + 1) % 4
    assert (observed != truth).sum() == len(flips)
    np.testing.assert_array_equal(viterbi(observed, params), truth)


def test_probabilities_one_hot_decode_like_classes() -> None:
    rng = np.random.default_rng(7)
    params = random_params(rng, 4)
    classes = rng.integers(0, 4, 50)
    one_hot = np.eye(4)[classes]
    np.testing.assert_array_equal(viterbi(one_hot, params), viterbi(classes, params))


def test_uncertain_probabilities_are_smoothed_more_than_confident_ones() -> None:
    params = sticky(2, stay=0.9, accuracy=0.9)
    confident = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 2 + [[1.0, 0.0]] * 5)
    hesitant = confident.copy()
    hesitant[5:7] = [0.45, 0.55]
    assert viterbi(confident, params)[5:7].tolist() == [1, 1]
    assert viterbi(hesitant, params)[5:7].tolist() == [0, 0]


def test_viterbi_of_nothing_is_empty() -> None:
    assert viterbi(np.empty(0, np.int64), sticky(3, 0.9, 0.9)).shape == (0,)


def test_fitted_transitions_count_consecutive_windows_only() -> None:
    sequences = [np.array([0, 0, 1, 1]), np.array([2, 2])]
    predictions = np.array([0, 1, 2])
    params = fit_hmm(sequences, predictions, np.array([0, 1, 2]), 3, pseudo_count=1e-9)
    np.testing.assert_allclose(params.transitions.sum(axis=1), 1.0)
    np.testing.assert_allclose(params.transitions[0], [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(params.transitions[1], [0.0, 1.0, 0.0], atol=1e-6)
    # the 1 -> 2 boundary between the two sequences is not a transition
    np.testing.assert_allclose(params.transitions[2], [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(params.prior, [2 / 6, 2 / 6, 2 / 6], atol=1e-6)


def test_fitted_rows_sum_to_one_and_have_no_zeros() -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 5, 40) for _ in range(4)]
    probabilities = rng.dirichlet(np.ones(5), size=100)
    params = fit_hmm(sequences, probabilities, rng.integers(0, 5, 100), 5)
    for matrix in (params.transitions, params.emissions, params.prior[None, :]):
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
        assert (matrix > 0).all()


def test_emissions_are_the_row_normalised_confusion_matrix() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (labels, predicted), 1)
    expected = confusion / confusion.sum(axis=1, keepdims=True)
    from_classes = fit_hmm([labels], predicted, labels, 3, pseudo_count=1e-9)
    np.testing.assert_allclose(from_classes.emissions, expected, atol=1e-6)
    probabilities = np.eye(3)[predicted] * 0.7 + 0.1  # argmax is the predicted class
    from_probabilities = fit_hmm([labels], probabilities, labels, 3, pseudo_count=1e-9)
    np.testing.assert_allclose(from_probabilities.emissions, expected, atol=1e-6)


def test_fit_refuses_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"labels_sequence_per_subject\[1\]"):
        fit_hmm([np.array([0, 1]), np.array([0, 3])], np.array([0]), np.array([0]), 3)
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        fit_hmm([np.array([0, 1])], np.array([0, 1]), np.array([0, 1, 2]), 3)


def test_label_sequences_break_at_subjects_and_gaps() -> None:
    labels = np.array([1, 2, 3, 4, 5, 6])
    groups = np.array(["b", "a", "a", "b", "a", "a"])
    times = np.array([0, 0, 10, 10, 20, 40])  # a: 0, 10, 20, (gap) 40; b: 0, 10
    sequences = label_sequences(labels, groups, times, window_ms=10)
    assert [s.tolist() for s in sequences] == [[2, 3, 5], [6], [1, 4]]


def test_params_validate_shapes_and_rows() -> None:
    with pytest.raises(ValueError, match=r"transitions has shape \(2, 3\)"):
        HmmParams(np.array([0.5, 0.5]), np.full((2, 3), 1 / 3), np.eye(2))
    with pytest.raises(ValueError, match="emissions rows must sum to 1"):
        HmmParams(np.array([0.5, 0.5]), np.eye(2), np.array([[0.5, 0.2], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"hmm: missing key\(s\) \['emissions'\]"):
        HmmParams.from_plain({"prior": [1.0], "transitions": [[1.0]]})


def test_plain_round_trip() -> None:
    params = random_params(np.random.default_rng(3), 4)
    back = HmmParams.from_plain(params.to_plain())
    for name in ("prior", "transitions", "emissions"):
        np.testing.assert_allclose(getattr(back, name), getattr(params, name))


def test_an_exported_model_stores_its_hmm_as_plain_lists_readable_with_weights_only(
    tmp_path: Path,
) -> None:
    params = random_params(np.random.default_rng(4), 3)
    path = tmp_path / "model.pt"
    save_prediction_model(
        path,
        harnet(5, n_classes=3),
        window_seconds=5,
        labels=["a", "b", "c"],
        hmm=params,
        metadata={"arm": "x"},
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(raw[HMM_KEY]["transitions"][0][0], float)
    assert raw["arm"] == "x" and raw["labels"] == ["a", "b", "c"]
    restored = checkpoint_hmm(load_checkpoint(path), "model.pt")
    np.testing.assert_allclose(restored.emissions, params.emissions)
    assert not list(tmp_path.glob(".*partial"))


def test_an_exported_model_refuses_an_hmm_of_other_class_counts(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="3 classes, the HMM 2 states"):
        save_prediction_model(
            tmp_path / "model.pt",
            harnet(5, n_classes=3),
            window_seconds=5,
            labels=["a", "b", "c"],
            hmm=sticky(2, 0.9, 0.9),
        )
    assert not (tmp_path / "model.pt").exists()


def test_checkpoint_hmm_names_a_malformed_entry() -> None:
    content = {
        "n_classes": 2,
        HMM_KEY: {"prior": [1.0], "transitions": [[1.0]], "emissions": [[1.0]]},
    }
    with pytest.raises(CheckpointError, match="m.pt: 'hmm' has 1 states, the model 2 classes"):
        checkpoint_hmm(content, "m.pt")
    content[HMM_KEY] = {"prior": [0.5, 0.5], "transitions": "bad", "emissions": [[1.0]]}
    with pytest.raises(CheckpointError, match="m.pt: 'hmm'"):
        checkpoint_hmm(content, "m.pt")
