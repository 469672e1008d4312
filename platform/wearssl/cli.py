"""Shared command-line plumbing for the jobs: config loading, clear errors, exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from wearssl.config import ConfigError, load_config
from wearssl.infra.ray_runtime import QUIET_ENV, ResourcePlanError
from wearssl.models.harnet import CheckpointError

Schema = TypeVar("Schema", bound=BaseModel)

EXIT_USAGE = 2
USER_ERRORS = (ConfigError, ResourcePlanError, CheckpointError, FileNotFoundError)


def mlflow_ui_hint(tracking_uri: str) -> str:
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri.removeprefix("sqlite:///"))
        return (
            f"browse it with: mlflow ui --backend-store-uri {tracking_uri} "
            f"--default-artifact-root {store.parent / 'artifacts'} --host 127.0.0.1"
        )
    return f"browse it at {tracking_uri}"


def run_job(
    schema: type[Schema],
    config_path: str | None,
    overrides: Sequence[str],
    job: Callable[[Schema], Any],
) -> int:
    """Load and validate the config, run the job, turn user errors into one clear line."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    try:
        cfg = load_config(schema, config_path, overrides)
        result = job(cfg)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    summary = getattr(result, "summary", None)
    if callable(summary):
        print(summary())
    uri = getattr(result, "tracking_uri", None)
    if uri:
        print(mlflow_ui_hint(uri))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``wearssl`` console command.

    ``wearssl predict RECORDING... --model MODEL [--out DIR] [--no-hmm]`` predicts a few
    files in this process (``jobs/predict.py`` runs thousands on Ray);
    ``wearssl collate DIR... --out FILE`` merges prediction folders' daily, Info, hourly
    and bouts tables.
    """
    import argparse

    from wearssl.predict.recordings import (
        EPILOG,
        add_collate_arguments,
        add_predict_arguments,
        run_collate,
        run_predict,
    )

    parser = argparse.ArgumentParser(prog="wearssl", description=main.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict",
        help="predict activities on recordings with a fine-tuned model",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_predict_arguments(predict, distributed=False)
    add_collate_arguments(
        commands.add_parser(
            "collate", help="merge the daily, Info, hourly and bouts tables of prediction folders"
        )
    )
    args = parser.parse_args(argv)
    if args.command == "predict":
        return run_predict(args, distributed=False)
    return run_collate(args)
