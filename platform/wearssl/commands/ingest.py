"""``wearssl ingest``: raw recordings into a corpus, or a labelled dataset into a window set."""

from __future__ import annotations

import argparse
import sys

from wearssl.commands.command import Command, exit_status
from wearssl.data import SUBJECT_SOURCES
from wearssl.data.corpus import WindowFormat
from wearssl.data.devices import CSV_COLUMNS_HELP, UNITS

DESCRIPTION = (
    "Ingest raw recordings into a corpus, or (--labelled) a labelled dataset into a window set."
)
EPILOG = (
    exit_status(
        "0 done (recordings partly recovered are listed in CORPUS/quarantine.csv as 'partial')",
        "3 done, but some recordings were quarantined",
        "2 usage error",
    )
    + """\
What each file held (device, clock, gaps, idle sleep, calibration, rows dropped, windows)
is kept in CORPUS/ingest_report.parquet and summed up at the end of the run.

examples:
  wearssl ingest /data/ukb/*.cwa.gz --out s3://bucket/corpus --address auto
  wearssl ingest '../shared/data/e4-stress/S*/ACC.csv.gz' --out corpora/e4 \\
      --timezone Europe/London   (Empatica E4 sessions, each named after its folder)
  wearssl ingest arrays/ --rate 100 --start 2024-01-01T00:00:00 --out corpus/
  wearssl ingest --labelled capture24/ --out sets/capture24 --name capture24 \\
      --label-map capture24_map.yaml --window-seconds 10
  wearssl ingest --labelled '../shared/data/geotec-watch/s*/*_sw.csv.gz' \\
      --out sets/geotec-watch --name geotec-watch --subject-from folder --units m/s2 \\
      --columns time=timestamp,x=x_acc,y=y_acc,z=z_acc,label=label \\
      --window-seconds 5 --step-seconds 1 --purity 0
  (geotec-watch's labelled segments all last under 3 s, so no 5-s window is 80 % pure:
  its windows take their most frequent label, and overlap to make more of them)
(python jobs/ingest.py takes the same arguments; it is what ray job submit runs.)
"""
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="files, folders or globs (local or URI)")
    parser.add_argument("--out", required=True, help="corpus (or labelled set) folder or URI")
    parser.add_argument("--labelled", action="store_true", help="import a labelled dataset")
    parser.add_argument("--rate", type=float, help="sample rate (Hz) of arrays / labelled data")
    parser.add_argument("--units", choices=UNITS, default="g", help="units of CSV and arrays")
    parser.add_argument(
        "--columns",
        action="append",
        metavar="ROLE=NAME",
        help=CSV_COLUMNS_HELP,
    )
    parser.add_argument("--max-gap", type=float, default=1.0, help="seconds that make a gap")

    raw = parser.add_argument_group("recordings (default mode)")
    raw.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    raw.add_argument("--num-cpus", type=int, help="CPUs of a local Ray instance")
    raw.add_argument("--subject-map", help="CSV with columns file,subject")
    raw.add_argument("--start", help="ISO start time of arrays without times")
    raw.add_argument("--timezone", default="UTC", help="wall-clock zone for absolute times")
    raw.add_argument("--window-format", choices=[f.value for f in WindowFormat], default="float16")
    raw.add_argument("--no-calibrate", action="store_true", help="skip gravity calibration")
    raw.add_argument("--no-nonwear", action="store_true", help="skip non-wear detection")
    raw.add_argument("--nonwear-minutes", type=float, default=90.0)
    raw.add_argument("--flush-seconds", type=float, default=5.0, help="manifest update interval")
    raw.add_argument("--no-progress", action="store_true", help="no Ray Data progress bar")

    labelled = parser.add_argument_group("labelled datasets (--labelled)")
    labelled.add_argument("--name", help="name of the labelled set")
    labelled.add_argument("--window-seconds", type=int, default=10)
    labelled.add_argument(
        "--purity", type=float, default=0.8, help="min share of the majority label (0: any)"
    )
    labelled.add_argument("--step-seconds", type=float, help="window step (default: no overlap)")
    labelled.add_argument("--label-map", nargs="+", metavar="MAP", help="YAML/JSON file or old=new")
    labelled.add_argument("--subject-from", choices=SUBJECT_SOURCES, default="file")


def run_labelled(args: argparse.Namespace) -> int:
    from wearssl.data.devices import CsvColumns
    from wearssl.data.ingest import EXIT_OK
    from wearssl.data.ingest_labelled import LabelledOptions, import_labelled, parse_label_map

    options = LabelledOptions(
        name=args.name or args.out.rstrip("/").rsplit("/", 1)[-1],
        window_seconds=args.window_seconds,
        sample_rate_hz=args.rate,
        units=args.units,
        columns=CsvColumns.parse(args.columns),
        label_map=parse_label_map(args.label_map),
        purity=args.purity,
        step_seconds=args.step_seconds,
        subject_from=args.subject_from,
        max_gap_seconds=args.max_gap,
    )
    summary = import_labelled(args.inputs, args.out, options)
    for line in summary.lines():
        print(line)
    return EXIT_OK


def run_recordings(args: argparse.Namespace) -> int:
    from wearssl.cli import require_input_file
    from wearssl.data.devices import ReadOptions
    from wearssl.data.ingest import IngestOptions, ingest_recordings
    from wearssl.data.preprocess import PreprocessOptions
    from wearssl.infra.ray_runtime import connect

    require_input_file(args.subject_map, "--subject-map")
    options = IngestOptions(
        read=ReadOptions.from_arguments(args),
        preprocess=PreprocessOptions(
            calibrate=not args.no_calibrate,
            detect_nonwear=not args.no_nonwear,
            nonwear_minutes=args.nonwear_minutes,
            max_gap_seconds=args.max_gap,
        ),
        window_format=WindowFormat(args.window_format),
        subject_map=args.subject_map,
        flush_seconds=args.flush_seconds,
        progress=not args.no_progress,
    )
    connect(args.address, args.num_cpus)
    return ingest_recordings(args.inputs, args.out, options).exit_status


def run(args: argparse.Namespace) -> int:
    from wearssl.cli import EXIT_USAGE, require_output_folder

    try:
        require_output_folder(args.out)
        return run_labelled(args) if args.labelled else run_recordings(args)
    except ValueError as error:
        print(f"ingest: error: {error}", file=sys.stderr)
        return EXIT_USAGE


COMMAND = Command(
    "ingest",
    "raw recordings into a corpus, or (--labelled) a labelled dataset into a window set",
    DESCRIPTION,
    EPILOG,
    add_arguments,
    run,
)
