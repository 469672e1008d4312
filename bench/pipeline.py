"""Benchmark (issue 3): the sampler's delivery rate, and Ray Train next to a bare loop.

    python bench/pipeline.py [--device cpu|cuda] [--size small|full] [--workdir DIR]

1. Sampler: windows/s that the per-epoch Ray Data dataset (``wearssl.data.sampler``) delivers to
   a consumer that does nothing, per CPU core Ray may use (target >= 50,000), and the
   in-process rate of ``epochs.draw_windows`` per CPU-second (one core's worth).
2. Training: ``windows_per_s`` of the last epoch of a real ``run_pretraining`` (1 worker,
   synthetic corpus) next to the same step (``pretext_loss`` + backward + Adam, same
   batch, device, threads and autocast) in a bare PyTorch loop on in-memory batches, as
   a ratio (target >= 0.9 on the same machine).

The corpus is a small synthetic one, replicated into more subjects by hard links
(``common.replicated_corpus``): sampling cost depends on how many subject-days an epoch
reads, not on what they hold.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import hardware  # noqa: E402
from wearssl.config import load_config  # noqa: E402
from wearssl.config.pretrain import PretrainConfig  # noqa: E402
from wearssl.data import corpus  # noqa: E402
from wearssl.data import sampler as epochs  # noqa: E402
from wearssl.infra import ray_runtime as runtime  # noqa: E402
from wearssl.pretrain.spec import steps_per_epoch  # noqa: E402
from wearssl.pretrain.train import run_pretraining  # noqa: E402

SAMPLER_TARGET_PER_CORE = 50_000
RATIO_TARGET = 0.9


@dataclass(frozen=True)
class PipelineSize:
    """How big the pipeline measurements are at one ``--size``."""

    base_subjects: int
    copies: int
    sampler_subject_days: int
    windows_per_subject: int
    e2e_windows_per_subject: int
    e2e_subjects_per_batch: int
    e2e_replicated: bool
    e2e_epochs: int = 2
    max_bare_steps: int = 50


SIZES = {
    # seed 0 puts synthetic subject 5 in the test split: 6 subjects give both splits
    "small": PipelineSize(
        base_subjects=6,
        copies=14,
        sampler_subject_days=80,
        windows_per_subject=1500,
        e2e_windows_per_subject=16,
        e2e_subjects_per_batch=1,
        e2e_replicated=False,
    ),
    "full": PipelineSize(
        base_subjects=16,
        copies=20,
        sampler_subject_days=320,
        windows_per_subject=1500,
        e2e_windows_per_subject=1500,
        e2e_subjects_per_batch=4,
        e2e_replicated=True,
    ),
}


def prepare_corpora(workdir: Path, size: PipelineSize) -> tuple[str, str]:
    """(base synthetic corpus, its replication into ``size.copies`` x the subjects)."""
    base = common.synthetic_corpus(workdir / "synthetic", size.base_subjects)
    replicated = common.replicated_corpus(base, workdir / "replicated", size.copies)
    return base, replicated


def epoch_items(root: str, subject_days: int, seed: int = 0, epoch: int = 0) -> list[dict]:
    """An epoch plan over the first ``subject_days`` subjects (one day each) of ``root``."""
    days = common.all_subject_days(root)
    if len(days) < subject_days:
        raise ValueError(f"corpus {root} has {len(days)} subjects, {subject_days} were asked for")
    chosen = sorted(days)[:subject_days]
    return epochs.epoch_plan({s: days[s] for s in chosen}, seed, epoch)


def consume_epoch(
    root: str, plan: list[dict], windows_per_subject: int, batch_size: int = 1500
) -> dict:
    """Stream one epoch of the Ray Data sampler to a consumer that only counts windows."""
    dataset = epochs.epoch_dataset(root, plan, windows_per_subject, weighted=True)
    windows = delivered_bytes = 0

    def consume() -> None:
        nonlocal windows, delivered_bytes
        for batch in dataset.iter_batches(
            batch_size=batch_size, batch_format="numpy", prefetch_batches=2
        ):
            windows += len(batch["window"])
            delivered_bytes += batch["window"].nbytes

    timing = hardware.timed(consume)
    task_cpu_s = read_task_cpu_seconds(dataset.stats())
    return {
        "subject_days": len(plan),
        "windows": windows,
        "delivered_bytes": delivered_bytes,
        "seconds": timing.wall_s,
        "windows_per_s": windows / timing.wall_s,
        "read_task_cpu_s": task_cpu_s,
        "windows_per_task_cpu_s": windows / task_cpu_s if task_cpu_s else None,
    }


_CPU_TOTAL = re.compile(r"Remote cpu time:.*?([\d.]+)\s*(us|ms|s) total")
_SECONDS_PER_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def read_task_cpu_seconds(stats: str) -> float | None:
    """Total CPU time of the sampler's read tasks, from Ray Data's execution stats (the
    ``MapBatches(_draw_batch)`` operator), or None where the text does not say.

    Divides into windows as a per-core rate that the machine's other load leaves alone."""
    for section in stats.split("Operator ")[1:]:
        name = section.split(":", 1)[0]
        found = _CPU_TOTAL.search(section)
        if "MapBatches(_draw_batch)" in name and found:
            return float(found.group(1)) * _SECONDS_PER_UNIT[found.group(2)]
    return None


def sampler_rate(
    root: str, subject_days: int, windows_per_subject: int, warmup: bool = True
) -> dict:
    """Ray Data delivery rate over ``subject_days`` reads, per CPU that Ray may use.

    ``warmup`` first streams a short epoch so that worker start-up is not timed."""
    if warmup:
        consume_epoch(root, epoch_items(root, min(4, subject_days), epoch=1), windows_per_subject)
    result = consume_epoch(root, epoch_items(root, subject_days), windows_per_subject)
    return {**result, **per_core(result["windows_per_s"])}


def per_core(windows_per_s: float) -> dict:
    """A Ray Data rate spread over the CPUs Ray may schedule read tasks on."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return {
        "ray_cpus": cpus,
        "windows_per_s_per_core": windows_per_s / cpus,
        "target_per_core": SAMPLER_TARGET_PER_CORE,
    }


def draw_rate(root: str, draws: int, windows_per_subject: int) -> dict:
    """``epochs.draw_windows`` in this process: windows/s and per CPU-second (one core)."""
    plan = epoch_items(root, draws)
    epochs.draw_windows(root, plan[0], windows_per_subject, True)
    count = 0

    def run() -> None:
        nonlocal count
        for item in plan:
            count += len(epochs.draw_windows(root, item, windows_per_subject, True))

    timing = hardware.timed(run)
    rates = timing.rates(count)
    return {
        "draws": draws,
        "windows": count,
        "windows_per_s": rates["per_s"],
        "windows_per_cpu_s": rates["per_cpu_s"],
        "target_per_core": SAMPLER_TARGET_PER_CORE,
    }


def e2e_config(
    root: str, device: torch.device, size: PipelineSize, workdir: Path
) -> PretrainConfig:
    """A 1-worker pre-training of ``size.e2e_epochs`` whole epochs on ``root``; the name
    is new each time so that the run never resumes an earlier one.

    No step cap: a capped epoch abandons its dataset while read tasks still run, and they
    would compete with the next epoch's training for the CPUs being measured."""
    cpus = os.cpu_count() or 2
    worker_cpus = 1 if device.type == "cuda" else max(1, cpus - 1)
    overrides = [
        f"name=bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
        f"corpus={root}",
        f"runtime.storage_path={workdir / 'runs'}",
        "runtime.num_workers=1",
        f"runtime.use_gpu={str(device.type == 'cuda').lower()}",
        f"runtime.cpus_per_worker={worker_cpus}",
        f"runtime.data_cpus={max(1, cpus - worker_cpus)}",
        f"optim.epochs={size.e2e_epochs}",
        "optim.warmup_epochs=0",
        f"optim.patience={size.e2e_epochs}",
        f"sampling.windows_per_subject={size.e2e_windows_per_subject}",
        f"sampling.subjects_per_batch={size.e2e_subjects_per_batch}",
        f"sampling.shuffle_buffer={size.e2e_windows_per_subject * size.e2e_subjects_per_batch}",
        "eval.max_subjects=2",
        f"eval.windows_per_subject={min(size.e2e_windows_per_subject, 256)}",
        f"tracking.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        "tracking.registered_model=null",
        "tracking.log_model=false",
    ]
    return load_config(PretrainConfig, None, overrides)


def _torch_threads(cfg: PretrainConfig) -> int:
    plan = runtime.ResourcePlan(
        cfg.runtime.num_workers,
        cfg.runtime.cpus_per_worker,
        cfg.runtime.data_cpus,
        cfg.runtime.use_gpu,
    )
    return plan.torch_threads


def end_to_end(cfg: PretrainConfig) -> dict:
    """The real job; its last epoch's ``windows_per_s`` (first epoch's start-up excluded)."""
    started = time.perf_counter()
    result = run_pretraining(cfg)
    n_train = len(epochs.subject_days(corpus.read_manifest(cfg.corpus), "train"))
    return {
        "windows_per_s": result.metrics["train/windows_per_s"],
        "epoch_seconds": result.metrics["time/epoch_s"],
        "epochs": result.epochs_completed,
        "steps_per_epoch": steps_per_epoch(cfg, n_train),
        "worker_batch": cfg.worker_batch,
        "torch_threads": _torch_threads(cfg),
        "use_gpu": cfg.runtime.use_gpu,
        "bf16": cfg.runtime.use_gpu and cfg.runtime.bf16,
        "job_seconds": time.perf_counter() - started,
    }


def bare_loop(
    device: torch.device, batch: int, steps: int, threads: int, bf16: bool, seed: int = 0
) -> dict:
    """The worker's step on in-memory batches: float16 host windows (as the sampler
    delivers them) copied to the device, transforms, loss, backward, Adam."""
    model_step = common.load_bench("model_step")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model_step.build_model(device, model_step.FP32, seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        generator = torch.Generator(device=device).manual_seed(seed)
        host = [
            model_step.random_windows(batch, torch.device("cpu"), seed + i).numpy()
            for i in range(2)
        ]
        host = [h.astype(np.float16) for h in host]

        def run(n: int) -> None:
            for i in range(n):
                x = torch.from_numpy(host[i % 2]).to(device, non_blocking=True).float()
                model_step.training_step(model, optimizer, x, generator, bf16)

        run(1)
        timing = hardware.timed(lambda: run(steps), device)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "windows_per_s": batch * steps / timing.wall_s,
        "windows_per_cpu_s": batch * steps / max(timing.cpu_s, 1e-9),
        "batch": batch,
        "steps": steps,
        "threads": threads,
        "bf16": bf16,
    }


def training_ratio(cfg: PretrainConfig, device: torch.device, max_bare_steps: int) -> dict:
    """Ray Train windows/s next to the bare loop with the same step settings."""
    e2e = end_to_end(cfg)
    bare = bare_loop(
        device,
        cfg.worker_batch,
        min(e2e["steps_per_epoch"], max_bare_steps),
        e2e["torch_threads"],
        e2e["bf16"],
    )
    return {
        "ray_train": e2e,
        "bare_loop": bare,
        "ratio": e2e["windows_per_s"] / bare["windows_per_s"],
        # on a shared CPU: the bare loop as if it had its cores to itself (a lower bound)
        "ratio_vs_bare_cpu_s": None
        if device.type == "cuda"
        else e2e["windows_per_s"] / (bare["windows_per_cpu_s"] / bare["threads"]),
        "target_ratio": RATIO_TARGET,
    }


def report(sampler: dict, draw: dict, training: dict) -> str:
    ray_train, bare = training["ray_train"], training["bare_loop"]
    lines = [
        f"sampler (Ray Data, {sampler['subject_days']} subject-days, consumer does nothing): "
        f"{sampler['windows_per_s']:,.0f} windows/s on {sampler['ray_cpus']:g} CPUs = "
        f"{sampler['windows_per_s_per_core']:,.0f} per core "
        f"(target >= {SAMPLER_TARGET_PER_CORE:,}); "
        f"{sampler['windows_per_task_cpu_s'] or math.nan:,.0f} per read-task CPU-second",
        f"draw_windows in-process: {draw['windows_per_s']:,.0f} windows/s, "
        f"{draw['windows_per_cpu_s']:,.0f} per CPU-second",
        f"Ray Train (1 worker, batch {ray_train['worker_batch']}, "
        f"{ray_train['torch_threads']} thread(s), bf16 {ray_train['bf16']}): "
        f"{ray_train['windows_per_s']:,.1f} windows/s",
        f"bare PyTorch loop, same step: {bare['windows_per_s']:,.1f} windows/s",
        f"ratio {training['ratio']:.2f} (target >= {RATIO_TARGET})",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--workdir", type=Path, help="keep corpora and runs here (default: temp)")
    args = parser.parse_args()
    device = hardware.device_or_exit(args.device)
    size = SIZES[args.size]
    with tempfile.TemporaryDirectory(prefix="wearssl-bench-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        base, replicated = prepare_corpora(workdir, size)
        common.connect_ray(os.cpu_count())
        sampler = sampler_rate(replicated, size.sampler_subject_days, size.windows_per_subject)
        draw = draw_rate(replicated, min(8, size.sampler_subject_days), size.windows_per_subject)
        e2e_root = replicated if size.e2e_replicated else base
        training = training_ratio(
            e2e_config(e2e_root, device, size, workdir), device, size.max_bare_steps
        )
    print(report(sampler, draw, training))
    return 0 if math.isfinite(training["ratio"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
