"""Faithfulness by masking: remove the most relevant time points and watch the head's
confidence in its original prediction fall, against a random order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from wearssl.explain.network import confidence_in


def time_scores(relevance: Tensor, ranking: str) -> Tensor:
    """One score per time point ``(N, L)``: relevance summed over axes, or of its |.|."""
    if ranking == "positive":
        return relevance.sum(dim=1)
    if ranking == "absolute":
        return relevance.abs().sum(dim=1)
    raise ValueError(f"ranking must be 'positive' or 'absolute', got {ranking!r}")


def top_time_points(scores: Tensor, fraction: float) -> Tensor:
    """Boolean ``(N, L)``: the ``round(fraction * L)`` highest-scoring time points of each
    window (ties in time order). Masks of one score are nested as the fraction grows."""
    n_masked = round(fraction * scores.shape[1])
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :n_masked]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)


def _interpolated(windows: Tensor, kept: Tensor) -> Tensor:
    """Every sample linearly interpolated in time from the nearest kept samples on either
    side (the nearest one where there is only one side); windows without a kept sample
    get their per-axis mean."""
    length = windows.shape[-1]
    time = torch.arange(length, device=windows.device).expand_as(kept)
    before = torch.where(kept, time, -1).cummax(dim=1).values
    after = torch.where(kept, time, length).flip(1).cummin(dim=1).values.flip(1)
    low = torch.where(before >= 0, before, after).clamp(0, length - 1)
    high = torch.where(after < length, after, before).clamp(0, length - 1)
    weight = ((time - low) / (high - low).clamp(min=1)).clamp(0, 1).to(windows.dtype)
    gather = lambda index: windows.gather(2, index[:, None, :].expand_as(windows))  # noqa: E731
    filled = torch.lerp(gather(low), gather(high), weight[:, None, :])
    none_kept = ~kept.any(dim=1)
    return torch.where(
        none_kept[:, None, None], windows.mean(dim=2, keepdim=True).expand_as(windows), filled
    )


def mask_time_points(windows: Tensor, masked: Tensor, fill: str) -> Tensor:
    """``windows`` with the ``masked`` time points ``(N, L)`` removed on all axes: set to
    the window's per-axis mean (of the original window), or interpolated linearly from
    the kept samples. Kept samples are returned unchanged; the input is not modified."""
    if masked.shape != (windows.shape[0], windows.shape[2]):
        raise ValueError(
            f"mask shape {tuple(masked.shape)} does not fit windows {tuple(windows.shape)}"
        )
    if fill == "mean":
        filled = windows.mean(dim=2, keepdim=True).expand_as(windows)
    elif fill == "interpolate":
        filled = _interpolated(windows, ~masked)
    else:
        raise ValueError(f"fill must be 'mean' or 'interpolate', got {fill!r}")
    return torch.where(masked[:, None, :], filled, windows)


def masking_curves(
    network: nn.Module,
    windows: Tensor,
    predicted: Tensor,
    scores: Tensor,
    fractions: list[float],
    fill: str,
) -> Tensor:
    """Confidence ``(N, K)`` in each window's original prediction with the top
    ``fractions[k]`` of its time points by ``scores`` removed."""
    columns = [
        confidence_in(
            network, mask_time_points(windows, top_time_points(scores, f), fill), predicted
        )
        for f in fractions
    ]
    return torch.stack(columns, dim=1)


def area_between(fractions: np.ndarray, random: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Trapezoid area between the random and relevance-ordered curves ``(..., K)`` over
    the fractions, divided by their span: the mean extra drop in confidence."""
    fractions = np.asarray(fractions, dtype=np.float64)
    gap = np.asarray(random, dtype=np.float64) - np.asarray(ordered, dtype=np.float64)
    widths = np.diff(fractions)
    area = ((gap[..., 1:] + gap[..., :-1]) / 2 * widths).sum(axis=-1)
    return area / (fractions[-1] - fractions[0])
