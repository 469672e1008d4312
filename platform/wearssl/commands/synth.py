"""``wearssl synth``: write a synthetic free-living corpus."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from wearssl.commands.command import Command, exit_status
from wearssl.data.corpus import WindowFormat

DESCRIPTION = "Write a synthetic free-living corpus."
EPILOG = exit_status("0 done", "2 usage error") + (
    "\nexample:\n  wearssl synth --subjects 20 --days 7 --out data/synthetic --format float16\n"
)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no less than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", type=at_least(1), required=True, help="number of subjects")
    parser.add_argument("--days", type=at_least(1), required=True, help="days per subject")
    parser.add_argument("--out", required=True, help="corpus folder or URI")
    parser.add_argument("--seed", type=at_least(0), default=0)
    parser.add_argument(
        "--format",
        choices=[f.value for f in WindowFormat],
        default=WindowFormat.FLOAT16.value,
        help="how window samples are stored",
    )
    parser.add_argument(
        "--workers", type=at_least(1), default=None, help="processes (default: CPU count)"
    )


def run(args: argparse.Namespace) -> int:
    from wearssl.data.synthetic import manifest_summary, write_synthetic_corpus

    began = time.perf_counter()
    manifest = write_synthetic_corpus(
        args.out,
        args.subjects,
        args.days,
        seed=args.seed,
        window_format=WindowFormat(args.format),
        workers=args.workers,
    )
    wall_s = time.perf_counter() - began
    summary = ", ".join(f"{key} {value}" for key, value in manifest_summary(manifest).items())
    print(f"corpus {args.out}: {summary}")
    print(f"wall time {wall_s:.1f} s")
    return 0


COMMAND = Command(
    "synth", "write a synthetic free-living corpus", DESCRIPTION, EPILOG, add_arguments, run
)
