"""The paper's subject-wise downstream protocol.

Fewer than 10 subjects: leave-one-subject-out, one of the remaining subjects held out for
validation. Otherwise: GroupShuffleSplit by subject (test 0.2, seed 42, 5 splits) with
12.5 % of the training subjects held out for validation (7:1:2). The validation subjects
are drawn by a generator seeded with (seed, fold index), so a fold is reproducible on its
own.

Subjects are taken in the order they first appear in the set (its source order: files,
or the ``pid`` array, as imported), never in the order of their ids. Ids are keyed
pseudonyms, so ordering by them would make every fold (and each leave-one-out fold's
validation subject) depend on the pseudonymisation key: two labs importing the same
public set with different keys would get different folds and different figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

MIN_SUBJECTS_FOR_SHUFFLE_SPLITS = 10
MIN_SUBJECTS = 3  # one each for training, validation and test


@dataclass(frozen=True)
class Fold:
    name: str  # "loso-<i>" or "split-<i>"
    train: np.ndarray  # window indices
    val: np.ndarray
    test: np.ndarray


def protocol_folds(
    subjects: np.ndarray,
    seed: int = 42,
    n_splits: int = 5,
    test_size: float = 0.2,
    val_fraction: float = 0.125,
) -> list[Fold]:
    """The folds of the paper's protocol for windows whose subjects are `subjects` (n,)."""
    subjects = _checked_subjects(subjects)
    _check_seed(seed)
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1; got {n_splits}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1); got {test_size}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction}")
    unique = subjects_in_source_order(subjects)
    if len(unique) < MIN_SUBJECTS:
        raise ValueError(
            f"the protocol needs at least {MIN_SUBJECTS} subjects; got {len(unique)}: {unique}"
        )
    if len(unique) < MIN_SUBJECTS_FOR_SHUFFLE_SPLITS:
        return _leave_one_subject_out(subjects, unique, seed)
    return _shuffle_splits(subjects, seed, n_splits, test_size, val_fraction)


def subset_subjects(subjects: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Boolean window mask keeping `n` subjects drawn by `seed`.

    The subjects are a prefix of one seeded permutation, so with the same seed the
    n-subject set contains every smaller set.
    """
    subjects = _checked_subjects(subjects)
    _check_seed(seed)
    unique = subjects_in_source_order(subjects)
    if not 1 <= n <= len(unique):
        raise ValueError(f"n must lie in [1, {len(unique)}] (the number of subjects); got {n}")
    chosen = unique[np.random.default_rng(seed).permutation(len(unique))[:n]]
    return np.isin(subjects, chosen)


def subjects_in_source_order(subjects: np.ndarray) -> np.ndarray:
    """The distinct subjects in the order of their first window."""
    return pd.unique(pd.Series(subjects, dtype=object)).astype(object)


def _leave_one_subject_out(subjects: np.ndarray, unique: np.ndarray, seed: int) -> list[Fold]:
    folds = []
    for index, test_subject in enumerate(unique):
        others = unique[unique != test_subject]
        val_subject = np.random.default_rng([seed, index]).choice(others)
        folds.append(
            Fold(
                name=f"loso-{index}",
                train=_indices_of(subjects, others[others != val_subject]),
                val=_indices_of(subjects, [val_subject]),
                test=_indices_of(subjects, [test_subject]),
            )
        )
    return folds


def _shuffle_splits(
    subjects: np.ndarray, seed: int, n_splits: int, test_size: float, val_fraction: float
) -> list[Fold]:
    splitter = GroupShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    folds = []
    placeholder = np.zeros(len(subjects))
    # GroupShuffleSplit orders groups by value: give it source-order codes, not the ids
    codes = source_order_codes(subjects)
    for index, (train_val, test) in enumerate(splitter.split(placeholder, groups=codes)):
        train_subjects = np.unique(codes[train_val])
        n_val = min(max(1, round(val_fraction * len(train_subjects))), len(train_subjects) - 1)
        val_subjects = np.random.default_rng([seed, index]).choice(
            train_subjects, size=n_val, replace=False
        )
        is_val = np.isin(codes[train_val], val_subjects)
        folds.append(
            Fold(
                name=f"split-{index}",
                train=np.sort(train_val[~is_val]),
                val=np.sort(train_val[is_val]),
                test=np.sort(test),
            )
        )
    return folds


def source_order_codes(subjects: np.ndarray) -> np.ndarray:
    """Each window's subject as 0, 1, 2, ... in the subjects' source order."""
    codes, _ = pd.factorize(pd.Series(subjects, dtype=object), sort=False)
    return codes


def _indices_of(subjects: np.ndarray, chosen: np.ndarray | list) -> np.ndarray:
    return np.flatnonzero(np.isin(subjects, chosen))


def _checked_subjects(subjects: np.ndarray) -> np.ndarray:
    subjects = np.asarray(subjects)
    if subjects.ndim != 1 or len(subjects) == 0:
        raise ValueError(f"subjects must be a non-empty 1-D array; got shape {subjects.shape}")
    missing = pd.isna(subjects)
    if missing.any():
        raise ValueError(f"subjects hold {int(missing.sum())} missing ids (None or NaN)")
    return subjects


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}")
