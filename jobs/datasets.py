"""Make a labelled set from a public benchmark as downloaded, processed as in the paper.

Exit status: 0 done; 2 bad input (a missing folder or file, a scheme not in the
dictionary, nothing to window).
"""

from __future__ import annotations

import argparse
import sys

from wearssl.data.ingest import EXIT_OK, EXIT_USAGE
from wearssl.data.recipes.adl import import_adl
from wearssl.data.recipes.capture24 import DEFAULT_SCHEME, import_capture24
from wearssl.data.recipes.common import RecipeSummary
from wearssl.data.recipes.wisdm import import_wisdm

EPILOG = """\
examples:
  python jobs/datasets.py wisdm ../shared/data/wisdm-watch --out sets/wisdm
  python jobs/datasets.py adl HMP_Dataset/ --out sets/adl
  python jobs/datasets.py capture24 capture24/ --out sets/capture24 --labels label:Walmsley2020
then evaluate with configs/evaluate/paper-<dataset>.yaml.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    helps = {
        "wisdm": "WISDM smartwatch accelerometer (data_<subject>_accel_watch.txt files)",
        "adl": "UCI ADL / HMP wrist accelerometer (one folder per activity)",
        "capture24": "Capture-24 (P001.csv.gz ... and annotation-label-dictionary.csv)",
    }
    for dataset, help_text in helps.items():
        sub = datasets.add_parser(dataset, help=help_text, description=help_text)
        sub.add_argument("raw_dir", metavar="RAW_DIR", help="the dataset's folder as downloaded")
        sub.add_argument("--out", required=True, help="labelled-set folder or URI to write")
        sub.add_argument("--name", default=dataset, help=f"name of the set (default {dataset})")
        if dataset == "capture24":
            sub.add_argument(
                "--labels",
                default=DEFAULT_SCHEME,
                help=f"label scheme: a column of the dictionary (default {DEFAULT_SCHEME})",
            )
    return parser.parse_args(argv)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> RecipeSummary:
    if args.dataset == "wisdm":
        return import_wisdm(args.raw_dir, args.out, args.name, progress)
    if args.dataset == "adl":
        return import_adl(args.raw_dir, args.out, args.name, progress)
    return import_capture24(args.raw_dir, args.out, args.labels, args.name, progress)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"datasets: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for line in summary.lines():
        print(line)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
