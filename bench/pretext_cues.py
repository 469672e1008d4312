"""Benchmark (issue 3): which data carry cues that harnet picks up for each pretext task?

    python bench/pretext_cues.py [--windows N] [--batch B] [--threads T] [--labelled DIR]
                                 [--sources mix walking household]

Trains a fresh harnet5 on arrow of time, permutation and time warp together
(``pretrain.pretext_loss``, orientation augmentation off) in a bare PyTorch loop, one
data source at a time, and prints each task's accuracy on held-out subjects every tenth
of the budget. The sources: the synthetic generator's std-weighted free-living mix, its
walking and its household windows alone, and with ``--labelled`` a labelled set of 5-s
windows (e.g. ``sets/geotec-watch`` from ``jobs/ingest.py``), split by subject. A source
whose tasks stay at 0.5 where another's rise tells a data limit from a wiring fault.

About 15 minutes on one core of a laptop with the defaults.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import torch

from wearssl.data import corpus, synthetic
from wearssl.data.labelled_set import read_labelled_set
from wearssl.data.weighted_sampling import sample_window_indices
from wearssl.models.harnet import harnet
from wearssl.pretrain.step import pretext_loss

TASKS = ["aot", "permute", "time_warp"]
WINDOW_SECONDS = 5
TRAIN_SUBJECTS = range(16)
HELDOUT_SUBJECTS = range(100, 104)
HELDOUT_WINDOWS = 2000


def synthetic_windows(subjects: range, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic day per subject as 5-s windows ``(n, 3, 150)`` and each window's
    activity (NON_WEAR unless one activity covers the whole window)."""
    samples = WINDOW_SECONDS * corpus.SAMPLE_RATE_HZ
    windows, activities = [], []
    for subject in subjects:
        recording = synthetic.synth_recording(subject, seed, days=1)
        windows.append(recording.xyz.reshape(-1, samples, 3).transpose(0, 2, 1))
        per_window = recording.activity.reshape(-1, samples)
        pure = (per_window == per_window[:, :1]).all(axis=1)
        activities.append(np.where(pure, per_window[:, 0], synthetic.NON_WEAR))
    return np.concatenate(windows), np.concatenate(activities)


def std_weighted(windows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` windows drawn as the pre-training sampler draws them."""
    chosen = sample_window_indices(corpus.window_std(windows), k, np.random.default_rng(seed))
    return windows[chosen]


SYNTHETIC_SOURCES = ("mix", "walking", "household")


def synthetic_sources(names: list[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """The synthetic sources among ``names`` (see ``SYNTHETIC_SOURCES``), in that order."""
    train, train_activity = synthetic_windows(TRAIN_SUBJECTS)
    heldout, heldout_activity = synthetic_windows(HELDOUT_SUBJECTS)
    if "mix" in names:
        yield (
            "synthetic mix, std-weighted",
            std_weighted(train, 20_000, 0),
            std_weighted(heldout, HELDOUT_WINDOWS, 1),
        )
    for activity in (synthetic.WALKING, synthetic.HOUSEHOLD):
        if synthetic.ACTIVITIES[activity] not in names:
            continue
        yield (
            f"synthetic {synthetic.ACTIVITIES[activity]} only",
            train[train_activity == activity],
            heldout[heldout_activity == activity][:HELDOUT_WINDOWS],
        )


def labelled_source(path: str) -> tuple[str, np.ndarray, np.ndarray]:
    """A labelled set's windows, the first quarter of its subjects (sorted) held out."""
    labelled = read_labelled_set(path)
    if labelled.window_seconds != WINDOW_SECONDS:
        raise SystemExit(f"{path}: {labelled.window_seconds}-s windows, this needs 5-s windows")
    subjects = np.unique(labelled.subjects)
    heldout = np.isin(labelled.subjects, subjects[: max(1, len(subjects) // 4)])
    return labelled.name, labelled.windows[~heldout], labelled.windows[heldout]


def heldout_accuracy(model: torch.nn.Module, windows: torch.Tensor) -> list[float]:
    """Each task's accuracy on ``windows``, transformed with a fixed seed."""
    model.eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        _, hits = pretext_loss(model, windows, TASKS, generator, False, False)
    model.train()
    return [round(h / len(windows), 3) for h in hits.tolist()]


def train(
    name: str, train_windows: np.ndarray, heldout: np.ndarray, args: argparse.Namespace
) -> None:
    """Train a fresh harnet5 for ``args.windows`` windows; print a line every tenth."""
    torch.manual_seed(0)
    model = harnet(WINDOW_SECONDS)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    pool = torch.from_numpy(np.ascontiguousarray(train_windows, np.float32))
    heldout_tensor = torch.from_numpy(np.ascontiguousarray(heldout, np.float32))
    steps = max(1, args.windows // args.batch)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = pool[torch.randint(0, len(pool), (args.batch,), generator=generator)]
        loss, _ = pretext_loss(model, batch, TASKS, generator, False, False)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % max(1, steps // 10) == 0 or step == steps:
            accuracy = heldout_accuracy(model, heldout_tensor)
            rate = step * args.batch / (time.perf_counter() - started)
            scores = "  ".join(f"{t} {a:.3f}" for t, a in zip(TASKS, accuracy, strict=True))
            seen = step * args.batch
            print(f"{name:32s} {seen:>7,} windows  {scores}  ({rate:.0f} w/s, checks included)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=15_000, help="training windows a source")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--labelled", help="a labelled set of 5-s windows to compare with")
    parser.add_argument(
        "--sources",
        nargs="+",
        choices=SYNTHETIC_SOURCES,
        default=list(SYNTHETIC_SOURCES),
        help="which synthetic sources to train on",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sources = list(synthetic_sources(args.sources))
    if args.labelled:
        sources.insert(0, labelled_source(args.labelled))
    for name, train_windows, heldout in sources:
        print(f"{name}: {len(train_windows):,} training windows, {len(heldout):,} held out")
        train(name, train_windows, heldout, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
