"""Downstream evaluation: ``python jobs/evaluate.py [--config FILE] [key=value ...]``.

Runs the paper's protocol (random forest, scratch, frozen, fine-tuned and transfer arms;
subject-wise folds) as Ray Tune trials, writes the results table, plots and predictions
under output_dir/name, logs them to MLflow and exports the best fine-tuned model.
Re-running an interrupted evaluation with the same config resumes it.
With no arguments: configs/evaluate/quickstart.yaml (run jobs/pretrain.py first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wearssl.cli import run_job
from wearssl.config.evaluate import EvaluateConfig
from wearssl.downstream.evaluate import run_evaluation

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "evaluate" / "quickstart.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. finetune.lr=3e-4")
    args = parser.parse_args()
    return run_job(EvaluateConfig, args.config, args.overrides, run_evaluation)


if __name__ == "__main__":
    raise SystemExit(main())
