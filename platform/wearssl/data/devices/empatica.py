"""Empatica E4 ``ACC.csv`` / ``ACC.csv.gz`` files (told apart by their file name): row 1
the start as Unix time (UTC) repeated per column, row 2 the sample rate (32 Hz), then one
``x,y,z`` row per sample in 1/64 g (range +-2 g). The recording is named after its folder
(one folder per session: ``S01/ACC.csv.gz`` is ``S01``)."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from wearssl.data.devices.clock import wall_clock_offset_ns
from wearssl.data.devices.csv_file import read_csv_table
from wearssl.data.devices.options import ReadOptions
from wearssl.data.devices.recording import (
    DROPPED_MALFORMED,
    Recording,
    RecordingError,
    checked_recording,
    regular_times,
)

E4_FILE_NAMES = ("acc.csv", "acc.csv.gz")
E4_COUNTS_PER_G = 64.0
E4_RANGE_G = 2.0


def read_e4(path: str, options: ReadOptions) -> Recording:
    """An Empatica E4 ``ACC.csv`` (layout in the module docstring). Sample times come
    from the start, the rate and the row number; a malformed line dropped shifts the
    samples after it by one period, which the reader's note counts."""
    starts, rates = _e4_header(path)
    rate = options.sample_rate_hz or rates
    start_utc_ns = round(starts * 1_000_000) * 1_000
    offset = wall_clock_offset_ns(start_utc_ns, options.timezone)
    read_options = pacsv.ReadOptions(skip_rows=2, autogenerate_column_names=True)
    types = {f"f{axis}": pa.float32() for axis in range(3)}
    try:
        table, malformed = read_csv_table(path, read_options, types)
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as error:
        raise RecordingError(f"{path}: cannot read the E4 samples (x,y,z rows): {error}") from error
    if table.num_rows == 0:
        raise RecordingError(f"{path}: E4 file has no samples")
    counts = np.column_stack([table[name].to_numpy(zero_copy_only=False) for name in types]).astype(
        np.float32
    )
    times = regular_times(start_utc_ns + offset, len(counts), rate)
    return checked_recording(
        path,
        "E4",
        times,
        counts / np.float32(E4_COUNTS_PER_G),
        options,
        {DROPPED_MALFORMED: malformed},
        rate=rate,
        utc_offset_ns=offset,
        units="g",
        limit_g=E4_RANGE_G,
        resolution_g=1 / E4_COUNTS_PER_G,
    )


def _e4_header(path: str) -> tuple[float, float]:
    """The start (Unix seconds) and rate (Hz) in rows 1 and 2 of an E4 file."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            rows = [f.readline(), f.readline()]
        start, rate = ({float(value) for value in row.split(",")} for row in rows)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordingError(
            f"{path}: not an Empatica E4 file: rows 1 and 2 must hold the start (Unix "
            f"seconds) and the sample rate, one value per column ({error})"
        ) from error
    if len(start) != 1 or len(rate) != 1 or not min(rate) > 0:
        raise RecordingError(
            f"{path}: not an Empatica E4 file: row 1 {rows[0].strip()!r} and row 2 "
            f"{rows[1].strip()!r} must repeat one start time and one positive rate"
        )
    return start.pop(), rate.pop()
