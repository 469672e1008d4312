"""The device a benchmark runs on, how it is timed, and what the machine is.

Free of Ray and MLflow, so the model-step and transform benchmarks run on a GPU machine
that has only PyTorch and the scientific stack (``bench/gpu.py``).
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

import numpy as np
import psutil
import pyarrow
import torch

from wearssl.infra.git import git_commit

Result = TypeVar("Result")

REPO = Path(__file__).resolve().parent.parent

FLOP_PER_WINDOW = 1.72e9
"""Forward + backward of harnet10 for one 10-s window (DESIGN §2)."""
PAPER_WINDOWS = 2.4e9
"""Windows the paper's ~20-epoch pre-training drew."""


class DeviceUnavailable(ValueError):
    """The benchmark was asked for a device this machine does not have."""


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


USAGE_ERROR = 2


def device_or_exit(device: str) -> torch.device:
    """:func:`require_device` for a benchmark's ``main``: a device this machine lacks is a
    usage error, said on stderr, and the process exits with :data:`USAGE_ERROR`."""
    try:
        return require_device(device)
    except DeviceUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None


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
    """What the numbers were measured on: hardware, software versions, date, commit.

    ``WEARSSL_BENCH_COMMIT`` names the commit where the tree is a copy without its git
    history (a lent GPU machine)."""
    info = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": os.environ.get("WEARSSL_BENCH_COMMIT") or git_commit(REPO),
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": installed_version("ray"),
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


def installed_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def mfu(windows_per_s: float, peak_flop_per_s: float) -> float:
    """Model FLOP utilisation at 1.72 GFLOP per window against the measured peak."""
    return windows_per_s * FLOP_PER_WINDOW / peak_flop_per_s
