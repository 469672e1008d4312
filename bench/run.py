"""The benchmark harness: every performance figure of the platform in one table.

    python bench/run.py [--device cpu|cuda] [--size small|full] [--out FILE.json] [--ingest]

Measures, on this machine and in this order: the batched pretext transforms against a
per-window loop; the training step (fp32, bf16 autocast, channels-last, torch.compile,
the combination of those that helped) with a matmul peak for MFU, after checking each
variant's features against fp32 (a NaN or an error over tolerance fails the run with
exit status 1); the Ray Data sampler's delivery rate and its memory at 1x and 10x corpus
size; the real Ray Train pipeline next to a bare PyTorch loop of the same step;
epoch planning time for 100,000 subjects x 7 days; the window storage formats; and,
with ``--ingest``, the ingest cost per recording-day. Prints one table and writes it,
with the machine's description, as JSON (default ``bench/results/<device>-<size>.json``).

``--size small`` finishes in minutes on a 2-core laptop (one torch thread, so that the
per-core figures are not distorted by threads spinning for a busy core); ``--size
full`` uses every core, throughput-sized GPU batches and the paper's 4 x 1,500 batch
for the pipeline. Nothing is installed or downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import hardware  # noqa: E402

EXIT_FAILED_CHECK = 1
GIB = 1 << 30


@dataclass(frozen=True)
class HarnessSize:
    """How big each measurement is at one ``--size``."""

    threads_cpu: int | None
    transform_batch: int
    transform_loop_windows: int
    transform_repeats: int
    step_batches_cpu: tuple[int, ...]
    step_batches_cuda: tuple[int, ...]
    step_steps: int
    step_warmup: int
    compile_on_cpu: bool
    matmul_cpu: int
    matmul_cuda: int
    matmul_repeats: int
    memory_sizes: tuple[int, int]
    format_repeats: int
    ingest_days: float
    ingest_rate: float
    planning_subjects: int = 100_000
    planning_days: int = 7


SIZES = {
    "small": HarnessSize(
        threads_cpu=1,
        transform_batch=512,
        transform_loop_windows=100,
        transform_repeats=3,
        step_batches_cpu=(4,),
        step_batches_cuda=(256,),
        step_steps=1,
        step_warmup=1,
        compile_on_cpu=False,
        matmul_cpu=512,
        matmul_cuda=4096,
        matmul_repeats=5,
        memory_sizes=(8, 80),
        format_repeats=2,
        ingest_days=0.25,
        ingest_rate=30,
    ),
    "full": HarnessSize(
        threads_cpu=None,
        transform_batch=6000,
        transform_loop_windows=1000,
        transform_repeats=5,
        step_batches_cpu=(32, 64),
        step_batches_cuda=(512, 1024, 2048),
        step_steps=10,
        step_warmup=3,
        compile_on_cpu=True,
        matmul_cpu=2048,
        matmul_cuda=8192,
        matmul_repeats=20,
        memory_sizes=(32, 320),
        format_repeats=5,
        ingest_days=1,
        ingest_rate=100,
    ),
}


def measure_steps(device: torch.device, size: HarnessSize, size_name: str) -> dict:
    """Model-step variants, their feature checks, and the matmul peak for MFU."""
    model_step = common.load_bench("model_step")
    cuda = device.type == "cuda"
    result = model_step.measure(
        device,
        size.step_batches_cuda if cuda else size.step_batches_cpu,
        size.step_steps,
        size.step_warmup,
        with_compile=cuda or size.compile_on_cpu,
    )
    result["compile_skipped"] = None if result["compile_measured"] else f"skipped (cpu {size_name})"
    result["matmul_peak"] = model_step.matmul_peak(
        device, size.matmul_cuda if cuda else size.matmul_cpu, size.matmul_repeats
    )
    if cuda:
        torch.cuda.empty_cache()
    return result


def summarise(result: dict, device: torch.device) -> dict:
    """Derived figures: MFU, peak memory, extrapolated hours for the paper's windows."""
    steps, training = result["model_step"], result["training"]
    cuda = device.type == "cuda"
    best = steps["variants"][steps["best"]]
    peak = steps["matmul_peak"]
    # on a CPU, both per CPU-second: the machine's load affects them least
    step_rate = best["windows_per_s"] if cuda else best["windows_per_cpu_s"]
    step_peak = peak["flop_per_s"] if cuda else peak["flop_per_cpu_s"]
    e2e_rate = training["ray_train"]["windows_per_s"]
    # a CPU worker's peak: its threads' share of the per-CPU-second matmul rate
    e2e_peak = (
        peak["flop_per_s"]
        if cuda
        else peak["flop_per_cpu_s"] * training["ray_train"]["torch_threads"]
    )
    return {
        "mfu_best_step": hardware.mfu(step_rate, step_peak),
        "mfu_end_to_end": hardware.mfu(e2e_rate, e2e_peak),
        "peak_memory_bytes": best["peak_memory_bytes"],
        "peak_memory_kind": "torch.cuda.max_memory_allocated, best step variant"
        if cuda
        else "process max RSS after the best step variant",
        "hours_for_paper_windows_end_to_end": hardware.PAPER_WINDOWS / e2e_rate / 3600,
        "hours_for_paper_windows_best_step": hardware.PAPER_WINDOWS / best["windows_per_s"] / 3600,
        "hour_unit": "GPU-hours" if cuda else "CPU-worker-hours",
    }


def run(device: torch.device, size_name: str, workdir: Path, ingest: bool) -> dict:
    size = SIZES[size_name]
    pipeline = common.load_bench("pipeline")
    memory = common.load_bench("memory")
    pipeline_size = pipeline.SIZES[size_name]
    if device.type == "cpu" and size.threads_cpu is not None:
        torch.set_num_threads(size.threads_cpu)
    result: dict = {
        "machine": hardware.machine_info(device),
        "size": size_name,
        "settings": {"harness": asdict(size), "pipeline": asdict(pipeline_size)},
        "torch_threads": torch.get_num_threads(),
    }
    print(f"[bench] transforms on {device}", flush=True)
    result["transforms"] = common.load_bench("transforms").measure(
        size.transform_batch,
        300,
        str(device),
        repeats=size.transform_repeats,
        loop_windows=size.transform_loop_windows,
    )
    print("[bench] model step variants and feature checks", flush=True)
    result["model_step"] = measure_steps(device, size, size_name)

    print("[bench] corpora, Ray, sampler memory and rate", flush=True)
    base, replicated = pipeline.prepare_corpora(workdir, pipeline_size)
    common.connect_ray(os.cpu_count())
    sampler_memory = memory.sampler_memory(
        replicated, size.memory_sizes, pipeline_size.windows_per_subject
    )
    largest = sampler_memory["sizes"][-1]
    result["sampler_memory"] = sampler_memory
    result["sampler"] = {**largest, **pipeline.per_core(largest["windows_per_s"])}
    result["draw"] = pipeline.draw_rate(replicated, 8, pipeline_size.windows_per_subject)

    print("[bench] Ray Train pipeline and bare loop", flush=True)
    e2e_root = replicated if pipeline_size.e2e_replicated else base
    cfg = pipeline.e2e_config(e2e_root, device, pipeline_size, workdir)
    result["training"] = pipeline.training_ratio(cfg, device, pipeline_size.max_bare_steps)

    print("[bench] planning, formats", flush=True)
    result["planning"] = memory.planning_time(size.planning_subjects, size.planning_days)
    result["formats"] = common.load_bench("formats").measure(size.format_repeats)
    if ingest:
        print("[bench] ingest", flush=True)
        result["ingest"] = common.load_bench("ingest").measure(size.ingest_days, size.ingest_rate)
    result["summary"] = summarise(result, device)
    result["failures"] = failures(result)
    return result


def failures(result: dict) -> list[str]:
    """Correctness problems that fail the run: a feature check over tolerance or NaN, or
    a non-finite training loss in any variant."""
    found = [
        f"features {c['variant']} vs fp32: relative error {c['relative_error']:.3g} "
        f"(tolerance {c['tolerance']:g})"
        for c in result["model_step"]["checks"]
        if not c["ok"]
    ]
    found += [
        f"non-finite training loss in variant {name}"
        for name, row in result["model_step"]["variants"].items()
        if not row["finite_loss"]
    ]
    return found


Row = tuple[str, str, str, str]
"""One table row: section, what, value, note or target."""


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _target(text: str, met: bool) -> str:
    return f"target {text}: {'met' if met else 'MISSED'}"


def _mib(value: float) -> str:
    return f"{value / 2**20:+.1f} MiB"


def _transform_rows(t: dict, loop_windows: int) -> list[Row]:
    return [
        (
            "transforms",
            f"batched pretext_step ({t['batch']})",
            f"{_rate(t['vectorised_windows_per_s'])} w/s",
            f"{_rate(t['vectorised_windows_per_cpu_s'])} w/cpu-s",
        ),
        (
            "transforms",
            f"per-window loop ({loop_windows})",
            f"{_rate(t['loop_windows_per_s'])} w/s",
            f"{_rate(t['loop_windows_per_cpu_s'])} w/cpu-s",
        ),
        (
            "transforms",
            "batched / loop",
            f"{t['speedup']:.1f}x",
            f"{t['speedup_cpu']:.1f}x per cpu-s",
        ),
    ]


def _step_rows(steps: dict, device: torch.device) -> list[Row]:
    rows = [
        (
            "model step",
            f"{name} (batch {row['batch']}, {row['threads']} thr)",
            f"{_rate(row['windows_per_s'])} w/s",
            f"{_rate(row['windows_per_cpu_s'])} w/cpu-s",
        )
        for name, row in steps["variants"].items()
    ]
    if steps["compile_skipped"]:
        rows.append(("model step", "compile", steps["compile_skipped"], ""))
    rows.append(
        (
            "model step",
            "channels_last layout",
            "1-D analogue",
            "NLC strides; torch.channels_last is 4-D",
        )
    )
    rows.append(("model step", "best", steps["best"], f"combination: {steps['combination']}"))
    for check in steps["checks"]:
        verdict = "ok" if check["ok"] else "FAILED"
        rows.append(
            (
                "correctness",
                f"features {check['variant']} vs fp32",
                f"rel err {check['relative_error']:.2e}",
                f"tolerance {check['tolerance']:g}: {verdict}",
            )
        )
    peak = steps["matmul_peak"]
    rows.append(
        (
            "peak",
            f"{peak['dtype']} matmul {peak['size']} ({peak['threads']} thr, {device.type})",
            f"{peak['flop_per_s'] / 1e12:.3f} TFLOP/s",
            f"{peak['flop_per_cpu_s'] / 1e9:.1f} GFLOP/cpu-s",
        )
    )
    return rows


def _sampler_rows(sampler: dict, draw: dict, memory: dict) -> list[Row]:
    per_core, task_rate = sampler["windows_per_s_per_core"], sampler["windows_per_task_cpu_s"]
    target = sampler["target_per_core"]
    rows = [
        (
            "sampler",
            f"Ray Data, {sampler['subject_days']} subject-days",
            f"{_rate(sampler['windows_per_s'])} w/s",
            f"on {sampler['ray_cpus']:g} CPUs",
        ),
        (
            "sampler",
            "Ray Data per core (wall / CPUs)",
            f"{_rate(per_core)} w/s",
            _target(f">= {target:,}", per_core >= target),
        ),
        (
            "sampler",
            "Ray Data per read-task CPU-second",
            "n/a" if task_rate is None else f"{_rate(task_rate)} w/cpu-s",
            _target(f">= {target:,}", task_rate is not None and task_rate >= target),
        ),
        (
            "sampler",
            "draw_windows in-process",
            f"{_rate(draw['windows_per_cpu_s'])} w/cpu-s",
            f"{_rate(draw['windows_per_s'])} w/s wall",
        ),
    ]
    for row in memory["sizes"]:
        store = row["object_store_growth_bytes"]
        rows.append(
            (
                "sampler memory",
                f"{row['subject_days']} subject-days: peak",
                f"{row['peak_bytes'] / 2**20:.0f} MiB",
                f"growth {_mib(row['growth_bytes'])} (driver RSS "
                f"{_mib(row['driver_rss_growth_bytes'])}, object store "
                + ("n/a" if store is None else _mib(store))
                + f") while {row['delivered_bytes'] / 2**20:.0f} MiB were delivered",
            )
        )
    rows.append(
        (
            "sampler memory",
            f"{memory['corpus_ratio']:g}x corpus",
            f"{memory['memory_ratio']:.2f}x",
            _target(f"<= {memory['target_ratio']}", memory["met"]),
        )
    )
    return rows


def _pipeline_rows(training: dict, summary: dict, device: torch.device) -> list[Row]:
    ray_train, bare = training["ray_train"], training["bare_loop"]
    unit = "GPU" if device.type == "cuda" else "CPU worker"
    settings = (
        f"batch {ray_train['worker_batch']}, {ray_train['torch_threads']} thr, "
        f"bf16 {ray_train['bf16']}"
    )
    hours = summary["hour_unit"]
    ratio, ratio_target = training["ratio"], training["target_ratio"]
    per_cpu = training["ratio_vs_bare_cpu_s"]
    cpu_rows = (
        []
        if per_cpu is None
        else [
            (
                "pipeline",
                "Ray Train / bare loop per CPU-second",
                f"{per_cpu:.2f}",
                "lower bound: bare loop as if it had its cores to itself",
            )
        ]
    )
    return [
        (
            "pipeline",
            f"Ray Train per {unit} ({settings})",
            f"{_rate(ray_train['windows_per_s'])} w/s",
            f"last of {ray_train['epochs']} epochs, {ray_train['steps_per_epoch']} steps",
        ),
        (
            "pipeline",
            "bare PyTorch loop, same step",
            f"{_rate(bare['windows_per_s'])} w/s",
            f"{bare['steps']} steps",
        ),
        (
            "pipeline",
            "Ray Train / bare loop",
            f"{ratio:.2f}",
            _target(f">= {ratio_target}", ratio >= ratio_target),
        ),
        *cpu_rows,
        (
            "MFU",
            "best model step",
            f"{summary['mfu_best_step']:.1%}",
            "1.72 GFLOP/window vs matmul peak",
        ),
        ("MFU", "end to end", f"{summary['mfu_end_to_end']:.1%}", ""),
        (
            "memory",
            "peak",
            f"{summary['peak_memory_bytes'] / GIB:.2f} GiB",
            summary["peak_memory_kind"],
        ),
        (
            "extrapolated",
            "2.4e9 windows end to end",
            f"{summary['hours_for_paper_windows_end_to_end']:,.1f} {hours}",
            "paper: ~420 V100 GPU-hours",
        ),
        (
            "extrapolated",
            "2.4e9 windows at best step",
            f"{summary['hours_for_paper_windows_best_step']:,.1f} {hours}",
            "compute only, no pipeline",
        ),
    ]


def _planning_rows(planning: dict) -> list[Row]:
    return [
        (
            "planning",
            f"{planning['subjects']:,} subjects x {planning['days']} days",
            f"{planning['cpu_s']:.2f} s CPU",
            f"{planning['wall_s']:.2f} s wall, {_mib(planning['rss_growth_bytes'])}; "
            + _target(f"<= {planning['target_s']:g} s CPU", planning["met"]),
        )
    ]


def _format_rows(formats: dict) -> list[Row]:
    rows = []
    for row in formats["formats"]:
        decode, draw = row["decode_windows_per_cpu_s"], row["draw_windows_per_cpu_s"]
        rows.append(
            (
                "formats",
                f"{row['format']} {row['layout']} (zstd Parquet)",
                f"{row['bytes_per_window']:.0f} B/window",
                f"decode {_rate(decode)} w/cpu-s, draw {_rate(draw)} w/cpu-s, "
                f"{row['read_gb_per_s_at_target']:.2f} GB/s at 100k w/s, "
                f"err {row['max_error_mg']:.2f} mg",
            )
        )
    recommended = formats["recommended"]
    rows.append(("formats", "recommended", recommended["format"], recommended["reason"]))
    return rows


def _ingest_rows(ingest: dict) -> list[Row]:
    return [
        (
            "ingest",
            f"{ingest['days']:g} d at {ingest['rate_hz']:g} Hz",
            f"{ingest['total_seconds_per_day']:.2f} s/recording-day",
            f"after read {ingest['after_read_seconds_per_day']:.2f} s; "
            + _target("< 10 s", ingest["meets_target"]),
        )
    ]


def table_rows(result: dict, device: torch.device) -> list[Row]:
    """The whole table, section by section."""
    rows = _transform_rows(
        result["transforms"], result["settings"]["harness"]["transform_loop_windows"]
    )
    rows += _step_rows(result["model_step"], device)
    rows += _sampler_rows(result["sampler"], result["draw"], result["sampler_memory"])
    rows += _pipeline_rows(result["training"], result["summary"], device)
    rows += _planning_rows(result["planning"])
    rows += _format_rows(result["formats"])
    if "ingest" in result:
        rows += _ingest_rows(result["ingest"])
    return rows


def format_table(rows: list[Row]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    previous = None
    for section, what, value, note in rows:
        shown = section if section != previous else ""
        previous = section
        lines.append(
            f"{shown:<{widths[0]}}  {what:<{widths[1]}}  {value:>{widths[2]}}  {note}".rstrip()
        )
    return "\n".join(lines)


def header(result: dict) -> str:
    machine = result["machine"]
    gpu = machine["gpu"]["name"] if machine["gpu"] else "none"
    return (
        f"wearssl benchmarks, size {result['size']}, {machine['date_utc']}, commit "
        f"{machine['git_commit'][:12]}\n{machine['cpu_model']} x {machine['cpu_cores']} cores "
        f"(load {machine['load_average_1m']:.1f}), GPU {gpu}, torch {machine['torch']}, "
        f"ray {machine['ray']}, {result['torch_threads']} torch thread(s)"
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument("--workdir", type=Path, help="keep corpora and runs here (default: temp)")
    parser.add_argument("--ingest", action="store_true", help="also measure ingest (slow)")
    return parser.parse_args()


def main() -> int:
    args = _parse_args()
    device = hardware.device_or_exit(args.device)
    out = args.out or common.BENCH_DIR / "results" / f"{device.type}-{args.size}.json"
    with tempfile.TemporaryDirectory(prefix="wearssl-bench-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        try:
            result = run(device, args.size, workdir, args.ingest)
        finally:
            if ray.is_initialized():
                ray.shutdown()
    text = format_table(table_rows(result, device))
    print(header(result))
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written to {out}")
    for failure in result["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return EXIT_FAILED_CHECK if result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
