"""The subject-wise protocol: disjoint subjects in every fold, LOSO coverage, 7:1:2
shuffle splits reproducible by seed, nested subject subsets."""

from __future__ import annotations

import hmac

import numpy as np
import pytest

from wearssl.data.splits import protocol_folds, subset_subjects


def window_subjects(n_subjects: int, seed: int = 0) -> np.ndarray:
    """Subject ids per window: uneven window counts, shuffled window order."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:02d}" for i in range(n_subjects)])
    subjects = np.repeat(ids, rng.integers(3, 12, n_subjects))
    return subjects[rng.permutation(len(subjects))]


def subjects_of(subjects: np.ndarray, indices: np.ndarray) -> set:
    return set(subjects[indices])


def assert_fold_is_sound(subjects: np.ndarray, fold) -> None:
    train, val, test = (subjects_of(subjects, i) for i in (fold.train, fold.val, fold.test))
    assert train and val and test
    assert not (train & val or train & test or val & test)
    used = np.concatenate([fold.train, fold.val, fold.test])
    assert len(used) == len(np.unique(used)) == len(subjects)


@pytest.mark.parametrize("n_subjects", [3, 6, 9])
def test_loso_visits_every_subject_once_with_one_validation_subject(n_subjects):
    subjects = window_subjects(n_subjects)
    folds = protocol_folds(subjects)
    assert len(folds) == n_subjects
    tested = []
    for fold in folds:
        assert fold.name.startswith("loso-")
        assert_fold_is_sound(subjects, fold)
        assert len(subjects_of(subjects, fold.val)) == 1
        tested.extend(subjects_of(subjects, fold.test))
    assert sorted(tested) == sorted(set(subjects))
    assert len({f.name for f in folds}) == n_subjects


def test_loso_validation_subject_follows_the_seed():
    subjects = window_subjects(8)

    def val_subjects(seed: int) -> list:
        return [sorted(subjects_of(subjects, f.val)) for f in protocol_folds(subjects, seed=seed)]

    assert val_subjects(3) == val_subjects(3)
    assert any(val_subjects(s) != val_subjects(3) for s in range(4, 8))


@pytest.mark.parametrize("n_subjects", [10, 23, 40])
def test_shuffle_splits_are_disjoint_with_7_1_2_subjects(n_subjects):
    subjects = window_subjects(n_subjects)
    folds = protocol_folds(subjects)
    assert [f.name for f in folds] == [f"split-{i}" for i in range(5)]
    for fold in folds:
        assert_fold_is_sound(subjects, fold)
        n_test = len(subjects_of(subjects, fold.test))
        n_val = len(subjects_of(subjects, fold.val))
        n_train_total = n_subjects - n_test
        assert n_test == pytest.approx(0.2 * n_subjects, abs=1)
        assert n_val == max(1, round(0.125 * n_train_total))


def fold_indices(subjects: np.ndarray, seed: int = 42) -> list:
    return [
        [part.tolist() for part in (f.train, f.val, f.test)]
        for f in protocol_folds(subjects, seed=seed)
    ]


def test_shuffle_splits_are_reproducible_by_seed():
    subjects = window_subjects(20)
    assert fold_indices(subjects, 42) == fold_indices(subjects, 42)
    assert fold_indices(subjects, 42) != fold_indices(subjects, 43)


def pseudonyms_under(key: str, subjects: np.ndarray) -> np.ndarray:
    """The ids another lab's pseudonymisation key would give the same source subjects."""
    return np.array([hmac.new(key.encode(), s.encode(), "sha256").hexdigest() for s in subjects])


@pytest.mark.parametrize("n_subjects", [7, 20])
def test_folds_do_not_depend_on_the_pseudonymisation_key(n_subjects):
    """Same source, two keys: the same windows in every part of every fold (LOSO and
    shuffle splits), because folds follow the source order of the subjects, not their ids."""
    source = window_subjects(n_subjects)
    assert fold_indices(pseudonyms_under("lab-a", source)) == fold_indices(
        pseudonyms_under("lab-b", source)
    )
    for n in (3, n_subjects - 1):
        first = subset_subjects(pseudonyms_under("lab-a", source), n, seed=42)
        second = subset_subjects(pseudonyms_under("lab-b", source), n, seed=42)
        assert (first == second).all()


def test_folds_follow_the_order_in_which_subjects_first_appear():
    subjects = window_subjects(20)
    order = list(dict.fromkeys(subjects))
    renamed = dict(zip(order, reversed(sorted(order)), strict=True))
    relabelled = np.array([renamed[s] for s in subjects])
    assert fold_indices(relabelled) == fold_indices(subjects)


def test_shuffle_splits_test_different_subjects():
    subjects = window_subjects(30)
    tests = {frozenset(subjects_of(subjects, f.test)) for f in protocol_folds(subjects)}
    assert len(tests) > 1


def test_integer_subject_ids():
    subjects = np.repeat(np.arange(12), 4)
    for fold in protocol_folds(subjects, n_splits=3):
        assert_fold_is_sound(subjects, fold)


def test_subset_subjects_is_nested_and_reproducible():
    subjects = window_subjects(15)
    kept = {n: set(subjects[subset_subjects(subjects, n, seed=1)]) for n in range(1, 16)}
    for n in range(1, 16):
        assert len(kept[n]) == n
        assert kept[n] >= kept.get(n - 1, set())
    mask = subset_subjects(subjects, 5, seed=1)
    assert mask.dtype == bool and mask.shape == subjects.shape
    np.testing.assert_array_equal(mask, subset_subjects(subjects, 5, seed=1))
    assert any(set(subjects[subset_subjects(subjects, 5, seed=s)]) != kept[5] for s in range(2, 6))


def test_subset_keeps_every_window_of_a_kept_subject():
    subjects = window_subjects(10)
    mask = subset_subjects(subjects, 4, seed=0)
    assert set(subjects[mask]).isdisjoint(subjects[~mask])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: protocol_folds(np.array(["a", "b", "a"])), "at least 3 subjects"),
        (lambda: protocol_folds(np.array([])), "non-empty"),
        (lambda: protocol_folds(np.array(["a", None, "b"], dtype=object)), "missing"),
        (lambda: protocol_folds(window_subjects(12), test_size=1.5), "test_size"),
        (lambda: protocol_folds(window_subjects(12), val_fraction=0), "val_fraction"),
        (lambda: protocol_folds(window_subjects(12), n_splits=0), "n_splits"),
        (lambda: protocol_folds(window_subjects(12), seed=-1), "seed"),
        (lambda: subset_subjects(window_subjects(5), 6, seed=0), "n must lie"),
        (lambda: subset_subjects(window_subjects(5), 0, seed=0), "n must lie"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
