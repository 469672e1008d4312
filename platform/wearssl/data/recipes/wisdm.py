"""WISDM smartwatch accelerometer (Weiss 2019, UCI id 507) with the paper's processing.

Input: the raw files ``data_<subject>_accel_watch.txt[.gz]`` anywhere under the folder
(as downloaded: ``wisdm-dataset/raw/watch/accel/``). Each line is
``subject,activity_code,timestamp,x,y,z;`` with x, y, z in m/s^2 and the timestamp in ns
of the watch's clock (not Unix time), nominally 20 Hz.

Processing, per subject and activity:

1. Samples sorted by time; a sample repeating the previous one's time is dropped.
2. A regular 20 Hz grid from the first sample to the last; each grid point takes the
   nearest sample within one grid period (50 ms; a tie goes to the later sample) and
   stays empty where there is none, so a gap is never bridged by a distant sample.
3. 10-s windows (200 grid points) starting every 5 s from the first grid point; a window
   touching an empty grid point is dropped.
4. Values divided by 9.81 (the constant of the paper's processing) for g, and each window
   resized to 300 samples (30 Hz) by linear interpolation.

Subjects 1616, 1618, 1637, 1639 and 1642 are left out, as in the paper (activities
missing). Lines that do not parse (field count, numbers, activity code) are counted and
reported, not fatal. Window times are the watch's clock, so they read as dates in 1970.
The set carries the paper's batch size for WISDM's networks, 500.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from wearssl.data.corpus import SAMPLE_RATE_HZ
from wearssl.data.recipes.common import (
    Progress,
    RecipeParts,
    RecipeSummary,
    RecipeWindows,
    no_progress,
    resize_windows,
    write_recipe_set,
)

ACTIVITIES = {
    "A": "walking",
    "B": "jogging",
    "C": "stairs",
    "D": "sitting",
    "E": "standing",
    "F": "typing",
    "G": "teeth",
    "H": "soup",
    "I": "chips",
    "J": "pasta",
    "K": "drinking",
    "L": "sandwich",
    "M": "kicking",
    "O": "catch",
    "P": "dribbling",
    "Q": "writing",
    "R": "clapping",
    "S": "folding",
}
LEFT_OUT_SUBJECTS = frozenset({"1616", "1618", "1637", "1639", "1642"})
GRAVITY = 9.81
GRID_NS = 50_000_000  # 20 Hz
WINDOW_SECONDS = 10
BATCH_SIZE = 500
WINDOW_POINTS = 200  # 10 s of the 20 Hz grid
STEP_POINTS = 100  # 5 s
FILE_PATTERN = re.compile(r"data_\d+_accel_watch\.txt(\.gz)?$")
COLUMNS = ("subject", "code", "time_ns", "x", "y", "z")
_DECIMAL = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_NO_SAMPLE = np.iinfo(np.int64).max


def wisdm_files(raw_dir: str) -> list[Path]:
    """The watch accelerometer files under ``raw_dir``, sorted by name."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"WISDM folder {raw_dir} does not exist")
    files = sorted(
        (p for p in root.rglob("data_*_accel_watch.txt*") if FILE_PATTERN.search(p.name)),
        key=lambda p: p.name,
    )
    if not files:
        raise ValueError(f"no data_<subject>_accel_watch.txt[.gz] files under {raw_dir}")
    return files


def read_wisdm_file(path: Path) -> tuple[pd.DataFrame, int]:
    """The parsed samples of one file (subject, code, time_ns, x, y, z in m/s^2) and the
    number of lines that did not parse."""
    skipped = 0

    def skip(row: pacsv.InvalidRow) -> str:
        nonlocal skipped
        skipped += 1
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            # latin-1 decodes any byte, so a corrupt line fails to parse instead of the file
            read_options=pacsv.ReadOptions(column_names=list(COLUMNS), encoding="latin-1"),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string())),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read as WISDM lines: {error}") from error
    text = {name: pc.utf8_trim_whitespace(table[name]) for name in COLUMNS}
    text["z"] = pc.utf8_rtrim(text["z"], characters="; \t")
    parsed = pc.and_(
        pc.match_substring_regex(text["subject"], r"^\d+$"),
        pc.is_in(text["code"], pa.array(list(ACTIVITIES))),
    )
    parsed = pc.and_(parsed, pc.match_substring_regex(text["time_ns"], r"^-?\d+$"))
    for axis in "xyz":
        parsed = pc.and_(parsed, pc.match_substring_regex(text[axis], _DECIMAL))
    parsed = pc.fill_null(parsed, False)
    kept = {name: pc.filter(column, parsed) for name, column in text.items()}
    samples = pd.DataFrame(
        {
            "subject": kept["subject"].to_numpy(zero_copy_only=False),
            "code": kept["code"].to_numpy(zero_copy_only=False),
            "time_ns": pc.cast(kept["time_ns"], pa.int64()).to_numpy(),
            **{axis: pc.cast(kept[axis], pa.float64()).to_numpy() for axis in "xyz"},
        }
    )
    return samples, skipped + table.num_rows - len(samples)


def nearest_on_grid(times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 20 Hz grid from the first to the last of the increasing ``times_ns``, and per
    grid point the index of the nearest sample within one grid period, or -1 where none
    is (ties go to the later sample)."""
    count = int((times_ns[-1] - times_ns[0]) // GRID_NS) + 1
    grid = times_ns[0] + np.arange(count, dtype=np.int64) * GRID_NS
    after = np.searchsorted(times_ns, grid, side="left")  # first sample at or after
    before = after - 1
    last = len(times_ns) - 1
    to_after = np.where(after <= last, times_ns[np.minimum(after, last)] - grid, _NO_SAMPLE)
    to_before = np.where(before >= 0, grid - times_ns[np.maximum(before, 0)], _NO_SAMPLE)
    nearest = np.where(to_before < to_after, before, after)
    nearest[np.minimum(to_before, to_after) > GRID_NS] = -1
    return grid, nearest


def grid_windows(times_ns: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One activity's ``(n, 200, 3)`` windows on the 20 Hz grid, their start times, and
    how many windows were dropped for touching an empty grid point."""
    grid, nearest = nearest_on_grid(times_ns)
    starts = np.arange(0, len(grid) - WINDOW_POINTS + 1, STEP_POINTS)
    empty_before = np.concatenate([[0], np.cumsum(nearest < 0)])
    touching = empty_before[starts + WINDOW_POINTS] - empty_before[starts] > 0
    starts = starts[~touching]
    index = nearest[starts[:, None] + np.arange(WINDOW_POINTS)]
    return xyz[index], grid[starts], int(touching.sum())


def wisdm_windows(raw_dir: str, progress: Progress = no_progress) -> RecipeWindows:
    """All windows of the WISDM watch accelerometer files under ``raw_dir`` (see the
    module docstring)."""
    files = wisdm_files(raw_dir)
    parts = RecipeParts()
    bad_lines = repeated = touching = 0
    left_out: set[str] = set()
    for number, path in enumerate(files, 1):
        samples, bad = read_wisdm_file(path)
        bad_lines += bad
        made = 0
        for (subject, code), group in samples.groupby(["subject", "code"], sort=True):
            if subject in LEFT_OUT_SUBJECTS:
                left_out.add(subject)
                continue
            group = group.sort_values("time_ns", kind="stable")
            time_ns = group["time_ns"].to_numpy()
            fresh = np.concatenate([[True], np.diff(time_ns) > 0])
            repeated += int((~fresh).sum())
            xyz = group[["x", "y", "z"]].to_numpy(np.float32)[fresh]
            part, starts, dropped = grid_windows(time_ns[fresh], xyz)
            touching += dropped
            if len(part) == 0:
                continue
            parts.add(
                resize_windows(part / np.float32(GRAVITY), WINDOW_SECONDS * SAMPLE_RATE_HZ),
                ACTIVITIES[code],
                subject,
                starts // 1_000_000,
            )
            made += len(part)
        progress(f"wisdm: {number}/{len(files)} {path.name}: {made} windows")
    dropped = {
        "lines that did not parse": bad_lines,
        "samples repeating the previous time": repeated,
        "windows touching an empty grid point": touching,
        "subjects left out as in the paper": len(left_out),
    }
    return parts.finished("WISDM", raw_dir, len(files), dropped)


def import_wisdm(
    raw_dir: str, out: str, name: str = "wisdm", progress: Progress = no_progress
) -> RecipeSummary:
    """WISDM's watch accelerometer as a labelled set of 10-s windows at ``out``."""
    part = wisdm_windows(raw_dir, progress)
    return write_recipe_set(out, name, WINDOW_SECONDS, list(ACTIVITIES.values()), BATCH_SIZE, part)
