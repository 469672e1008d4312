"""``wearssl datasets``: a labelled set from a public benchmark, processed as in the paper."""

from __future__ import annotations

import argparse
import sys

from wearssl.commands.command import Command, exit_status
from wearssl.data.recipes import CAPTURE24_DEFAULT_SCHEME

DESCRIPTION = (
    "Make a labelled set from a public benchmark as downloaded, processed as in the paper."
)
EPILOG = (
    exit_status(
        "0 done",
        "2 bad input (a missing folder or file, a scheme not in the dictionary, nothing to window)",
    )
    + """
examples:
  wearssl datasets wisdm ../shared/data/wisdm-watch --out sets/wisdm
  wearssl datasets adl HMP_Dataset/ --out sets/adl
  wearssl datasets capture24 capture24/ --out sets/capture24 --labels label:Walmsley2020
then evaluate with configs/evaluate/paper-<dataset>.yaml.
"""
)
DATASETS = {
    "wisdm": "WISDM smartwatch accelerometer (data_<subject>_accel_watch.txt files)",
    "adl": "UCI ADL / HMP wrist accelerometer (one folder per activity)",
    "capture24": "Capture-24 (P001.csv.gz ... and annotation-label-dictionary.csv)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for dataset, help_text in DATASETS.items():
        sub = datasets.add_parser(dataset, help=help_text, description=help_text)
        sub.add_argument("raw_dir", metavar="RAW_DIR", help="the dataset's folder as downloaded")
        sub.add_argument("--out", required=True, help="labelled-set folder or URI to write")
        sub.add_argument("--name", default=dataset, help=f"name of the set (default {dataset})")
        if dataset == "capture24":
            sub.add_argument(
                "--labels",
                default=CAPTURE24_DEFAULT_SCHEME,
                help="label scheme: a column of the dictionary "
                f"(default {CAPTURE24_DEFAULT_SCHEME})",
            )


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from wearssl.data.ingest import EXIT_OK, EXIT_USAGE
    from wearssl.data.recipes.adl import import_adl
    from wearssl.data.recipes.capture24 import import_capture24
    from wearssl.data.recipes.wisdm import import_wisdm

    try:
        if args.dataset == "wisdm":
            summary = import_wisdm(args.raw_dir, args.out, args.name, progress)
        elif args.dataset == "adl":
            summary = import_adl(args.raw_dir, args.out, args.name, progress)
        else:
            summary = import_capture24(args.raw_dir, args.out, args.labels, args.name, progress)
    except (ValueError, FileNotFoundError) as error:
        print(f"datasets: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for line in summary.lines():
        print(line)
    return EXIT_OK


COMMAND = Command(
    "datasets",
    "a labelled set from a public benchmark (WISDM, ADL, Capture-24)",
    DESCRIPTION,
    EPILOG,
    add_arguments,
    run,
)
