"""Per-epoch streaming sampler on Ray Data, and the fixed held-out evaluation set.

An epoch visits every training subject once, in a fresh order seeded by the epoch, with
one random day each. Each subject-day is one Ray Data task that reads only that day's
file and returns its std-weighted sample of windows, so memory stays bounded however
large the corpus is. The plan is a pure function of (manifest, seed, epoch): a resumed
run redraws exactly the epoch it stopped in.

Bad data never reaches training silently: a window holding NaN or infinite samples is
skipped with a :class:`NonFiniteWindowsWarning` naming its file and the count, and a day
file that cannot be read or holds a non-finite ``std`` is a :class:`corpus.CorpusError`
naming the file and subject (``docs/reliability.md``).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray

from wearssl.data import corpus
from wearssl.data.weighted_sampling import sample_window_indices

log = logging.getLogger(__name__)


class NonFiniteWindowsWarning(UserWarning):
    """A subject-day holds windows with NaN or infinite samples; they are never drawn."""


@dataclass(frozen=True)
class SubjectDay:
    subject: str
    day: str
    file: str
    row_start: int
    row_end: int
    n_wear: int = 0

    @property
    def drawable(self) -> int:
        """Worn windows this day can give at most (its rows, once a subset cut them)."""
        return min(self.n_wear, self.row_end - self.row_start)


def _stable_seed(*parts: object) -> int:
    """A seed from ``parts`` that is the same in every process; 63 bits, so that it fits
    Arrow's int64 when a plan goes through Ray Data."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def subject_days(manifest: pa.Table, split: str) -> dict[str, list[SubjectDay]]:
    """Subject -> its days that hold any worn window, for one split, in sorted order."""
    rows = manifest.filter(
        pa.compute.and_(
            pa.compute.equal(manifest["split"], split), pa.compute.greater(manifest["n_wear"], 0)
        )
    ).sort_by([("subject", "ascending"), ("day", "ascending")])
    days: dict[str, list[SubjectDay]] = {}
    for subject, day, file, start, end, n_wear in zip(
        rows["subject"].to_pylist(),
        rows["day"].to_pylist(),
        rows["file"].to_pylist(),
        rows["row_start"].to_pylist(),
        rows["row_end"].to_pylist(),
        rows["n_wear"].to_pylist(),
        strict=True,
    ):
        days.setdefault(subject, []).append(SubjectDay(subject, day, file, start, end, n_wear))
    return days


def subset(
    days: dict[str, list[SubjectDay]], subjects: int | None, data_ratio: float, seed: int
) -> dict[str, list[SubjectDay]]:
    """Keep ``subjects`` subjects and the first ``data_ratio`` of each day's windows.

    Subjects are ranked by a seeded hash, so for one seed a smaller subset is always
    contained in a larger one (the 100 subjects are among the 1,000)."""
    ranked = sorted(days, key=lambda subject: _stable_seed("subset", seed, subject))
    kept = ranked if subjects is None else ranked[:subjects]
    return {
        subject: [
            SubjectDay(
                d.subject,
                d.day,
                d.file,
                d.row_start,
                d.row_start + max(1, round((d.row_end - d.row_start) * data_ratio)),
                d.n_wear,
            )
            for d in days[subject]
        ]
        for subject in sorted(kept)
    }


def epoch_plan(days: dict[str, list[SubjectDay]], seed: int, epoch: int) -> list[dict]:
    """The epoch's read tasks: every subject once, shuffled, one random day each, own seed."""
    rng = np.random.default_rng(_stable_seed("epoch", seed, epoch))
    subjects = sorted(days)
    order = rng.permutation(len(subjects))
    plan = []
    for position, index in enumerate(order):
        options = days[subjects[index]]
        chosen = options[int(rng.integers(len(options)))]
        plan.append(
            {
                "subject": chosen.subject,
                "file": chosen.file,
                "row_start": chosen.row_start,
                "row_end": chosen.row_end,
                "seed": _stable_seed("draw", seed, epoch, position),
            }
        )
    return plan


def max_epoch_windows(days: dict[str, list[SubjectDay]], windows_per_subject: int) -> int:
    """The most windows one epoch can draw: each subject gives at most
    ``windows_per_subject`` from its largest day."""
    return sum(
        min(windows_per_subject, max(d.drawable for d in subject_days))
        for subject_days in days.values()
    )


DRAW_COLUMNS = ["window", "std", "wear"]


def _read_draw_columns(root: str, item: dict):
    """The day's draw columns; an unreadable file is a :class:`corpus.CorpusError` naming it."""
    try:
        return corpus.read_day(root, item, columns=DRAW_COLUMNS)
    except (OSError, pa.ArrowException) as err:
        raise corpus.CorpusError(
            f"corpus day file {corpus.join(root, item['file'])} (subject "
            f"{item.get('subject', '?')}) cannot be read: {err}"
        ) from None


def draw_windows(root: str, item: dict, windows_per_subject: int, weighted: bool) -> np.ndarray:
    """Read one subject-day and return its sampled windows, ``(k, 3, L)`` in storage
    precision (float16 for int16 milli-g). Reads only the columns the draw needs and
    decodes only the sampled windows.

    A window holding a NaN or infinite sample is never returned: it is excluded and the
    draw repeated among the rest, with a :class:`NonFiniteWindowsWarning` naming the file
    and the count. A non-finite ``std`` (written by ingest, so a corrupt corpus) is a
    :class:`corpus.CorpusError` naming the file and subject."""
    table = _read_draw_columns(root, item)
    eligible = table["wear"].to_numpy(zero_copy_only=False).astype(bool)
    std = table["std"].to_numpy(zero_copy_only=False)
    if not np.all(np.isfinite(std)):
        raise corpus.CorpusError(
            f"corpus day file {corpus.join(root, item['file'])} (subject "
            f"{item.get('subject', '?')}): {int(np.sum(~np.isfinite(std)))} windows have a "
            "non-finite std; the corpus is corrupt, ingest that day again"
        )
    skipped = 0
    while True:
        rng = np.random.default_rng(item["seed"])
        chosen = sample_window_indices(
            std, windows_per_subject, rng, weighted=weighted, eligible=eligible
        )
        windows = corpus.decode_windows(table, chosen, dtype=None)
        finite = np.isfinite(windows).all(axis=(1, 2))
        if finite.all():
            break
        eligible[chosen[~finite]] = False
        skipped += int(np.sum(~finite))
    if skipped:
        message = (
            f"corpus day file {corpus.join(root, item['file'])} (subject "
            f"{item.get('subject', '?')}): {skipped} windows with NaN or infinite samples skipped"
        )
        log.warning(message)
        warnings.warn(message, NonFiniteWindowsWarning, stacklevel=2)
    return windows


def _draw_batch(
    batch: dict[str, np.ndarray], root: str, windows_per_subject: int, weighted: bool
) -> dict[str, np.ndarray]:
    """Ray Data batch function: planned subject-days -> their sampled windows, each row
    tagged with the node that read it (so a run can report where its I/O happened)."""
    drawn = [
        draw_windows(
            root,
            {
                "subject": str(batch["subject"][i]),
                "file": str(batch["file"][i]),
                "row_start": int(batch["row_start"][i]),
                "row_end": int(batch["row_end"][i]),
                "seed": int(batch["seed"][i]),
            },
            windows_per_subject,
            weighted,
        )
        for i in range(len(batch["file"]))
    ]
    windows = np.concatenate(drawn)
    node = ray.get_runtime_context().get_node_id()
    return {"window": windows, "node": np.full(len(windows), node, dtype=object)}


def epoch_dataset(
    root: str,
    plan: list[dict],
    windows_per_subject: int,
    weighted: bool,
    read_cpus: float = 1.0,
) -> ray.data.Dataset:
    """The epoch's windows as a streaming Ray Dataset: one read task per subject-day."""
    items = ray.data.from_items(plan, override_num_blocks=max(1, len(plan)))
    return items.map_batches(
        _draw_batch,
        fn_kwargs={"root": root, "windows_per_subject": windows_per_subject, "weighted": weighted},
        batch_size=1,
        batch_format="numpy",
        num_cpus=read_cpus,
    )


def heldout_windows(
    root: str,
    days: dict[str, list[SubjectDay]],
    max_subjects: int,
    windows_per_subject: int,
    seed: int,
) -> np.ndarray:
    """A fixed evaluation set from held-out subjects: one day each, std-weighted windows.

    Always std-weighted, so runs with and without weighted training sampling are
    compared on the same windows."""
    plan = epoch_plan({s: days[s] for s in sorted(days)[:max_subjects]}, seed, epoch=-1)
    if not plan:
        return np.zeros((0, corpus.CHANNELS, corpus.WINDOW_SAMPLES), np.float16)
    return np.concatenate([draw_windows(root, item, windows_per_subject, True) for item in plan])
