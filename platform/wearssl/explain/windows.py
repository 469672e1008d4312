"""The windows to explain: held-out corpus windows, labelled windows, and pretext-task
forms of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from wearssl.config import ConfigError
from wearssl.config.explain import (
    CorpusWindows,
    LabelledWindows,
)
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.data.labelled_set import read_labelled_set
from wearssl.data.splits import protocol_folds
from wearssl.pretrain.transforms import (
    permute_segments,
    reverse_time,
    scale,
    time_warp,
)

_PRETEXT_TRANSFORMS: dict[str, Callable[[Tensor, Tensor, torch.Generator], Tensor]] = {
    "aot": lambda x, mask, generator: reverse_time(x, mask),
    "permute": permute_segments,
    "time_warp": time_warp,
    "scale": scale,
}


def pretext_windows(
    windows: np.ndarray, head: str, transformed: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The windows a pretext head is explained on, with the head's true labels: the
    windows as drawn (label 0), followed, if ``transformed``, by each window with the
    head's transform applied (label 1)."""
    original = np.asarray(windows, dtype=np.float32)
    labels = np.zeros(len(original), dtype=np.int64)
    if not transformed:
        return original, labels
    x = torch.from_numpy(original)
    generator = torch.Generator().manual_seed(seed)
    changed = _PRETEXT_TRANSFORMS[head](x, torch.ones(len(x), dtype=torch.bool), generator)
    return (
        np.concatenate([original, changed.numpy()]),
        np.concatenate([labels, np.ones(len(original), dtype=np.int64)]),
    )


def _fit_window_length(windows: np.ndarray, samples: int, source: str) -> np.ndarray:
    """10-s corpus windows as the model's windows: as they are, or each as its two 5-s halves."""
    length = windows.shape[2]
    if samples == length:
        return windows
    if length % samples == 0:
        pieces = np.split(windows, length // samples, axis=2)
        return np.concatenate(pieces)
    raise ConfigError(
        f"{source}: holds {length}-sample windows; a model of {samples}-sample windows "
        f"cannot be explained on them (use a labelled set of that window length)"
    )


def corpus_windows(settings: CorpusWindows, window_samples: int) -> np.ndarray:
    """Std-weighted windows of the subjects of one split (held-out: ``test``), float32."""
    manifest = corpus.read_manifest(settings.path)
    days = epochs.subject_days(manifest, settings.split)
    if not days:
        raise ConfigError(
            f"data.corpus: corpus {settings.path} has no subject with worn windows in split "
            f"{settings.split!r} (key data.corpus.split)"
        )
    windows = epochs.heldout_windows(
        settings.path, days, settings.max_subjects, settings.windows_per_subject, settings.seed
    )
    return _fit_window_length(windows.astype(np.float32), window_samples, f"corpus {settings.path}")


def labelled_windows(
    settings: LabelledWindows, window_seconds: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Windows, labels and label names of the labelled set's chosen subjects."""
    labelled = read_labelled_set(settings.path)
    if labelled.window_seconds != window_seconds:
        raise ConfigError(
            f"data.labelled.path: {settings.path} holds {labelled.window_seconds}-s windows, "
            f"the model takes {window_seconds}-s windows"
        )
    rows = np.arange(len(labelled.labels))
    if settings.subjects is not None:
        missing = sorted(set(settings.subjects) - set(labelled.subjects.tolist()))
        if missing:
            raise ConfigError(f"data.labelled.subjects: {missing} are not in {settings.path}")
        rows = np.flatnonzero(np.isin(labelled.subjects, settings.subjects))
    if settings.fold is not None:
        folds = protocol_folds(labelled.subjects, seed=settings.split_seed)
        if settings.fold >= len(folds):
            raise ConfigError(
                f"data.labelled.fold: {settings.fold} is out of range; {settings.path} has "
                f"{len(folds)} folds"
            )
        rows = folds[settings.fold].test
    if settings.max_windows is not None and len(rows) > settings.max_windows:
        rng = np.random.default_rng(settings.seed)
        rows = np.sort(rng.choice(rows, settings.max_windows, replace=False))
    return labelled.windows[rows], labelled.labels[rows], list(labelled.label_names)
