"""The jobs driven by a validated YAML config (pretrain, evaluate, ablate, explain):
``--config FILE``, ``key=value`` overrides and ``--print-config``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from wearssl.commands.command import FAULT_EXIT, exit_status

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
CONFIG_EPILOG = exit_status("0 done", FAULT_EXIT)


def add_config_arguments(
    parser: argparse.ArgumentParser, default_config: Path, override_example: str
) -> None:
    parser.add_argument("--config", default=str(default_config), help="YAML config file")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the merged, validated config (every key, defaults included) as YAML and exit",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's and MLflow's own logs (worker and controller chatter, "
        "INFO messages, library warnings), hidden by default",
    )
    parser.add_argument(
        "overrides", nargs="*", help=f"key=value overrides, e.g. {override_example}"
    )


def print_config(schema: type[BaseModel], args: argparse.Namespace) -> int:
    """Print the config the job would run with, as YAML; exit status 0, or 2 if invalid."""
    import yaml

    from wearssl.cli import EXIT_USAGE
    from wearssl.config import ConfigError, load_config

    try:
        config = load_config(schema, args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def run_config_job(
    args: argparse.Namespace,
    schema: type[BaseModel],
    load_job: Callable[[], Callable[[Any], Any]],
) -> int:
    """Print the config (``--print-config``) or run the job ``load_job`` imports."""
    if args.print_config:
        return print_config(schema, args)
    from wearssl.cli import run_job

    return run_job(
        schema,
        args.config,
        args.overrides,
        load_job(),
        verbose=args.verbose,
        job_name=args.command,
    )
