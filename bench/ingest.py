"""Ingest cost of one long recording, stage by stage, and what 100,000 would take.

A synthetic recording (``wearssl.data.synthetic``) of ``days`` days at ``rate`` Hz is written
as ``.npy`` (no ``.cwa`` writer exists), then ingested by
``wearssl.data.ingest.recording_task.ingest_one`` in a fresh subprocess, i.e. exactly what
one Ray task does, so that the subprocess's peak resident memory is the task's. Prints
seconds per recording-day for each stage (read, calibrate/non-wear, resample and window,
write), the peak memory, the memory the ingest would reserve for such a task, and the
capacity arithmetic for 100,000 recordings of the same length.

    python bench/ingest.py [--days 7] [--rate 100]

``measure(days, rate) -> dict`` is importable by path for a larger harness.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

STAGES = ("read", "calibrate_nonwear", "resample_window", "write")
UK_BIOBANK_RECORDINGS = 100_000
TARGET_SECONDS_PER_DAY = 10.0
HOURS_PER_DAY = 24

_CHILD = """
import json, resource, sys, time
from wearssl.data import corpus
from wearssl.data import ingest
from wearssl.data.devices import ReadOptions
from wearssl.data.ingest.recording_task import ingest_one
path, out, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
options = ingest.IngestOptions(read=ReadOptions(sample_rate_hz=rate, start="2024-01-01T00:00:00"))
corpus.write_info(out, corpus.CorpusInfo())
summary = ingest_one(path, "pbench000000000000", out, options, frozenset(), {}, {})
summary["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(summary))
"""


def _write_recording(folder: str, days: float, rate: float) -> tuple[str, float]:
    from wearssl.data.synthetic import synth_recording

    began = time.perf_counter()
    recording = synth_recording(0, seed=0, days=days, sample_rate_hz=rate)
    path = os.path.join(folder, "bench.npy")
    np.save(path, recording.xyz)
    return path, time.perf_counter() - began


def _ingest_in_subprocess(path: str, out: str, rate: float) -> dict:
    env = dict(os.environ)
    env.setdefault("WEARSSL_PSEUDONYM_KEY", "bench")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, path, out, str(rate)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ingest subprocess failed:\n{result.stderr}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    if summary["status"] != "ingested":
        raise RuntimeError(f"bench recording was not ingested: {summary['reason']}")
    return summary


def capacity(seconds_per_day: float, days_per_recording: float) -> dict:
    """Core-hours for 100,000 recordings and the cores that finish them in 24 h."""
    core_hours = UK_BIOBANK_RECORDINGS * days_per_recording * seconds_per_day / 3600
    return {"core_hours": core_hours, "cores_for_24h": core_hours / HOURS_PER_DAY}


def measure(days: float = 7, rate: float = 100) -> dict:
    """Ingest one synthetic ``days``-day recording at ``rate`` Hz; stage seconds per
    recording-day, peak memory, and capacity figures for 100,000 recordings."""
    from wearssl.data.ingest.inputs import estimated_task_memory

    with tempfile.TemporaryDirectory(prefix="wearssl-bench-") as tmp:
        path, synth_seconds = _write_recording(tmp, days, rate)
        file_bytes = os.path.getsize(path)
        reserved = estimated_task_memory([path])
        summary = _ingest_in_subprocess(path, os.path.join(tmp, "corpus"), rate)
    per_day = {stage: summary["timings"][stage] / days for stage in STAGES}
    after_read = sum(per_day[s] for s in STAGES[1:])
    total = sum(per_day.values())
    return {
        "days": days,
        "rate_hz": rate,
        "samples": int(round(days * 86_400 * rate)),
        "file_bytes": file_bytes,
        "synthesis_seconds": synth_seconds,
        "windows": summary["windows"],
        "seconds_per_day": per_day,
        "after_read_seconds_per_day": after_read,
        "total_seconds_per_day": total,
        "meets_target": after_read < TARGET_SECONDS_PER_DAY,
        "peak_rss_bytes": summary["peak_rss_bytes"],
        "reserved_task_memory_bytes": reserved,
        "capacity_after_read": capacity(after_read, days),
        "capacity_total": capacity(total, days),
    }


def report(result: dict) -> str:
    gib = 1 << 30
    lines = [
        f"synthetic recording: {result['days']} days at {result['rate_hz']} Hz, "
        f"{result['samples']:,} samples, .npy {result['file_bytes'] / gib:.2f} GiB, "
        f"{result['windows']:,} windows",
        "seconds per recording-day (one core):",
    ]
    lines += [f"  {stage:<18} {result['seconds_per_day'][stage]:7.2f}" for stage in STAGES]
    lines += [
        f"  {'after read':<18} {result['after_read_seconds_per_day']:7.2f}  "
        f"(target < {TARGET_SECONDS_PER_DAY:.0f}: {'met' if result['meets_target'] else 'MISSED'})",
        f"  {'total':<18} {result['total_seconds_per_day']:7.2f}",
        f"peak memory of the task: {result['peak_rss_bytes'] / gib:.2f} GiB "
        f"(ingest reserves {result['reserved_task_memory_bytes'] / gib:.2f} GiB for it)",
        f"{UK_BIOBANK_RECORDINGS:,} recordings of {result['days']} days:",
    ]
    for name, key in (
        ("stages after reading", "capacity_after_read"),
        ("all stages", "capacity_total"),
    ):
        cap = result[key]
        memory = cap["cores_for_24h"] * result["peak_rss_bytes"] / gib
        lines.append(
            f"  {name:<21} {cap['core_hours']:9,.0f} core-hours = "
            f"{cap['cores_for_24h']:6,.0f} cores for 24 h ({memory:,.0f} GiB memory at that peak)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--rate", type=float, default=100)
    args = parser.parse_args()
    print(report(measure(args.days, args.rate)))


if __name__ == "__main__":
    main()
