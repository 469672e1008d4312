"""The ``wearssl`` command, one front door to every job (``wearssl <job> --help``), and
the plumbing its jobs share: config loading, clear errors, exit codes.

Nothing here or in :mod:`wearssl.commands` imports Ray, torch, MLflow or pandas before the
arguments are parsed; each job imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

import wearssl
from wearssl.config import ConfigError, load_config
from wearssl.errors import (
    CheckpointError,
    CorpusError,
    PretrainingFault,
    ResourcePlanError,
    TrackingUnavailableError,
)

Schema = TypeVar("Schema", bound=BaseModel)

EXIT_USAGE = 2
# Domain errors: the job cannot run as asked, or stopped on a fault it names. Each is one
# line on stderr and exit status 2, never a traceback.
USER_ERRORS = (
    ConfigError,
    ResourcePlanError,
    CheckpointError,
    FileNotFoundError,
    CorpusError,
    TrackingUnavailableError,
    PretrainingFault,
)


def require_output_folder(out: str, option: str = "--out") -> None:
    """An output folder given on the command line must not be an existing file."""
    if "://" not in out and Path(out).is_file():
        raise ConfigError(f"{option} {out} is an existing file; give a folder")


def require_input_file(path: str | None, option: str) -> None:
    """A local file named by ``option`` must exist (object-store URIs are read later)."""
    if path is not None and "://" not in path and not Path(path).is_file():
        raise ConfigError(f"{option} {path}: no such file")


def require_inputs_found(files: list[str], inputs: Sequence[str]) -> None:
    """Inputs that name only empty folders (or none of a readable kind) are an error, not
    a job that does nothing and exits 0 (``wearssl.data.ingest`` says the same)."""
    if not files:
        raise ConfigError(f"no recordings found in {', '.join(inputs)}")


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
    verbose: bool = False,
    job_name: str | None = None,
) -> int:
    """Load and validate the config, run the job, turn user errors into one clear line.
    Ray's and MLflow's own logs show only when ``verbose``; ``job_name`` is the source its
    MLflow runs name (:func:`wearssl.infra.mlflow_runs.job_tags`)."""
    from wearssl.infra.ray_runtime import set_console
    from wearssl.infra.tracking import JOB_ENV

    set_console(verbose)
    if job_name:
        os.environ[JOB_ENV] = job_name
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


def package_version() -> str:
    try:
        return metadata.version("wearssl")
    except metadata.PackageNotFoundError:
        return wearssl.__version__


def build_parser() -> argparse.ArgumentParser:
    """``wearssl`` and one subcommand per job of :data:`wearssl.commands.COMMANDS`."""
    from wearssl.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="wearssl",
        description="Self-supervised activity recognition on wrist accelerometry: "
        "every job, from a synthetic corpus to predictions. 'wearssl JOB --help' tells more.",
    )
    parser.add_argument("--version", action="version", version=f"wearssl {package_version()}")
    jobs = parser.add_subparsers(dest="command", required=True, metavar="JOB")
    for command in COMMANDS:
        job = jobs.add_parser(
            command.name,
            help=command.summary,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(job)
        job.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``wearssl`` console command; ``jobs/X.py`` runs ``main(["X", ...])``."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
