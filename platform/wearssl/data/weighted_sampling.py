"""Std-weighted window sampling over one subject-day.

Still periods (sleep, a watch on a table) carry no information for the pretext tasks:
a reversed still window looks like the original. The paper therefore draws windows
without replacement with probability proportional to their standard deviation.
"""

from __future__ import annotations

import numpy as np


def sample_window_indices(
    std: np.ndarray,
    k: int,
    rng: np.random.Generator,
    weighted: bool = True,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of ``k`` windows drawn without replacement, with probability ∝ ``std``.

    Successive weighted sampling without replacement is done in one vectorised step with
    exponential keys (``-log(u) / w``, smallest k win), which has exactly the distribution
    of drawing one window at a time and renormalising. Windows with zero weight are only
    drawn, uniformly, when fewer than ``k`` windows have positive weight. ``eligible``
    (e.g. the wear flag) excludes windows entirely. With ``weighted=False`` the draw is
    uniform. Returns at most ``min(k, n_eligible)`` indices, in draw order.
    """
    std = np.asarray(std, dtype=np.float64)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if std.ndim != 1:
        raise ValueError(f"std must be one value per window, got shape {std.shape}")
    if np.any(~np.isfinite(std)) or np.any(std < 0):
        raise ValueError("std must be finite and non-negative")
    if eligible is not None and len(eligible) != len(std):
        raise ValueError(f"eligible has {len(eligible)} flags for {len(std)} windows")
    candidates = np.arange(len(std)) if eligible is None else np.flatnonzero(eligible)
    weights = std[candidates] if weighted else np.ones(len(candidates))
    u = rng.random(len(candidates))
    with np.errstate(divide="ignore"):
        keys = np.where(weights > 0, -np.log1p(-u) / weights, np.inf)
    # zero-weight windows are ordered among themselves by u, after every positive one
    order = np.lexsort((u, keys))
    return candidates[order[: min(k, len(candidates))]]
