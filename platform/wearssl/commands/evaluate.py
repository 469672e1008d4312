"""``wearssl evaluate``: the downstream evaluation."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from wearssl.commands.command import Command
from wearssl.commands.config_job import CONFIG_EPILOG, CONFIGS, add_config_arguments, run_config_job

DESCRIPTION = """\
Downstream evaluation: wearssl evaluate [--config FILE] [key=value ...]
(also python jobs/evaluate.py).

Runs the paper's protocol (random forest, scratch, frozen, fine-tuned and transfer arms;
subject-wise folds) as Ray Tune trials, writes the results table, plots and predictions
under output_dir/name, logs them to MLflow and exports the best fine-tuned model.
Re-running an interrupted evaluation with the same config resumes it.
With no arguments: configs/evaluate/quickstart.yaml (run wearssl pretrain first).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIGS / "evaluate" / "quickstart.yaml", "finetune.lr=3e-4")


def load_job() -> Callable[[Any], Any]:
    from wearssl.downstream.evaluate import run_evaluation

    return run_evaluation


def run(args: argparse.Namespace) -> int:
    from wearssl.config.evaluate import EvaluateConfig

    return run_config_job(args, EvaluateConfig, load_job)


COMMAND = Command(
    "evaluate",
    "downstream evaluation of pre-trained models",
    DESCRIPTION,
    CONFIG_EPILOG,
    add_arguments,
    run,
)
