"""``wearssl explain``: relevance maps of a model's heads."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from wearssl.commands.command import Command
from wearssl.commands.config_job import CONFIG_EPILOG, CONFIGS, add_config_arguments, run_config_job

DESCRIPTION = """\
Explainability: wearssl explain [--config FILE] [key=value ...]
(also python jobs/explain.py).

Relevance maps of a model's heads on held-out windows (integrated gradients, DeepLift,
input x gradient, LRP), their faithfulness by masking, plots and a Markdown summary,
logged to MLflow (experiment wearssl-explain). With no arguments:
configs/explain/quickstart.yaml, which explains the quickstart pre-training's model.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIGS / "explain" / "quickstart.yaml", "heads=[aot]")


def load_job() -> Callable[[Any], Any]:
    from wearssl.explain.attribution import run_explain

    return run_explain


def run(args: argparse.Namespace) -> int:
    from wearssl.config.explain import ExplainConfig

    return run_config_job(args, ExplainConfig, load_job)


COMMAND = Command(
    "explain", "relevance maps of a model's heads", DESCRIPTION, CONFIG_EPILOG, add_arguments, run
)
