"""Helpers shared by the Ray benchmark scripts: memory probes, Ray, corpora.

Timing, devices and machine facts are in :mod:`hardware`, which needs no Ray.

bench/ is not a package: a script puts this folder on ``sys.path`` and imports
``common``; sibling scripts are loaded by path with :func:`load_bench`, under module
names that cannot clash with installed packages.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import ray

from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.data.synthetic import ensure_synthetic_corpus
from wearssl.infra import ray_runtime as runtime

Result = TypeVar("Result")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def load_bench(name: str) -> ModuleType:
    """The sibling script ``bench/<name>.py`` as a module (loaded once)."""
    key = f"wearssl_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = BENCH_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load benchmark module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def object_store_probe() -> Callable[[], int] | None:
    """A function returning the local Ray node's object-store bytes in use, or None where
    this Ray version does not offer the (private) query; call after Ray is initialised."""
    try:
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        state = get_state_from_address(ray.get_runtime_context().gcs_address)

        def used() -> int:
            return int(get_memory_info_reply(state).store_stats.object_store_bytes_used)

        used()
    except Exception:  # noqa: BLE001 - private API: absent or changed means "not measured"
        return None
    return used


class PeakSampler:
    """Polls ``read()`` every ``interval_s`` seconds on a thread while the block runs and
    keeps the largest value (and the value just before the block started)."""

    def __init__(self, read: Callable[[], int], interval_s: float = 0.1) -> None:
        self._read = read
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.baseline = 0
        self.peak = 0

    def _poll(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self._read())

    def __enter__(self) -> PeakSampler:
        self.baseline = self.peak = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def connect_ray(num_cpus: int | None = None) -> dict:
    """Start (or join) Ray with quiet Ray Data progress output; returns cluster resources."""
    for key, value in runtime.QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return runtime.connect(num_cpus=num_cpus)


def synthetic_corpus(out: Path, subjects: int, days: int = 1, seed: int = 0) -> str:
    """A synthetic corpus at ``out`` (written once; reused when this generator made it)."""
    return ensure_synthetic_corpus(str(out), subjects, days, seed, progress=False)


def replicated_corpus(source: str, out: Path, copies: int) -> str:
    """A corpus of ``copies`` x the subjects of the local corpus ``source``, each copy a
    new subject whose day files are hard links to (or copies of) the source files.

    Sampling cost and memory depend on how many subject-days an epoch reads, not on
    what the windows hold, so this makes a large corpus in seconds instead of hours of
    synthesis. Splits follow the new ids' hashes, as in any corpus."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    manifest = corpus.read_manifest(source)
    entries = []
    for copy in range(copies):
        for row in manifest.to_pylist():
            subject = f"{row['subject']}r{copy:03d}"
            file = corpus.day_file(subject, row["day"])
            target = out / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                _link_or_copy(Path(source) / row["file"], target)
            entries.append(
                corpus.manifest_entry(
                    subject, row["day"], file, row["n_windows"], row["n_wear"], row["recording"]
                )
            )
    corpus.write_manifest(out, corpus.manifest_table(entries))
    corpus.write_info(out, corpus.read_info(source))
    return str(out)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def all_subject_days(root: str) -> dict:
    """Subject -> worn days over both splits (a sampler benchmark reads every subject)."""
    manifest = corpus.read_manifest(root)
    return {**epochs.subject_days(manifest, "train"), **epochs.subject_days(manifest, "test")}
