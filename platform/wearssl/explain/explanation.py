"""Explaining windows in chunks, one Ray task per chunk: relevance, masking curves,
and their areas per method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray
import torch
from torch import nn

from wearssl.config.explain import (
    Attribution,
    Masking,
)
from wearssl.explain.masking import area_between, masking_curves, time_scores
from wearssl.explain.network import prediction_confidence
from wearssl.explain.relevance import attribute

RANDOM_ORDER = "random"


@dataclass
class Explanation:
    """Attribution and masking results for a set of windows (one head)."""

    fractions: np.ndarray  # (K,)
    predicted: np.ndarray  # (N,) the head's prediction
    confidence: np.ndarray  # (N,) its softmax probability
    explained_output: np.ndarray  # (N,) the predicted class's margin, what is explained
    relevance: dict[str, np.ndarray]  # method -> (N, 3, L)
    masked_confidence: dict[str, np.ndarray]  # method or "random" -> (N, K)

    @property
    def methods(self) -> list[str]:
        return list(self.relevance)

    def curve(self, order: str) -> np.ndarray:
        """Mean confidence over windows ``(K,)`` for a method's order or ``"random"``."""
        return self.masked_confidence[order].mean(axis=0)

    def window_areas(self, method: str) -> np.ndarray:
        """Area between curves per window ``(N,)``; its mean is :meth:`area`."""
        return area_between(
            self.fractions, self.masked_confidence[RANDOM_ORDER], self.masked_confidence[method]
        )

    def area(self, method: str) -> float:
        return float(self.window_areas(method).mean())

    def relevance_over_output(self, method: str) -> np.ndarray:
        """Summed relevance over the explained output, per window (1 when conserved)."""
        return self.relevance[method].sum(axis=(1, 2)) / self.explained_output

    @staticmethod
    def concatenate(parts: list[Explanation]) -> Explanation:
        first = parts[0]
        return Explanation(
            fractions=first.fractions,
            predicted=np.concatenate([p.predicted for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            explained_output=np.concatenate([p.explained_output for p in parts]),
            relevance={m: np.concatenate([p.relevance[m] for p in parts]) for m in first.relevance},
            masked_confidence={
                o: np.concatenate([p.masked_confidence[o] for p in parts])
                for o in first.masked_confidence
            },
        )


def explain_chunk(
    network: nn.Module,
    windows: np.ndarray,
    random_scores: np.ndarray,
    attribution: Attribution,
    masking: Masking,
) -> Explanation:
    """Explain ``windows`` ``(n, 3, L)`` in this process: every method's relevance, and
    the masking curves of every method's order and of ``random_scores`` ``(n, L)``."""
    x = torch.tensor(windows, dtype=torch.float32)  # a copy: Ray hands over read-only arrays
    with torch.no_grad():
        margins = network(x)
    predicted = margins.argmax(dim=1)
    confidence = prediction_confidence(margins).gather(1, predicted[:, None])[:, 0]
    curves = {
        RANDOM_ORDER: masking_curves(
            network, x, predicted, torch.tensor(random_scores), masking.fractions, masking.fill
        )
    }
    relevance = {}
    for method in attribution.methods:
        relevance[method] = attribute(network, x, predicted, method, attribution)
        scores = time_scores(relevance[method], masking.ranking)
        curves[method] = masking_curves(
            network, x, predicted, scores, masking.fractions, masking.fill
        )
    return Explanation(
        fractions=np.asarray(masking.fractions, dtype=np.float64),
        predicted=predicted.numpy(),
        confidence=confidence.numpy(),
        explained_output=margins.gather(1, predicted[:, None])[:, 0].numpy(),
        relevance={m: r.numpy() for m, r in relevance.items()},
        masked_confidence={o: c.numpy() for o, c in curves.items()},
    )


@ray.remote
def _explain_chunk_task(
    network: nn.Module,
    windows: np.ndarray,
    random_scores: np.ndarray,
    attribution: Attribution,
    masking: Masking,
    threads: int,
) -> Explanation:
    torch.set_num_threads(threads)
    return explain_chunk(network, windows, random_scores, attribution, masking)


def random_time_scores(n_windows: int, length: int, seed: int) -> np.ndarray:
    """Scores ``(n, L)`` whose ranking is a uniformly random order of each window's time
    points; drawn once for all windows, so results do not depend on the chunking."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n_windows, length, generator=generator).numpy()


def explain_windows(
    network: nn.Module,
    windows: np.ndarray,
    attribution: Attribution,
    masking: Masking,
    chunk_size: int = 32,
    cpus_per_task: float = 1.0,
) -> Explanation:
    """Explain ``windows`` ``(N, 3, L)`` on the connected Ray cluster, one task per chunk
    of ``chunk_size`` windows, each holding ``cpus_per_task`` CPUs."""
    if windows.ndim != 3 or len(windows) == 0:
        raise ValueError(f"windows must be a non-empty (N, 3, L) array, got {windows.shape}")
    scores = random_time_scores(len(windows), windows.shape[2], masking.seed)
    network_ref = ray.put(network)
    task = _explain_chunk_task.options(num_cpus=cpus_per_task)
    threads = max(1, int(cpus_per_task))
    refs = [
        task.remote(
            network_ref,
            windows[start : start + chunk_size],
            scores[start : start + chunk_size],
            attribution,
            masking,
            threads,
        )
        for start in range(0, len(windows), chunk_size)
    ]
    return Explanation.concatenate(ray.get(refs))
