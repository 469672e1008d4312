"""Benchmark: batched pretext + augmentation chain against a per-window loop.

    python bench/transforms.py [--batch 6000] [--window 300] [--threads 1] [--device cpu]

Times ``wearssl.pretrain.transforms.pretext_step`` (the paper's three tasks plus the axis-swap
and rotation augmentation) on one batch, and a straightforward per-window
numpy/scipy implementation of the same semantics (scipy ``CubicSpline`` for the warp,
``np.interp`` to resample), and prints both in windows/s with their ratio.
``measure`` returns the same figures for a harness that loads this file by path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import cumulative_trapezoid
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

from wearssl.pretrain.transforms import (
    MIN_FACTOR,
    MIN_SEGMENT,
    N_KNOTS,
    N_SEGMENTS,
    PAPER_TASKS,
    PRETEXT_TASKS,
    SCALE_SIGMA,
    WARP_SIGMA,
    pretext_step,
)


def _permute_window(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = window.shape[-1]
    spare = length - N_SEGMENTS * MIN_SEGMENT
    cuts = np.sort(rng.integers(0, spare + 1, N_SEGMENTS - 1))
    lengths = MIN_SEGMENT + np.diff(np.concatenate(([0], cuts, [spare])))
    starts = np.cumsum(lengths) - lengths
    order = rng.permutation(N_SEGMENTS)
    while np.array_equal(order, np.arange(N_SEGMENTS)):
        order = rng.permutation(N_SEGMENTS)
    return np.concatenate([window[:, starts[i] : starts[i] + lengths[i]] for i in order], axis=1)


def _warp_window(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = window.shape[-1]
    times = np.arange(length)
    knots = np.linspace(0, length - 1, N_KNOTS + 2)
    knot_speeds = np.concatenate(([1.0], rng.normal(1.0, WARP_SIGMA, N_KNOTS), [1.0]))
    speed = np.maximum(CubicSpline(knots, knot_speeds, bc_type="natural")(times), MIN_FACTOR)
    warped = cumulative_trapezoid(speed, initial=0.0)
    warped *= (length - 1) / warped[-1]
    return np.stack([np.interp(warped, times, axis) for axis in window])


def per_window_reference(
    window: np.ndarray,
    rng: np.random.Generator,
    tasks: tuple[str, ...] = PAPER_TASKS,
    augment_orientation: bool = True,
    p: float = 0.5,
) -> tuple[np.ndarray, dict[str, int]]:
    """One ``(3, L)`` window through the chain ``pretext_step`` applies to a batch."""
    labels = {task: int(rng.random() < p) for task in PRETEXT_TASKS if task in tasks}
    out = window.astype(np.float32)
    if labels.get("aot"):
        out = out[:, ::-1]
    if labels.get("permute"):
        out = _permute_window(out, rng)
    if labels.get("time_warp"):
        out = _warp_window(out, rng)
    if labels.get("scale"):
        out = out * max(rng.normal(1.0, SCALE_SIGMA), MIN_FACTOR)
    if augment_orientation:
        rotation = Rotation.from_quat(rng.normal(size=4)).as_matrix()
        out = rotation @ out[rng.permutation(3)]
    return out.astype(window.dtype), labels


def per_window_loop(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The baseline: a Python loop over the windows of a ``(B, 3, L)`` array."""
    return np.stack([per_window_reference(window, rng)[0] for window in batch])


def _synthetic_batch(batch: int, window: int, device: str, seed: int) -> torch.Tensor:
    """Gaussian noise (0.1 g) around a 1 g gravity vector: the values do not affect
    the timing."""
    generator = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(batch, 3, window, generator=generator)
    x[:, 2] += 1.0
    return x.to(device)


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _windows_per_second(
    run: Callable[[], object], windows: int, repeats: int, synchronize: Callable[[], None]
) -> tuple[float, float]:
    """Median throughput of ``repeats`` timed calls after one warm-up call, per second
    of wall-clock time and per second of this process's CPU time.

    On a shared machine the CPU-time figure is the steadier one: it leaves out the
    time the process waited for a core (on a GPU it counts only the host's share).
    """
    run()
    synchronize()
    wall, cpu = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        run()
        synchronize()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return windows / statistics.median(wall), windows / statistics.median(cpu)


def measure(
    batch: int,
    window: int,
    device: str,
    *,
    repeats: int = 5,
    loop_windows: int = 1000,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """Throughput of the batched chain and of the per-window loop, in windows/s of
    wall-clock time (``*_per_cpu_s``: per second of process CPU time).

    Uses torch's current thread count; the loop always runs on the CPU.
    """
    x = _synthetic_batch(batch, window, device, seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    vectorised, vectorised_cpu = _windows_per_second(
        lambda: pretext_step(x, generator), batch, repeats, lambda: _synchronize(device)
    )
    windows = x[:loop_windows].cpu().numpy()
    rng = np.random.default_rng(seed)
    loop, loop_cpu = _windows_per_second(
        lambda: per_window_loop(windows, rng), len(windows), max(1, repeats // 2), lambda: None
    )
    return {
        "batch": batch,
        "window": window,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "vectorised_windows_per_s": vectorised,
        "loop_windows_per_s": loop,
        "speedup": vectorised / loop,
        "vectorised_windows_per_cpu_s": vectorised_cpu,
        "loop_windows_per_cpu_s": loop_cpu,
        "speedup_cpu": vectorised_cpu / loop_cpu,
    }


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=6000)
    parser.add_argument("--window", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-windows", type=int, default=1000)
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    torch.set_num_threads(args.threads)
    result = measure(
        args.batch,
        args.window,
        args.device,
        repeats=args.repeats,
        loop_windows=args.loop_windows,
    )
    print(
        f"pretext + augmentation chain, window {result['window']}, "
        f"{result['threads']} thread(s), device {result['device']}"
    )
    rows = (
        ("batched (pretext_step)", args.batch, "vectorised"),
        ("per-window loop (numpy)", args.loop_windows, "loop"),
    )
    print(f"{'implementation':<26}{'windows':>9}{'windows/s':>12}{'windows/cpu-s':>15}")
    for name, windows, key in rows:
        wall, cpu = result[f"{key}_windows_per_s"], result[f"{key}_windows_per_cpu_s"]
        print(f"{name:<26}{windows:>9}{wall:>12,.0f}{cpu:>15,.0f}")
    print(f"{'speed-up':<26}{'':>9}{result['speedup']:>11.1f}x{result['speedup_cpu']:>14.1f}x")


if __name__ == "__main__":
    main()
