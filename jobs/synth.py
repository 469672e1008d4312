"""Write a synthetic free-living corpus.

python jobs/synth.py --subjects 20 --days 7 --out data/synthetic [--seed 0]
    [--format float16|int16_mg|float32] [--workers W]
"""

from __future__ import annotations

import argparse
import time

from wearssl.data.corpus import WindowFormat
from wearssl.data.synthetic import manifest_summary, write_synthetic_corpus


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=_at_least(1), required=True, help="number of subjects")
    parser.add_argument("--days", type=_at_least(1), required=True, help="days per subject")
    parser.add_argument("--out", required=True, help="corpus folder or URI")
    parser.add_argument("--seed", type=_at_least(0), default=0)
    parser.add_argument(
        "--format",
        choices=[f.value for f in WindowFormat],
        default=WindowFormat.FLOAT16.value,
        help="how window samples are stored",
    )
    parser.add_argument(
        "--workers", type=_at_least(1), default=None, help="processes (default: CPU count)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
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


if __name__ == "__main__":
    main()
