"""Benchmark (issue 8 item 4): the window storage formats, on disk and in the sampler.

    python bench/formats.py [--repeats 3]

One synthetic subject-day (8,640 windows) is written with ``corpus.write_day`` (zstd
Parquet) as float32, float16 and int16 milli-g, each in the ``window`` layout of corpus
version 2 (one fixed-size binary value per window) and of version 1 (a fixed-size list
of 900 values). For each: bytes per window on disk; read + decode of the whole day
(``corpus.read_day`` + ``corpus.decode_windows``) in windows per CPU-second; the
sampler's draw (``epochs.draw_windows``, 1,500 std-weighted windows) in windows per
CPU-second; the largest error against float32 in milli-g; and the read bandwidth a
100,000-subject epoch needs at 100,000 windows/s, where every draw of 1,500 windows
reads a whole 8,640-window day file. The recommended format is chosen among the
layout new corpora are written in.

Synthetic days hold the AX3's raw 1/256 g steps, which float16 stores exactly and which
zstd finds in float32 too. A real corpus is resampled to 30 Hz: interpolated values lie
off that grid, so there float32 compresses worse and float16 rounds (by at most 0.5 mg
below 2 g). Bytes per window are therefore indicative; the ranking decides the default.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hardware  # noqa: E402
from wearssl.data import corpus  # noqa: E402
from wearssl.data import sampler as epochs  # noqa: E402
from wearssl.data.corpus import WindowFormat  # noqa: E402
from wearssl.data.synthetic import synth_subject_day  # noqa: E402

TARGET_WINDOWS_PER_S = 100_000
WINDOWS_PER_DRAW = 1500
EPOCH_SUBJECT_DAYS = 80_000
"""An epoch of the 100k-subject corpus reads one day of each of ~80k training subjects."""
AX3_RESOLUTION_MG = 3.9
LAYOUTS = {corpus.CORPUS_VERSION: "binary", corpus.LIST_LAYOUT_VERSION: "list"}
SAME_SIZE = 0.05
"""Formats within 5 % of the smallest on disk count as equally small."""


def source_day(seed: int = 0) -> dict:
    """One synthetic subject-day as float32 windows in g, with its times and wear flags."""
    subject, day, table = synth_subject_day(0, 0, seed, WindowFormat.FLOAT32)
    return {
        "subject": subject,
        "day": day,
        "times_ms": table["time"].cast("int64").to_numpy(),
        "windows": corpus.decode_windows(table),
        "wear": table["wear"].to_numpy(zero_copy_only=False),
    }


def measure_format(
    source: dict,
    window_format: WindowFormat,
    folder: Path,
    repeats: int,
    version: int = corpus.CORPUS_VERSION,
) -> dict:
    """Size, decode and draw speed, and precision of one storage format in the ``window``
    layout of corpus ``version``."""
    table = corpus.day_table(
        source["subject"],
        source["day"],
        source["times_ms"],
        source["windows"],
        source["wear"],
        window_format,
        version,
    )
    root = str(folder / f"v{version}-{window_format.value}")
    entry = corpus.write_day(root, table, "bench")
    file_bytes = (Path(root) / entry["file"]).stat().st_size
    n_windows = entry["n_windows"]

    def decode() -> np.ndarray:
        return corpus.decode_windows(corpus.read_day(root, entry))

    decoded = decode()
    decode_timing = hardware.timed(lambda: [decode() for _ in range(repeats)])
    drawn = 0

    def draw() -> None:
        nonlocal drawn
        for seed in range(repeats):
            item = {**entry, "seed": seed}
            drawn += len(epochs.draw_windows(root, item, WINDOWS_PER_DRAW, True))

    draw_timing = hardware.timed(draw)
    bytes_per_drawn_window = file_bytes / WINDOWS_PER_DRAW
    return {
        "format": window_format.value,
        "version": version,
        "layout": LAYOUTS[version],
        "file_bytes": file_bytes,
        "bytes_per_window": file_bytes / n_windows,
        "decode_windows_per_cpu_s": decode_timing.rates(n_windows * repeats)["per_cpu_s"],
        "draw_windows_per_cpu_s": draw_timing.rates(drawn)["per_cpu_s"],
        "max_error_mg": float(np.abs(decoded - source["windows"]).max() * corpus.MILLI_G),
        "read_gb_per_s_at_target": TARGET_WINDOWS_PER_S * bytes_per_drawn_window / 1e9,
        "epoch_read_tb": EPOCH_SUBJECT_DAYS * file_bytes / 1e12,
    }


def recommend(rows: list[dict]) -> dict:
    """The default by the numbers: among formats that keep the AX3's resolution, the
    smallest on disk (reading is the cluster-wide limit at scale, DESIGN §2); among
    equally small ones, the fastest draw."""
    precise = [r for r in rows if r["max_error_mg"] <= AX3_RESOLUTION_MG]
    smallest = min(r["file_bytes"] for r in precise)
    small = [r for r in precise if r["file_bytes"] <= smallest * (1 + SAME_SIZE)]
    chosen = max(small, key=lambda r: r["draw_windows_per_cpu_s"])
    float32 = next(r for r in rows if r["format"] == WindowFormat.FLOAT32.value)
    reason = (
        f"{chosen['format']}: {chosen['bytes_per_window']:.0f} B/window "
        f"({chosen['file_bytes'] / float32['file_bytes']:.0%} of float32), "
        f"{chosen['read_gb_per_s_at_target']:.2f} GB/s at {TARGET_WINDOWS_PER_S:,} windows/s, "
        f"max error {chosen['max_error_mg']:.2f} mg (AX3 step {AX3_RESOLUTION_MG} mg)"
    )
    return {"format": chosen["format"], "reason": reason}


def measure(repeats: int = 3, seed: int = 0) -> dict:
    source = source_day(seed)
    with tempfile.TemporaryDirectory(prefix="wearssl-formats-") as tmp:
        rows = [
            measure_format(source, f, Path(tmp), repeats, version)
            for version in LAYOUTS
            for f in WindowFormat
        ]
    return {
        "windows_per_day": len(source["windows"]),
        "windows_per_draw": WINDOWS_PER_DRAW,
        "target_windows_per_s": TARGET_WINDOWS_PER_S,
        "formats": rows,
        "recommended": recommend([r for r in rows if r["version"] == corpus.CORPUS_VERSION]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.repeats)
    print(
        f"{'format':<10}{'layout':<8}{'B/window':>10}{'decode w/cpu-s':>16}{'draw w/cpu-s':>14}"
        f"{'max err mg':>12}{'GB/s @100k':>12}{'TB/epoch':>10}"
    )
    for row in result["formats"]:
        print(
            f"{row['format']:<10}{row['layout']:<8}{row['bytes_per_window']:>10.0f}"
            f"{row['decode_windows_per_cpu_s']:>16,.0f}{row['draw_windows_per_cpu_s']:>14,.0f}"
            f"{row['max_error_mg']:>12.2f}{row['read_gb_per_s_at_target']:>12.2f}"
            f"{row['epoch_read_tb']:>10.2f}"
        )
    print(f"recommended default: {result['recommended']['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
