"""A hidden Markov model over per-window activity predictions, learned from labelled data.

Per-window classifiers flip between classes from one window to the next far more often
than people change activity. An HMM whose hidden states are the true activities smooths
this out (Viterbi decoding of the most likely state sequence). Its parameters come from
a labelled training set:

* prior: the class frequencies of the training labels;
* transitions ``A[i, j] = P(state j at t+1 | state i at t)``: counted over consecutive
  windows of one subject's session (never across subjects or gaps);
* emissions ``E[i, j] = P(the classifier predicts j | the true class is i)``: the
  row-normalised confusion matrix of held-out predictions (predictions the classifier
  made on windows it was not trained on, so the errors are those it will make on new
  people).

Every count gets a small pseudo-count so that no probability is exactly zero (a zero
would forbid a path outright). Decoding takes either predicted classes (the emission
column of the prediction) or class probabilities, whose evidence for state ``i`` is the
expected emission ``sum_j E[i, j] p(j)`` (the same as the hard case for one-hot
probabilities, softer when the classifier hesitates). Everything runs in log space.

The parameters travel inside an exported checkpoint under the key ``"hmm"`` as plain
lists of floats (:meth:`HmmParams.to_plain`, :func:`wearssl.models.export.save_prediction_model`),
so the file still
loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wearssl.models.harnet import CheckpointError

HMM_KEY = "hmm"
ROW_SUM_TOLERANCE = 1e-6
_PLAIN_KEYS = ("prior", "transitions", "emissions")


@dataclass(frozen=True)
class HmmParams:
    """``prior (k,)``, ``transitions (k, k)`` and ``emissions (k, k)``, rows summing to 1."""

    prior: np.ndarray
    transitions: np.ndarray
    emissions: np.ndarray

    def __post_init__(self) -> None:
        prior = np.asarray(self.prior, dtype=np.float64)
        if prior.ndim != 1 or len(prior) < 1:
            raise ValueError(f"prior must be a non-empty 1-D array, got shape {prior.shape}")
        k = len(prior)
        object.__setattr__(self, "prior", _checked_distribution("prior", prior, (k,)))
        for name in ("transitions", "emissions"):
            matrix = np.asarray(getattr(self, name), dtype=np.float64)
            object.__setattr__(self, name, _checked_distribution(name, matrix, (k, k)))

    @property
    def n_classes(self) -> int:
        return len(self.prior)

    def to_plain(self) -> dict[str, list]:
        """Lists of floats, storable in a checkpoint read with ``weights_only=True``."""
        return {
            "prior": [float(v) for v in self.prior],
            "transitions": [[float(v) for v in row] for row in self.transitions],
            "emissions": [[float(v) for v in row] for row in self.emissions],
        }

    @classmethod
    def from_plain(cls, plain: object, where: str = HMM_KEY) -> HmmParams:
        """Parameters from :meth:`to_plain`'s form; ``where`` names the source in errors."""
        if not isinstance(plain, dict):
            raise ValueError(
                f"{where}: expected a dict with keys {_PLAIN_KEYS}, got {type(plain).__name__}"
            )
        missing = [key for key in _PLAIN_KEYS if key not in plain]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        arrays = {}
        for key in _PLAIN_KEYS:
            try:
                arrays[key] = np.asarray(plain[key], dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{where}[{key!r}]: not a numeric array ({error})") from None
        try:
            return cls(**arrays)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def _checked_distribution(name: str, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` when it has ``shape`` and holds probability rows summing to 1."""
    if values.shape != shape:
        raise ValueError(f"{name} has shape {values.shape}, expected {shape}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must hold finite non-negative probabilities")
    sums = values.reshape(-1, shape[-1]).sum(axis=1)
    if np.abs(sums - 1.0).max() > ROW_SUM_TOLERANCE:
        raise ValueError(f"{name} rows must sum to 1, got sums {np.round(sums, 6).tolist()}")
    return values


def _normalised_rows(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum(axis=-1, keepdims=True)


def _check_labels(name: str, labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def predicted_classes(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n,)`` classes from classes ``(n,)`` or probabilities ``(n, k)`` (their argmax)."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        if predictions.shape[1] != n_classes:
            raise ValueError(
                f"probabilities have {predictions.shape[1]} columns, expected {n_classes}"
            )
        return predictions.argmax(axis=1)
    return _check_labels("predicted classes", predictions, n_classes)


def fit_hmm(
    labels_sequence_per_subject: list[np.ndarray],
    probabilities: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    pseudo_count: float = 1.0,
) -> HmmParams:
    """Learn an HMM from labelled data (see the module docstring).

    ``labels_sequence_per_subject``: each subject's (or session's) true classes in time
    order, consecutive windows only (see :func:`label_sequences`); they give the prior and
    the transitions. ``probabilities`` (``(n, k)``, or predicted classes ``(n,)``) and
    ``labels`` (``(n,)``): held-out predictions and their true classes; they give the
    emissions. ``pseudo_count`` is added to every count.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if not pseudo_count > 0:
        raise ValueError(f"pseudo_count must be > 0, got {pseudo_count}")
    prior = np.full(n_classes, pseudo_count)
    transitions = np.full((n_classes, n_classes), pseudo_count)
    for index, sequence in enumerate(labels_sequence_per_subject):
        sequence = _check_labels(f"labels_sequence_per_subject[{index}]", sequence, n_classes)
        prior += np.bincount(sequence, minlength=n_classes)
        np.add.at(transitions, (sequence[:-1], sequence[1:]), 1.0)
    labels = _check_labels("labels", labels, n_classes)
    predicted = predicted_classes(probabilities, n_classes)
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    emissions = np.full((n_classes, n_classes), pseudo_count)
    np.add.at(emissions, (labels, predicted), 1.0)
    return HmmParams(
        _normalised_rows(prior), _normalised_rows(transitions), _normalised_rows(emissions)
    )


def label_sequences(
    labels: np.ndarray, groups: np.ndarray, times_ms: np.ndarray, window_ms: int
) -> list[np.ndarray]:
    """Split windows into runs of consecutive windows of one group (subject or session).

    Windows are sorted by (group, time); a run ends where the group changes or the next
    window starts more than ``window_ms`` after the previous one (a gap).
    """
    labels, groups, times_ms = np.asarray(labels), np.asarray(groups), np.asarray(times_ms)
    if not len(labels) == len(groups) == len(times_ms):
        raise ValueError(
            f"labels, groups and times_ms differ in length: "
            f"{len(labels)}, {len(groups)}, {len(times_ms)}"
        )
    if len(labels) == 0:
        return []
    order = np.lexsort((times_ms, groups))
    labels, groups, times_ms = labels[order], groups[order], times_ms[order]
    breaks = (groups[1:] != groups[:-1]) | (np.diff(times_ms) > window_ms)
    return np.split(labels, np.flatnonzero(breaks) + 1)


def _log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(values)


def emission_log_likelihoods(observations: np.ndarray, params: HmmParams) -> np.ndarray:
    """``(n, k)`` log P(observation t | state i), observations being classes ``(n,)`` or
    probabilities ``(n, k)``."""
    observations = np.asarray(observations)
    if observations.ndim == 2:
        if observations.shape[1] != params.n_classes:
            raise ValueError(
                f"probabilities have {observations.shape[1]} columns, the HMM has "
                f"{params.n_classes} states"
            )
        if not np.isfinite(observations).all():
            raise ValueError("probabilities must be finite")
        return _log(observations @ params.emissions.T)
    classes = _check_labels("observations", observations, params.n_classes)
    return _log(params.emissions[:, classes].T)


def viterbi(observations: np.ndarray, params: HmmParams) -> np.ndarray:
    """The most likely state sequence ``(n,)`` int64 for predicted classes ``(n,)`` or
    class probabilities ``(n, k)`` (see the module docstring)."""
    emission = emission_log_likelihoods(observations, params)
    n, k = emission.shape
    if n == 0:
        return np.empty(0, np.int64)
    log_transitions = _log(params.transitions)
    score = _log(params.prior) + emission[0]
    backpointers = np.empty((n, k), np.int64)
    for t in range(1, n):
        candidates = score[:, None] + log_transitions  # (from, to)
        backpointers[t] = candidates.argmax(axis=0)
        score = candidates[backpointers[t], np.arange(k)] + emission[t]
    path = np.empty(n, np.int64)
    path[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = backpointers[t, path[t]]
    return path


def checkpoint_hmm(content: dict, where: str) -> HmmParams | None:
    """The HMM stored in a loaded checkpoint, or None; a malformed one is a CheckpointError."""
    plain = content.get(HMM_KEY)
    if plain is None:
        return None
    try:
        params = HmmParams.from_plain(plain, f"{where}: {HMM_KEY!r}")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    n_classes = content.get("n_classes")
    if n_classes is not None and params.n_classes != n_classes:
        raise CheckpointError(
            f"{where}: {HMM_KEY!r} has {params.n_classes} states, the model {n_classes} classes"
        )
    return params
