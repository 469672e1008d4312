"""Benchmark (issue 8 item 3): sampler memory as the corpus grows, and epoch planning time.

    python bench/memory.py [--sizes 4 40] [--subjects 100000] [--days 7] [--profile]

1. Sampler memory: one epoch of the Ray Data sampler over N and 10 x N subject-days,
   consumed by a loop that does nothing, while a thread polls the consuming (driver)
   process's resident memory and the Ray object store's bytes in use. The sampler's
   peak memory is the sum of the two peaks; the target is 10x corpus <= 1.2x that
   memory. The growth over the level just before each epoch is reported too: it is the
   sampler's read-ahead, a few blocks of 1,500 windows that come and go, so at these
   sizes its ratio is the noise of one or two blocks, not a trend.
2. Planning: ``epochs.subject_days`` + ``epochs.epoch_plan`` on an in-memory manifest of
   100,000 subjects x 7 days (target <= 10 s). When the CPU time misses the target (or
   with ``--profile``), the most expensive functions of a profiled run are listed.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import os
import pstats
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import hardware  # noqa: E402
from wearssl.data import corpus  # noqa: E402
from wearssl.data import sampler as epochs  # noqa: E402

MEMORY_RATIO_TARGET = 1.2
PLANNING_TARGET_S = 10.0
WINDOWS_PER_DAY = 8640


def sampler_memory(
    root: str,
    sizes: tuple[int, ...] = (4, 40),
    windows_per_subject: int = 1500,
    interval_s: float = 0.1,
) -> dict:
    """Peak memory of consuming one epoch over each number of subject-days in ``sizes``.

    A short warm-up epoch runs first so that imports and worker start-up are not
    counted as growth. The object store is not measured (``None``) where this Ray
    version lacks the query."""
    pipeline = common.load_bench("pipeline")
    store = common.object_store_probe()
    pipeline.consume_epoch(root, pipeline.epoch_items(root, sizes[0], epoch=1), windows_per_subject)
    rows = []
    for subject_days in sizes:
        plan = pipeline.epoch_items(root, subject_days)
        with (
            common.PeakSampler(hardware.rss_bytes, interval_s) as rss,
            common.PeakSampler(store or (lambda: 0), interval_s) as objects,
        ):
            epoch = pipeline.consume_epoch(root, plan, windows_per_subject)
        rows.append(
            {
                **epoch,
                "peak_bytes": rss.peak + objects.peak,
                "driver_rss_peak_bytes": rss.peak,
                "object_store_peak_bytes": objects.peak if store else None,
                "driver_rss_growth_bytes": rss.growth,
                "object_store_growth_bytes": objects.growth if store else None,
                "growth_bytes": rss.growth + objects.growth,
            }
        )
    ratio = rows[-1]["peak_bytes"] / rows[0]["peak_bytes"]
    return {
        "sizes": rows,
        "corpus_ratio": sizes[-1] / sizes[0],
        "memory_ratio": ratio,
        "object_store_measured": store is not None,
        "target_ratio": MEMORY_RATIO_TARGET,
        "met": ratio <= MEMORY_RATIO_TARGET,
    }


def synthetic_manifest(subjects: int, days: int) -> pa.Table:
    """A manifest of ``subjects`` x ``days`` full subject-days in the corpus schema, built
    column by column (no files behind it: planning reads only the manifest)."""
    ids = [f"p{index:016x}" for index in range(subjects)]
    dates = [
        (datetime.date(2024, 1, 1) + datetime.timedelta(days=d)).isoformat() for d in range(days)
    ]
    splits = [corpus.subject_split(subject) for subject in ids]
    rows = subjects * days
    subject_column = [subject for subject in ids for _ in range(days)]
    day_column = dates * subjects
    return pa.table(
        {
            "subject": subject_column,
            "day": day_column,
            "file": [
                corpus.day_file(s, d) for s, d in zip(subject_column, day_column, strict=True)
            ],
            "row_start": np.zeros(rows, np.int64),
            "row_end": np.full(rows, WINDOWS_PER_DAY, np.int64),
            "n_windows": np.full(rows, WINDOWS_PER_DAY, np.int64),
            "n_wear": np.full(rows, WINDOWS_PER_DAY, np.int64),
            "split": [split for split in splits for _ in range(days)],
            "recording": [f"synthetic {subject}" for subject in subject_column],
        },
        schema=corpus.MANIFEST_SCHEMA,
    )


def _plan(manifest: pa.Table) -> list[dict]:
    return epochs.epoch_plan(epochs.subject_days(manifest, "train"), seed=0, epoch=0)


def profile_lines(manifest: pa.Table, top: int = 10) -> list[str]:
    """The ``top`` functions by own time in a profiled planning run."""
    profiler = cProfile.Profile()
    profiler.runcall(_plan, manifest)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return [line for line in out.getvalue().splitlines() if line.strip()][-top - 1 :]


def planning_time(subjects: int = 100_000, days: int = 7, profile: bool = False) -> dict:
    """Wall and CPU seconds of ``subject_days`` + ``epoch_plan`` for one epoch, and the
    memory it takes (the planning state grows with the corpus, unlike the sampler's)."""
    manifest, built = hardware.timed_result(lambda: synthetic_manifest(subjects, days))
    with common.PeakSampler(hardware.rss_bytes) as rss:
        plan, timing = hardware.timed_result(lambda: _plan(manifest))
    result = {
        "subjects": subjects,
        "days": days,
        "manifest_rows": manifest.num_rows,
        "planned_subject_days": len(plan),
        "build_manifest_s": built.wall_s,
        "wall_s": timing.wall_s,
        "cpu_s": timing.cpu_s,
        "rss_growth_bytes": rss.growth,
        "target_s": PLANNING_TARGET_S,
        "met": timing.cpu_s <= PLANNING_TARGET_S,
        "profile": None,
    }
    if profile or not result["met"]:
        result["profile"] = profile_lines(manifest)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[4, 40])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    small, large = args.sizes
    with tempfile.TemporaryDirectory(prefix="wearssl-bench-") as tmp:
        base = common.synthetic_corpus(Path(tmp) / "synthetic", small)
        root = common.replicated_corpus(base, Path(tmp) / "replicated", -(-large // small))
        common.connect_ray(os.cpu_count())
        memory = sampler_memory(root, (small, large))
    for row in memory["sizes"]:
        store = row["object_store_growth_bytes"]
        print(
            f"{row['subject_days']:>5} subject-days: peak {row['peak_bytes'] / 2**20:.1f} MiB; "
            f"growth: driver RSS +{row['driver_rss_growth_bytes'] / 2**20:.1f} MiB, "
            f"object store +{'n/a' if store is None else f'{store / 2**20:.1f}'} MiB; "
            f"{row['windows_per_s']:,.0f} windows/s"
        )
    print(
        f"memory at {memory['corpus_ratio']:g}x corpus: {memory['memory_ratio']:.2f}x "
        f"(target <= {MEMORY_RATIO_TARGET})"
    )
    planning = planning_time(args.subjects, args.days, args.profile)
    print(
        f"planning {args.subjects:,} subjects x {args.days} days: {planning['wall_s']:.2f} s wall, "
        f"{planning['cpu_s']:.2f} s CPU (target <= {PLANNING_TARGET_S:g} s), "
        f"+{planning['rss_growth_bytes'] / 2**20:.0f} MiB"
    )
    if planning["profile"]:
        print("\n".join(planning["profile"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
