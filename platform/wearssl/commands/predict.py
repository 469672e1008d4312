"""``wearssl predict`` and ``wearssl collate``: activities of raw recordings from a
fine-tuned model, and the merged tables of many prediction folders.

``wearssl predict`` runs a few files in this process; ``python jobs/predict.py`` (what
``ray job submit`` runs) takes the same arguments plus the Ray ones and runs thousands,
one Ray task per file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from wearssl.commands.command import Command, exit_status
from wearssl.data.devices import CSV_COLUMNS_HELP, UNITS
from wearssl.predict import COLLATED_NAME, DEFAULT_BATCH_SIZE

EPILOG = """\
MODEL: an exported fine-tuned checkpoint file, models:/NAME/VERSION, models:/NAME@ALIAS
or runs:/RUN_ID[/PATH] (MLflow store: --tracking-uri, else MLFLOW_TRACKING_URI, else
./mlruns). Outputs go to OUT/<recording stem>/ (see docs/predict.md).

exit status: 0 every file predicted; 3 some files failed (listed in OUT/predict-report.csv
and on stderr), the others were predicted; 2 usage error (bad arguments or model);
1 unexpected failure (a traceback).
"""


def add_predict_arguments(parser: argparse.ArgumentParser, distributed: bool) -> None:
    """Arguments of prediction; ``distributed`` adds the Ray ones and makes --out required."""
    parser.add_argument(
        "recordings", nargs="+", metavar="RECORDING", help="files, folders or globs"
    )
    parser.add_argument("--model", required=True, help="checkpoint file or MLflow spec (see below)")
    if distributed:
        parser.add_argument("--out", required=True, help="output folder")
    else:
        parser.add_argument(
            "--out", default="predictions", help="output folder (default: %(default)s)"
        )
    parser.add_argument("--no-hmm", action="store_true", help="no HMM smoothing of the labels")
    parser.add_argument(
        "--collate",
        action="store_true",
        help=f"also write OUT/{COLLATED_NAME} and the tables beside it (see collate)",
    )
    parser.add_argument("--tracking-uri", help="MLflow store holding models:/ and runs:/ specs")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="windows per batch"
    )
    reading = parser.add_argument_group("reading recordings")
    reading.add_argument("--rate", type=float, help="sample rate (Hz) of arrays without times")
    reading.add_argument("--start", help="ISO start time of arrays without times")
    reading.add_argument("--units", choices=UNITS, default="g", help="units of CSV and arrays")
    reading.add_argument(
        "--columns",
        action="append",
        metavar="ROLE=NAME",
        help=CSV_COLUMNS_HELP,
    )
    reading.add_argument("--timezone", default="UTC", help="wall-clock zone for absolute times")
    processing = parser.add_argument_group("preprocessing")
    processing.add_argument("--no-calibrate", action="store_true", help="skip gravity calibration")
    processing.add_argument("--no-nonwear", action="store_true", help="skip non-wear detection")
    processing.add_argument(
        "--nonwear-minutes", type=float, default=90.0, help="still minutes that make non-wear"
    )
    processing.add_argument(
        "--max-gap", type=float, default=1.0, help="seconds between samples that make a gap"
    )
    if distributed:
        ray_group = parser.add_argument_group("Ray")
        ray_group.add_argument(
            "--address", help="Ray cluster address (default: RAY_ADDRESS, else local)"
        )
        ray_group.add_argument("--num-cpus", type=int, help="CPUs of a local Ray instance")
        ray_group.add_argument(
            "--gpus-per-task",
            type=float,
            help="GPU share of a task (default: 0.25 where the cluster has GPUs)",
        )


def predict_parser(distributed: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Predict activities on raw recordings with a fine-tuned model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_predict_arguments(parser, distributed)
    return parser


def add_collate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR", help="prediction output folders")
    parser.add_argument(
        "--out",
        required=True,
        help="the merged daily CSV file; the Info, hourly and bouts tables go beside it "
        "(all-days.csv -> all-days-Info.csv, all-days-Hourly.csv.gz, all-days-Bouts.csv.gz)",
    )


def add_local_predict_arguments(parser: argparse.ArgumentParser) -> None:
    add_predict_arguments(parser, distributed=False)


def run_here(args: argparse.Namespace) -> int:
    from wearssl.predict.recordings import run_predict

    return run_predict(args, distributed=False)


def main_on_ray(argv: Sequence[str]) -> int:
    """``python jobs/predict.py ARGS``: prediction on Ray, one task per file."""
    from wearssl.predict.recordings import run_predict

    return run_predict(predict_parser(distributed=True).parse_args(argv), distributed=True)


def collate(args: argparse.Namespace) -> int:
    from wearssl.predict.recordings import run_collate

    return run_collate(args)


PREDICT = Command(
    "predict",
    "predict activities on recordings with a fine-tuned model",
    "Predict activities on raw recordings with a fine-tuned model, in this process "
    "(python jobs/predict.py runs many on Ray).",
    EPILOG,
    add_local_predict_arguments,
    run_here,
)
COLLATE = Command(
    "collate",
    "merge the daily, Info, hourly and bouts tables of prediction folders",
    "Merge the daily, Info, hourly and bouts tables of prediction folders.",
    exit_status("0 done", "2 usage error (no prediction tables, unreadable files)"),
    add_collate_arguments,
    collate,
)
