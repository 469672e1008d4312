"""Benchmark (issue 3): do the pretext tasks learn, and does std-weighted sampling matter?

    python bench/pretext_learning.py [--config FILE] [key=value ...]

Runs the real pre-training job (``run_pretraining``: Ray Data sampler, Ray Train, MLflow)
on ``configs/pretrain/harnet5.yaml`` (or ``--config``) twice on the same corpus with the
same seed, once with std-weighted sampling and once uniform (only the weighted run
registers its model), and prints each epoch's held-out accuracy per pretext task from
the MLflow runs. The held-out windows are std-weighted in both runs (``epochs.heldout_windows``), so
the two columns are measured on the same windows. Writes
``bench/results/pretext_learning.json``.

Under an hour on a 2-core laptop with the default config; the paper's
accuracies need millions of windows, i.e. a GPU (``configs/pretrain/paper.yaml``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from wearssl.config import load_config  # noqa: E402
from wearssl.config.pretrain import PretrainConfig  # noqa: E402
from wearssl.pretrain.train import run_pretraining  # noqa: E402

TASKS = ("aot", "permute", "time_warp")
RUNS = {"both": (True, False), "weighted": (True,), "uniform": (False,)}
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "harnet5.yaml"


def learning_config(config: Path, weighted: bool, extra: list[str]) -> PretrainConfig:
    """``config`` with the sampling switched; only the weighted run registers its model."""
    sampling = "weighted" if weighted else "uniform"
    base = load_config(PretrainConfig, str(config), extra)
    overrides = [
        f"name={base.name}-{sampling}-{time.strftime('%Y%m%d-%H%M%S')}",
        f"sampling.weighted={str(weighted).lower()}",
        *extra,
    ]
    if not weighted:
        overrides.append("tracking.registered_model=null")
    return load_config(PretrainConfig, str(config), overrides)


def heldout_accuracy(tracking_uri: str, run_id: str) -> dict[str, list[float]]:
    """Each task's held-out accuracy per epoch, in epoch order, from the MLflow run."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    history = {}
    for task in (*TASKS, "loss"):
        key = "val/loss" if task == "loss" else f"val/{task}_acc"
        rows = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        history[task] = [m.value for m in rows]
    return history


def report(results: dict[str, dict[str, list[float]]]) -> str:
    header = ["epoch"] + [f"{s} {t}" for s in results for t in (*TASKS, "loss")]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    n_epochs = max(len(h["aot"]) for h in results.values())
    for epoch in range(n_epochs):
        cells = [str(epoch)]
        for history in results.values():
            cells += [
                f"{history[t][epoch]:.3f}" if epoch < len(history[t]) else ""
                for t in (*TASKS, "loss")
            ]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pretext_learning.json"))
    parser.add_argument(
        "--sampling",
        choices=("both", "weighted", "uniform"),
        default="both",
        help="which runs to make (default both, weighted first)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides for the runs")
    args = parser.parse_args()
    common.connect_ray()
    results, seconds, runs = {}, {}, {}
    for weighted in RUNS[args.sampling]:
        cfg = learning_config(args.config, weighted, args.overrides)
        started = time.perf_counter()
        result = run_pretraining(cfg)
        name = "weighted" if weighted else "uniform"
        seconds[name] = round(time.perf_counter() - started, 1)
        results[name] = heldout_accuracy(result.tracking_uri, result.run_id)
        runs[name] = {
            "run_id": result.run_id,
            "checkpoint": result.checkpoint_path,
            "registered_version": result.registered_version,
        }
        print(f"{name}: {result.epochs_completed} epochs in {seconds[name]} s", flush=True)
    print(report(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": str(args.config),
        "overrides": args.overrides,
        "seconds": seconds,
        "runs": runs,
        "heldout": results,
    }
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
