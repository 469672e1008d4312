"""Synthetic corpora: subject-days as corpus tables, written in parallel and merged into
the manifest, with a generator version mark that keeps other generators' days apart."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wearssl.data import corpus
from wearssl.data.corpus import CorpusInfo, WindowFormat
from wearssl.data.synthetic.recordings import synthetic_subject_id
from wearssl.data.synthetic.signal import synth_day
from wearssl.data.synthetic.subjects import (
    EPOCH_DAY,
    GENERATOR_MARK,
    GENERATOR_VERSION,
    MS_PER_DAY,
    NON_WEAR,
    RECORDING_PREFIX,
    WINDOWS_PER_DAY,
    check_seed,
    subject_traits,
)


def to_windows(xyz: np.ndarray, window_samples: int) -> np.ndarray:
    """``(n, 3)`` samples -> ``(n / L, 3, L)`` channel-major windows."""
    return np.ascontiguousarray(xyz.reshape(-1, window_samples, 3).transpose(0, 2, 1))


def synth_subject_day(
    subject_index: int,
    day_index: int,
    seed: int,
    window_format: WindowFormat = WindowFormat.FLOAT16,
    version: int = corpus.CORPUS_VERSION,
) -> tuple[str, str, pa.Table]:
    """One subject-day (day 0 = 2024-01-01) as a corpus table of 8,640 10-s windows at 30 Hz,
    in the layout of corpus ``version``.

    A window's wear flag is False when most of its samples are non-wear.
    """
    check_seed(seed, subject_index)
    if day_index < 0:
        raise ValueError(f"day_index must be >= 0, got {day_index}")
    day = EPOCH_DAY + timedelta(days=day_index)
    traits = subject_traits(subject_index, seed)
    xyz, activity = synth_day(subject_index, seed, day, corpus.SAMPLE_RATE_HZ, traits)
    non_wear_share = (activity.reshape(WINDOWS_PER_DAY, -1) == NON_WEAR).mean(axis=1)
    midnight_ms = (day - date(1970, 1, 1)).days * MS_PER_DAY
    times_ms = midnight_ms + np.arange(WINDOWS_PER_DAY, dtype=np.int64) * (
        corpus.WINDOW_SECONDS * 1000
    )
    subject = synthetic_subject_id(subject_index, seed)
    table = corpus.day_table(
        subject,
        day.isoformat(),
        times_ms,
        to_windows(xyz, corpus.WINDOW_SAMPLES),
        non_wear_share <= 0.5,
        window_format,
        version,
    )
    return subject, day.isoformat(), table


def _write_subject_day(
    out: str, subject_index: int, day_index: int, seed: int, info: CorpusInfo
) -> dict:
    """Make and write one subject-day; returns its manifest entry (runs in a worker process)."""
    _, _, table = synth_subject_day(
        subject_index, day_index, seed, WindowFormat(info.window_format), info.version
    )
    recording = f"{GENERATOR_MARK}seed={seed} subject={subject_index}"
    return corpus.write_day(out, table, recording)


def write_synthetic_corpus(
    out: str,
    n_subjects: int,
    n_days: int,
    seed: int = 0,
    window_format: WindowFormat = WindowFormat.FLOAT16,
    workers: int | None = None,
    progress: bool = True,
) -> pa.Table:
    """Write a synthetic corpus of ``n_subjects`` x ``n_days`` subject-days to ``out``.

    Subject-days are made in parallel worker processes (``workers`` defaults to the CPU
    count; 1 makes them in this process). Entries are merged into an existing manifest at
    ``out`` (same subject-day replaced), so the call can extend a corpus of the same format;
    new days are then written in the layout of the version that corpus records.
    Returns the manifest.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    if n_days < 1:
        raise ValueError(f"n_days must be >= 1, got {n_days}")
    check_seed(seed)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    info = corpus.info_to_write(out, CorpusInfo(window_format=WindowFormat(window_format).value))
    check_generator(out)

    tasks = [(s, d) for s in range(n_subjects) for d in range(n_days)]
    report_every = max(1, len(tasks) // 10)
    began = time.perf_counter()
    entries: list[dict] = []

    def done(entry: dict) -> None:
        entries.append(entry)
        if progress and (len(entries) % report_every == 0 or len(entries) == len(tasks)):
            rate = len(entries) / (time.perf_counter() - began)
            print(f"synth: {len(entries)}/{len(tasks)} subject-days ({rate:.2f}/s)", flush=True)

    if workers == 1 or len(tasks) == 1:
        for s, d in tasks:
            done(_write_subject_day(out, s, d, seed, info))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            futures = [pool.submit(_write_subject_day, out, s, d, seed, info) for s, d in tasks]
            for future in as_completed(futures):
                done(future.result())
    manifest = corpus.add_to_manifest(out, entries)
    corpus.write_info(out, info)
    return manifest


def check_generator(out: str) -> bool:
    """Whether ``out`` holds a corpus (False: none there yet); one holding synthetic days
    of another generator version is refused: they differ from what this generator makes
    for the same seed, so neither reusing nor extending it would give what its config
    describes."""
    try:
        manifest = corpus.read_manifest(out)
    except FileNotFoundError:
        return False
    for recording in pc.unique(manifest["recording"]).to_pylist():
        if recording.startswith(RECORDING_PREFIX) and not recording.startswith(GENERATOR_MARK):
            raise ValueError(
                f"{out} holds synthetic days of another generator ({recording!r}); this "
                f"wearssl makes generator version {GENERATOR_VERSION}: delete the folder to "
                "make the corpus anew, or write to another folder"
            )
    return True


def ensure_synthetic_corpus(
    out: str, n_subjects: int, n_days: int, seed: int, progress: bool = True
) -> str:
    """The synthetic corpus at ``out``, written unless one of this generator is there
    already (its size and seed are then the ones it was made with); returns ``out``."""
    if not check_generator(out):
        if progress:
            print(f"writing a synthetic corpus ({n_subjects} subjects x {n_days} days) to {out}")
        write_synthetic_corpus(out, n_subjects, n_days, seed, progress=progress)
    return out


def manifest_summary(manifest: pa.Table) -> dict[str, int]:
    """Counts that describe a corpus manifest: subjects, subject-days, windows, splits."""
    subjects = pc.unique(manifest["subject"]).to_pylist()
    test = {s for s in subjects if corpus.subject_split(s) == "test"}
    return {
        "subjects": len(subjects),
        "subject_days": manifest.num_rows,
        "windows": int(pc.sum(manifest["n_windows"]).as_py() or 0),
        "wear_windows": int(pc.sum(manifest["n_wear"]).as_py() or 0),
        "train_subjects": len(subjects) - len(test),
        "test_subjects": len(test),
    }
