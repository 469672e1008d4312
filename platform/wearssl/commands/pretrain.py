"""``wearssl pretrain``: self-supervised pre-training."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from wearssl.commands.command import Command
from wearssl.commands.config_job import CONFIG_EPILOG, CONFIGS, add_config_arguments, run_config_job

DESCRIPTION = """\
Self-supervised pre-training: wearssl pretrain [--config FILE] [key=value ...]
(also python jobs/pretrain.py).

With no arguments: local Ray, configs/pretrain/quickstart.yaml, a small synthetic corpus,
and a local MLflow store under ./mlruns.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIGS / "pretrain" / "quickstart.yaml", "optim.epochs=3")


def load_job() -> Callable[[Any], Any]:
    from wearssl.pretrain.train import run_pretraining

    return run_pretraining


def run(args: argparse.Namespace) -> int:
    from wearssl.config.pretrain import PretrainConfig

    return run_config_job(args, PretrainConfig, load_job)


COMMAND = Command(
    "pretrain", "self-supervised pre-training", DESCRIPTION, CONFIG_EPILOG, add_arguments, run
)
