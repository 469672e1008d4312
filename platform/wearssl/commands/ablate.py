"""``wearssl ablate``: the data-scaling ablations."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from wearssl.commands.command import Command
from wearssl.commands.config_job import CONFIG_EPILOG, CONFIGS, add_config_arguments, run_config_job

DESCRIPTION = """\
Data-scaling ablations: wearssl ablate [--config FILE] [key=value ...]
(also python jobs/ablate.py).

Runs one sweep of configs/ablate/ (unlabelled subjects, data ratio, labelled subjects,
weighted sampling, pretext tasks) as Ray Tune trials, each a pre-training on its own Ray
Train worker group followed by the downstream evaluation; writes the results table, the
F1 plot and a Markdown summary, and logs a parent MLflow run with a child per trial.
Re-running an interrupted sweep with the same config resumes it.
With no arguments: configs/ablate/mini.yaml (a few minutes on a laptop).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIGS / "ablate" / "mini.yaml", "budget.max_concurrent_trials=2")


def load_job() -> Callable[[Any], Any]:
    from wearssl.ablate.sweep import run_ablation

    return run_ablation


def run(args: argparse.Namespace) -> int:
    from wearssl.config.ablate import AblateConfig

    return run_config_job(args, AblateConfig, load_job)


COMMAND = Command(
    "ablate", "data-scaling ablations", DESCRIPTION, CONFIG_EPILOG, add_arguments, run
)
