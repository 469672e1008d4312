"""The GPU check: the model step's variants, an end-to-end loop and a short real pre-training.

    python bench/gpu.py --data DIR --out OUT [--device cuda] [--size full|small]
                        [--pretrain-seconds 180]

Runs where only PyTorch and the scientific stack are installed (no Ray, no MLflow: a lent
GPU machine), on the functions the platform trains with (:mod:`wearssl.pretrain.step`,
:mod:`wearssl.pretrain.transforms`, :mod:`wearssl.models.harnet`). In order:

1. **Model step**: fp32, bf16 autocast, channels-last and ``torch.compile`` training steps
   on in-memory batches (``bench/model_step.py``), each variant's features checked against
   fp32 first; a bf16 matrix product gives the peak that MFU is measured against.
2. **End to end**: batches drawn from host memory as the sampler delivers them (float16
   rows, subjects x std-weighted windows), copied from pinned memory while the previous
   step runs, transformed on the device, and trained: windows/s through the whole step.
3. **Pre-training**: harnet10 with the paper's recipe (4 subjects x 1,500 std-weighted
   windows a batch, Adam 1e-3 scaled linearly with the batch through a 5-epoch warm-up,
   bf16 on a GPU, early stopping on held-out loss) on the real windows of ``DIR`` for a
   wall-clock budget; the held-out subjects' pretext accuracies per epoch; the best
   epoch's model saved, each time it improves, as a wearssl checkpoint in parts of at
   most 15 MiB (``harnet10.pt.partN``; ``cat`` them back together).

``DIR`` is a corpus (``jobs/ingest.py``; ``bench/real_corpus.py`` makes the real one of
recordings and labelled sets with labels dropped); its manifest's split gives the
held-out subjects.
Writes ``OUT/gpu.json`` and ``OUT/gpu.md``. Exit status 1 when a correctness check fails
(a variant's features beyond tolerance, a non-finite loss).
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hardware  # noqa: E402
import model_step  # noqa: E402
from wearssl.data import corpus  # noqa: E402
from wearssl.data.weighted_sampling import sample_window_indices  # noqa: E402
from wearssl.models.harnet import harnet, save_checkpoint  # noqa: E402
from wearssl.pretrain.step import evaluate_heldout, lr_at, pretext_loss  # noqa: E402
from wearssl.pretrain.transforms import PAPER_TASKS  # noqa: E402

EXIT_FAILED_CHECK = 1
WINDOW_SECONDS = 10
PART_BYTES = 15 << 20
PAPER_BASE_LR = 1e-3
PAPER_LR_REFERENCE_BATCH = 512
PAPER_WARMUP_EPOCHS = 5
PAPER_PATIENCE = 5


@dataclass(frozen=True)
class GpuSize:
    step_batches: tuple[int, ...]
    step_steps: int
    step_warmup: int
    matmul: int
    windows_per_subject: int
    subjects_per_batch: int
    end_to_end_steps: int
    heldout_per_subject: int
    compile: bool
    max_steps_per_epoch: int | None


SIZES = {
    "full": GpuSize((1024, 2048, 4096), 10, 3, 8192, 1500, 4, 30, 500, True, None),
    "small": GpuSize((8,), 1, 1, 256, 16, 2, 2, 4, False, 2),
}


@dataclass(frozen=True)
class RealWindows:
    """The worn windows of a corpus in memory (float16), grouped by subject and split."""

    windows: np.ndarray  # (n, 3, 300) float16
    std: np.ndarray  # (n,) std of the vector magnitude, for weighted sampling
    train: dict[str, np.ndarray]  # subject -> row indices
    test: dict[str, np.ndarray]
    sources: dict

    @classmethod
    def load(cls, root: Path) -> RealWindows:
        """Every worn window of the corpus at ``root``, with the manifest's split."""
        parts, std, groups, start = [], [], {"train": {}, "test": {}}, 0
        for entry in corpus.read_manifest(root).to_pylist():
            day = corpus.read_day(str(root), entry)
            worn = np.flatnonzero(day["wear"].to_numpy(zero_copy_only=False))
            parts.append(corpus.decode_windows(day, worn, dtype=None))
            std.append(day["std"].to_numpy()[worn])
            rows = np.arange(start, start + len(worn))
            subjects = groups[entry["split"]]
            subjects[entry["subject"]] = np.concatenate([subjects.get(entry["subject"], []), rows])
            start += len(worn)
        sources = root / "sources.json"
        return cls(
            windows=np.concatenate(parts),
            std=np.concatenate(std).astype(np.float64),
            train={s: r.astype(np.int64) for s, r in groups["train"].items() if len(r)},
            test={s: r.astype(np.int64) for s, r in groups["test"].items() if len(r)},
            sources=json.loads(sources.read_text()) if sources.exists() else {},
        )

    def heldout(self, per_subject: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        chosen = [
            rows[np.sort(rng.permutation(len(rows))[:per_subject])] for rows in self.test.values()
        ]
        return self.windows[np.concatenate(chosen)]


def sampled_batches(data: RealWindows, size: GpuSize, seed: int) -> Iterator[np.ndarray]:
    """Endless batches as the platform's sampler draws them: ``subjects_per_batch``
    training subjects at a time, each giving std-weighted windows without replacement."""
    rng = np.random.default_rng(seed)
    subjects = list(data.train)
    while True:
        order = rng.permutation(len(subjects))
        for start in range(0, len(order), size.subjects_per_batch):
            rows = [
                data.train[subjects[i]][
                    sample_window_indices(
                        data.std[data.train[subjects[i]]], size.windows_per_subject, rng
                    )
                ]
                for i in order[start : start + size.subjects_per_batch]
            ]
            yield data.windows[np.concatenate(rows)]


def prefetched(batches: Iterator[np.ndarray], device: torch.device) -> Iterator[torch.Tensor]:
    """Batches gathered and pinned by a host thread two ahead, copied without blocking."""
    ready: queue.Queue = queue.Queue(maxsize=2)

    def fill() -> None:
        for batch in batches:
            tensor = torch.from_numpy(batch)
            ready.put(tensor.pin_memory() if device.type == "cuda" else tensor)

    threading.Thread(target=fill, daemon=True).start()
    while True:
        yield ready.get().to(device, non_blocking=True).float()


def epoch_steps(data: RealWindows, size: GpuSize) -> int:
    """One epoch visits every training subject once (at most ``max_steps_per_epoch``)."""
    steps = max(1, math.ceil(len(data.train) / size.subjects_per_batch))
    return min(steps, size.max_steps_per_epoch or steps)


def measure_end_to_end(data: RealWindows, size: GpuSize, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = harnet(WINDOW_SECONDS).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=PAPER_BASE_LR)
    generator = torch.Generator(device=device).manual_seed(0)
    bf16 = device.type == "cuda"
    stream = prefetched(sampled_batches(data, size, seed=1), device)
    warm = 2
    windows, losses = 0, []
    started = time.perf_counter()
    for step in range(warm + size.end_to_end_steps):
        if step == warm:
            hardware.synchronize(device)
            started, windows = time.perf_counter(), 0
        x = next(stream)
        loss, _ = pretext_loss(model, x, list(PAPER_TASKS), generator, True, bf16)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        windows += len(x)
    hardware.synchronize(device)
    elapsed = time.perf_counter() - started
    return {
        "windows_per_s": windows / elapsed,
        "windows": windows,
        "steps": size.end_to_end_steps,
        "finite_loss": bool(torch.isfinite(torch.stack(losses)).all()),
    }


def pretrain(
    data: RealWindows, size: GpuSize, device: torch.device, seconds: float, out: Path
) -> dict:
    """The paper's recipe for a wall-clock budget (at least one epoch); the best held-out
    epoch is saved."""
    torch.manual_seed(0)
    model = harnet(WINDOW_SECONDS).to(device)
    batch = size.subjects_per_batch * size.windows_per_subject
    peak_lr = max(PAPER_BASE_LR, PAPER_BASE_LR * batch / PAPER_LR_REFERENCE_BATCH)
    steps_per_epoch = epoch_steps(data, size)
    warmup_steps = PAPER_WARMUP_EPOCHS * steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=PAPER_BASE_LR)
    bf16 = device.type == "cuda"
    tasks = list(PAPER_TASKS)
    heldout = data.heldout(size.heldout_per_subject, seed=2)
    stream = prefetched(sampled_batches(data, size, seed=3), device)
    generator = torch.Generator(device=device).manual_seed(4)
    history, best, step, stale = [], {"val/loss": math.inf}, 0, 0
    model_parts: list[str] = []
    started = time.perf_counter()
    while not history or (time.perf_counter() - started < seconds and stale < PAPER_PATIENCE):
        epoch_started, seen = time.perf_counter(), 0
        train_loss = torch.zeros((), device=device)
        for _ in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, PAPER_BASE_LR, peak_lr, warmup_steps)
            x = next(stream)
            loss, _ = pretext_loss(model, x, tasks, generator, True, bf16)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            train_loss += loss.detach()
            step, seen = step + 1, seen + len(x)
        metrics = evaluate_heldout(
            model, heldout, tasks, 2048, device, seed=5, autocast=bf16, window_seconds=10
        )
        record = {
            "epoch": len(history),
            "train/loss": float(train_loss) / steps_per_epoch,
            **metrics,
            "train/windows_per_s": seen / (time.perf_counter() - epoch_started),
            "train/lr": lr_at(step - 1, PAPER_BASE_LR, peak_lr, warmup_steps),
        }
        if not math.isfinite(record["train/loss"]):
            raise FloatingPointError(f"non-finite training loss at epoch {record['epoch']}")
        history.append(record)
        print(" ".join(f"{k}={v:.4g}" for k, v in record.items()), flush=True)
        if record["val/loss"] < best["val/loss"]:
            best, stale = record, 0
            save_checkpoint(
                out / "harnet10.pt",
                model,
                window_seconds=WINDOW_SECONDS,
                extra={"source": "bench/gpu.py", "epoch": record["epoch"]},
            )
            model_parts = split_into_parts(out / "harnet10.pt")
        else:
            stale += 1
    return {
        "seconds": time.perf_counter() - started,
        "batch": batch,
        "peak_lr": peak_lr,
        "steps": step,
        "windows_seen": step * batch,
        "epochs": len(history),
        "best": best,
        "model_parts": model_parts,
        "history": history,
        "train_subjects": len(data.train),
        "heldout_subjects": len(data.test),
        "heldout_windows": len(heldout),
    }


def split_into_parts(path: Path, part_bytes: int = PART_BYTES) -> list[str]:
    """``path`` cut into ``path.partN`` files of at most ``part_bytes`` (then removed)."""
    data = path.read_bytes()
    names = []
    for index, start in enumerate(range(0, len(data), part_bytes)):
        part = path.with_name(f"{path.name}.part{index}")
        part.write_bytes(data[start : start + part_bytes])
        names.append(part.name)
    path.unlink()
    return names


def save(result: dict, out: Path) -> None:
    """``OUT/gpu.json`` with what is measured so far (a run cut short keeps its stages)."""
    (out / "gpu.json").write_text(json.dumps(result, indent=2, default=str))


def summary(result: dict) -> dict:
    steps, peak = result["model_step"], result["matmul_peak"]["flop_per_s"]
    best = steps["variants"][steps["best"]]
    e2e = result["end_to_end"]["windows_per_s"]
    return {
        "best_step_variant": steps["best"],
        "best_step_windows_per_s": best["windows_per_s"],
        "mfu_best_step": hardware.mfu(best["windows_per_s"], peak),
        "end_to_end_windows_per_s": e2e,
        "mfu_end_to_end": hardware.mfu(e2e, peak),
        "peak_memory_bytes": best["peak_memory_bytes"],
        "paper_windows": hardware.PAPER_WINDOWS,
        "paper_device_hours_at_end_to_end": hardware.PAPER_WINDOWS / e2e / 3600,
        "goal_windows_per_s": 100_000,
    }


def sources_line(sources: dict) -> str:
    """``name: N windows`` per source of a ``bench/real_corpus.py`` corpus."""
    parts = sources.get("sources", {})
    return "; ".join(f"{name}: {row['windows']:,} windows" for name, row in parts.items())


def markdown(result: dict) -> str:
    machine, s = result["machine"], result["summary"]
    card = (machine.get("gpu") or {}).get("name", machine["device"])
    lines = [
        f"# GPU check on {card}",
        "",
        f"commit {machine['git_commit']}, torch {machine['torch']}, {machine['date_utc']}",
        "",
        "| variant | batch | windows/s | MFU | peak memory (GiB) |",
        "|---|---|---|---|---|",
    ]
    peak = result["matmul_peak"]["flop_per_s"]
    for name, row in result["model_step"]["variants"].items():
        lines.append(
            f"| {name} | {row['batch']} | {row['windows_per_s']:,.0f} | "
            f"{hardware.mfu(row['windows_per_s'], peak):.1%} | "
            f"{row['peak_memory_bytes'] / 2**30:.2f} |"
        )
    lines += [
        "",
        f"- matmul peak ({result['matmul_peak']['dtype']}): {peak / 1e12:,.0f} TFLOP/s",
        f"- end to end (host float16 rows -> pinned copy -> transforms -> bf16 step): "
        f"{s['end_to_end_windows_per_s']:,.0f} windows/s, MFU {s['mfu_end_to_end']:.1%}; "
        f"goal {s['goal_windows_per_s']:,} windows/s",
        f"- the paper's {s['paper_windows']:.1e} windows at that rate: "
        f"{s['paper_device_hours_at_end_to_end']:.1f} device-hours (paper: ~420 V100-hours)",
    ]
    for check in result["model_step"]["checks"]:
        verdict = "ok" if check["ok"] else "FAILED"
        lines.append(
            f"- features {check['variant']} vs fp32: relative error "
            f"{check['relative_error']:.2e} (tolerance {check['tolerance']:.0e}) {verdict}"
        )
    run = result["pretrain"]
    best = run["best"]
    accuracies = ", ".join(
        f"{k} {v:.3f}" for k, v in best.items() if k.startswith("val/") and k.endswith("_acc")
    )
    lines += [
        "",
        f"## Pre-training on real windows ({run['seconds']:.0f} s)",
        "",
        f"{run['train_subjects']} training and {run['heldout_subjects']} held-out subjects "
        f"({sources_line(result['sources'])}); batch {run['batch']}, "
        f"peak lr {run['peak_lr']:.3g}, "
        f"{run['steps']} steps, {run['windows_seen']:,} windows, {run['epochs']} epochs.",
        f"Best epoch {best['epoch']}: held-out loss {best['val/loss']:.4f}; {accuracies}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a corpus folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--pretrain-seconds", type=float, default=180.0)
    args = parser.parse_args()
    device = hardware.device_or_exit(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    size = SIZES[args.size]
    args.out.mkdir(parents=True, exist_ok=True)
    data = RealWindows.load(args.data)
    result: dict = {"machine": hardware.machine_info(device), "sources": data.sources}
    result["model_step"] = model_step.measure(
        device, size.step_batches, size.step_steps, size.step_warmup, with_compile=size.compile
    )
    result["matmul_peak"] = model_step.matmul_peak(device, size.matmul, 10)
    save(result, args.out)
    print(json.dumps(result["model_step"]["checks"]), flush=True)
    result["end_to_end"] = measure_end_to_end(data, size, device)
    print(json.dumps(result["end_to_end"]), flush=True)
    save(result, args.out)
    result["pretrain"] = pretrain(data, size, device, args.pretrain_seconds, args.out)
    result["summary"] = summary(result)
    save(result, args.out)
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    checks_ok = all(c["ok"] for c in result["model_step"]["checks"])
    finite = result["end_to_end"]["finite_loss"] and all(
        r["finite_loss"] for r in result["model_step"]["variants"].values()
    )
    return 0 if checks_ok and finite else EXIT_FAILED_CHECK


if __name__ == "__main__":
    raise SystemExit(main())
