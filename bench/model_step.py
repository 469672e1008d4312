"""Benchmark: the pre-training step (pretext transforms + harnet forward/backward + Adam).

    python bench/model_step.py [--device cpu|cuda] [--batch 64] [--steps 3] [--compile]

Times ``wearssl.pretrain.step.pretext_loss`` + backward + ``Adam.step`` on batches already in
memory on the device, in windows/s, for each variant: fp32, bf16 autocast, channels-last,
``torch.compile`` and the combination of those that helped. Correctness comes first:
:func:`feature_check` compares each variant's features with fp32 on fresh random input.

Channels-last: ``torch.channels_last`` is defined for 4-D tensors only. A Conv1d runs as a
2-D convolution on an ``(N, C, 1, L)`` view, so the 1-D analogue is to store inputs and
conv weights with channels fastest (``(N, C, L)`` tensors with strides ``(L*C, 1, C)``);
the convolution then sees an NHWC view and its output keeps that layout. That is what
the ``channels_last`` variant measures.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hardware  # noqa: E402
from wearssl.models.harnet import harnet  # noqa: E402
from wearssl.pretrain.step import pretext_loss  # noqa: E402
from wearssl.pretrain.transforms import PAPER_TASKS  # noqa: E402

WINDOW_SECONDS = 10
WINDOW_SAMPLES = 300
TOLERANCE_BF16 = 0.05
TOLERANCE_FP32 = 5e-3
"""Relative feature error allowed against fp32: bf16 keeps ~3 significant digits; an fp32
variant differs only by summation order (and TF32 algorithm choice on a GPU)."""


@dataclass(frozen=True)
class StepFlags:
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    @property
    def name(self) -> str:
        parts = [flag for flag in ("bf16", "channels_last", "compile") if getattr(self, flag)]
        return "+".join(parts) or "fp32"

    def union(self, other: StepFlags) -> StepFlags:
        return StepFlags(
            self.bf16 or other.bf16,
            self.channels_last or other.channels_last,
            self.compile or other.compile,
        )


FP32 = StepFlags()
SINGLE_FLAGS = (StepFlags(bf16=True), StepFlags(channels_last=True), StepFlags(compile=True))


def channels_last_1d(tensor: torch.Tensor) -> torch.Tensor:
    """The same ``(N, C, L)`` values stored with channels fastest (see the module doc)."""
    return tensor.transpose(1, 2).contiguous().transpose(1, 2)


def build_model(device: torch.device, flags: StepFlags, seed: int = 0) -> nn.Module:
    """A freshly initialised harnet10 (same weights for a given seed) laid out per ``flags``."""
    torch.manual_seed(seed)
    model = harnet(WINDOW_SECONDS).to(device)
    if flags.channels_last:
        for module in model.modules():
            if isinstance(module, nn.Conv1d):
                module.weight.data = channels_last_1d(module.weight.data)
    return model


def random_windows(batch: int, device: torch.device, seed: int) -> torch.Tensor:
    """Gaussian noise (0.1 g) around a 1 g gravity vector: realistic scale, any content."""
    generator = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(batch, 3, WINDOW_SAMPLES, generator=generator)
    x[:, 2] += 1.0
    return x.to(device)


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    generator: torch.Generator,
    bf16: bool,
) -> float:
    """One step exactly as the Ray Train worker takes it: transforms, loss, backward, Adam."""
    loss, _ = pretext_loss(model, x, list(PAPER_TASKS), generator, True, bf16)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return hardware.max_rss_bytes()


def measure_variant(
    device: torch.device,
    flags: StepFlags,
    batch: int,
    steps: int,
    warmup: int = 1,
    seed: int = 0,
) -> dict:
    """Windows/s of ``steps`` training steps on one in-memory batch, after ``warmup``
    steps (which include compilation for ``compile``). Peak memory: the GPU's allocator
    peak for this variant, or the process's peak RSS so far on a CPU."""
    _reset_peak_memory(device)
    model = build_model(device, flags, seed)
    runnable = torch.compile(model) if flags.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = random_windows(batch, device, seed)
    if flags.channels_last:
        x = channels_last_1d(x)
    generator = torch.Generator(device=device).manual_seed(seed)
    losses: list[float] = []

    def run(n: int) -> None:
        for _ in range(n):
            losses.append(training_step(runnable, optimizer, x, generator, flags.bf16))

    warm = hardware.timed(lambda: run(warmup), device)
    timing = hardware.timed(lambda: run(steps), device)
    rates = timing.rates(batch * steps)
    return {
        "variant": flags.name,
        "batch": batch,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "windows_per_s": rates["per_s"],
        "windows_per_cpu_s": rates["per_cpu_s"],
        "warmup_s": warm.wall_s,
        "peak_memory_bytes": _peak_memory(device),
        "finite_loss": all(math.isfinite(v) for v in losses),
    }


def _is_out_of_memory(err: Exception) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


def best_batch(
    device: torch.device, flags: StepFlags, candidates: tuple[int, ...], steps: int, warmup: int
) -> tuple[int, list[dict]]:
    """The candidate batch size with the highest windows/s (sizes that run out of memory
    are recorded as such and skipped)."""
    tried = []
    for batch in candidates:
        try:
            tried.append(measure_variant(device, flags, batch, steps, warmup))
        except RuntimeError as err:
            if not _is_out_of_memory(err):
                raise
            tried.append({"variant": flags.name, "batch": batch, "error": "out of memory"})
            _reset_peak_memory(device)
    measured = [t for t in tried if "windows_per_s" in t]
    if not measured:
        raise RuntimeError(f"every batch size in {candidates} ran out of memory on {device}")
    return max(measured, key=lambda t: t["windows_per_s"])["batch"], tried


def speed(result: dict, device: torch.device) -> float:
    """The figure variants are ranked by: wall-clock windows/s on a GPU; on a CPU, windows
    per CPU-second, which a shared machine's load disturbs least."""
    return result["windows_per_s"] if device.type == "cuda" else result["windows_per_cpu_s"]


def relative_error(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """``||candidate - reference|| / ||reference||`` in float64; NaN when the candidate
    holds a NaN or infinity (so a check on it fails)."""
    candidate = candidate.double()
    if not torch.isfinite(candidate).all():
        return math.nan
    reference = reference.double()
    return float((candidate - reference).norm() / reference.norm().clamp_min(1e-30))


def check_error(name: str, error: float, tolerance: float) -> dict:
    """A pass/fail record: passes only for a finite error within ``tolerance``."""
    return {
        "variant": name,
        "relative_error": error,
        "tolerance": tolerance,
        "ok": math.isfinite(error) and error <= tolerance,
    }


def _features(device: torch.device, flags: StepFlags, x: torch.Tensor, seed: int) -> torch.Tensor:
    model = build_model(device, flags, seed).eval()
    extract = torch.compile(model.features) if flags.compile else model.features
    if flags.channels_last:
        x = channels_last_1d(x)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=flags.bf16):
        return extract(x).float()


def feature_check(
    device: torch.device, variants: list[StepFlags], batch: int = 16, seed: int = 1
) -> list[dict]:
    """Each variant's features against fp32's for the same weights on fresh random input."""
    x = random_windows(batch, device, seed)
    reference = _features(device, FP32, x, seed)
    checks = []
    for flags in variants:
        error = relative_error(reference, _features(device, flags, x, seed))
        tolerance = TOLERANCE_BF16 if flags.bf16 else TOLERANCE_FP32
        checks.append(check_error(flags.name, error, tolerance))
    return checks


def matmul_peak(device: torch.device, size: int, repeats: int) -> dict:
    """Dense matmul FLOP/s measured here: bf16 on a GPU, fp32 on a CPU (the MFU denominator)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    torch.matmul(a, b)
    hardware.synchronize(device)

    def run() -> None:
        for _ in range(repeats):
            torch.matmul(a, b)

    timing = hardware.timed(run, device)
    flop = 2 * size**3 * repeats
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "size": size,
        "threads": torch.get_num_threads(),
        "flop_per_s": flop / timing.wall_s,
        "flop_per_cpu_s": flop / max(timing.cpu_s, 1e-9),
    }


def measure(
    device: torch.device,
    batches: tuple[int, ...],
    steps: int,
    warmup: int,
    with_compile: bool,
) -> dict:
    """All variants: batch chosen for throughput on bf16 (GPU) or fp32 (CPU), then fp32, each
    single flag, and the union of the flags that beat fp32. Returns rows, checks, best."""
    started = time.perf_counter()
    probe = StepFlags(bf16=True) if device.type == "cuda" else FP32
    batch, batch_trials = best_batch(device, probe, batches, steps, warmup)
    singles = [f for f in SINGLE_FLAGS if with_compile or not f.compile]
    probed = next(t for t in batch_trials if t["batch"] == batch)
    results = {
        flags.name: probed
        if flags == probe
        else measure_variant(device, flags, batch, steps, warmup)
        for flags in [FP32, *singles]
    }
    baseline = speed(results[FP32.name], device)
    combined = FP32
    for flags in singles:
        if speed(results[flags.name], device) > baseline:
            combined = combined.union(flags)
    if combined.name not in results:
        results[combined.name] = measure_variant(device, combined, batch, steps, warmup)
    best = max(results.values(), key=lambda r: speed(r, device))
    extra = [combined] if combined != FP32 and combined not in singles else []
    checks = feature_check(device, [*singles, *extra], batch=min(16, batch))
    return {
        "batch": batch,
        "batch_trials": batch_trials,
        "variants": results,
        "combination": combined.name,
        "best": best["variant"],
        "compile_measured": with_compile,
        "checks": checks,
        "seconds": time.perf_counter() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()
    device = hardware.device_or_exit(args.device)
    result = measure(device, tuple(args.batch), args.steps, args.warmup, args.compile)
    print(f"batch {result['batch']} on {device}, {torch.get_num_threads()} thread(s)")
    print(f"{'variant':<30}{'windows/s':>12}{'windows/cpu-s':>15}")
    for name, row in result["variants"].items():
        print(f"{name:<30}{row['windows_per_s']:>12,.1f}{row['windows_per_cpu_s']:>15,.1f}")
    print(f"best: {result['best']}")
    for check in result["checks"]:
        verdict = "ok" if check["ok"] else "FAILED"
        print(
            f"features {check['variant']} vs fp32: relative error {check['relative_error']:.2e} "
            f"(tolerance {check['tolerance']:.0e}) {verdict}"
        )
    return 0 if all(c["ok"] for c in result["checks"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
