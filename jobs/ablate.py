"""Data-scaling ablations: ``python jobs/ablate.py [--config FILE] [key=value ...]``.

Runs one sweep of configs/ablate/ (unlabelled subjects, data ratio, labelled subjects,
weighted sampling, pretext tasks) as Ray Tune trials, each a pre-training on its own Ray
Train worker group followed by the downstream evaluation; writes the results table, the
F1 plot and a Markdown summary, and logs a parent MLflow run with a child per trial.
Re-running an interrupted sweep with the same config resumes it.
With no arguments: configs/ablate/mini.yaml (a few minutes on a laptop).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wearssl.ablate.sweep import run_ablation
from wearssl.cli import run_job
from wearssl.config.ablate import AblateConfig

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ablate" / "mini.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. budget.max_concurrent_trials=2"
    )
    args = parser.parse_args()
    return run_job(AblateConfig, args.config, args.overrides, run_ablation)


if __name__ == "__main__":
    raise SystemExit(main())
