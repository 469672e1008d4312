"""Helpers shared by the benchmark scripts: timing, machine facts, memory probes, corpora.

bench/ is not a package: a script puts this folder on ``sys.path`` and imports
``common``; sibling scripts are loaded by path with :func:`load_bench`, under module
names that cannot clash with installed packages.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np
import psutil
import pyarrow
import ray
import torch

from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.data.synthetic import ensure_synthetic_corpus
from wearssl.infra import ray_runtime as runtime
from wearssl.infra import tracking

Result = TypeVar("Result")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

FLOP_PER_WINDOW = 1.72e9
"""Forward + backward of harnet10 for one 10-s window (DESIGN §2)."""
PAPER_WINDOWS = 2.4e9
"""Windows the paper's ~20-epoch pre-training drew."""


class DeviceUnavailable(ValueError):
    """The benchmark was asked for a device this machine does not have."""


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


def require_device(device: str) -> torch.device:
    """``device`` as a torch device, or a clear error when this machine lacks it."""
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise DeviceUnavailable(f"--device {device!r} is not a torch device: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"--device {device} asked for a GPU, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
            "run on a GPU machine or use --device cpu"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise DeviceUnavailable(f"--device {device!r}: only cpu and cuda are benchmarked")
    return resolved


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds and this process's CPU seconds (all threads) of one timed run."""

    wall_s: float
    cpu_s: float

    def rates(self, items: float) -> dict[str, float]:
        """Items per second of wall-clock time and per CPU-second (= per busy core).

        On a shared machine the CPU-second figure is the steadier one: it leaves out
        the time the process waited for a core."""
        return {"per_s": items / self.wall_s, "per_cpu_s": items / max(self.cpu_s, 1e-9)}


def timed(run: Callable[[], object], device: torch.device | None = None) -> Timing:
    """Time one call of ``run`` (synchronising ``device`` at the end)."""
    return timed_result(run, device)[1]


def timed_result(
    run: Callable[[], Result], device: torch.device | None = None
) -> tuple[Result, Timing]:
    """``run()``'s value and the time the call took."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = run()
    if device is not None:
        synchronize(device)
    return value, Timing(time.perf_counter() - wall, time.process_time() - cpu)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on: hardware, software versions, date, commit."""
    info = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": tracking.git_commit(REPO),
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "gpu": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_bytes": props.total_memory,
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    return info


def max_rss_bytes() -> int:
    """This process's peak resident memory since it started (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


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
