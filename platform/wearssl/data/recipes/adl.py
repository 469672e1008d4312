"""UCI "Dataset for ADL Recognition with Wrist-worn Accelerometer" (HMP; Bruno et al.
2013) with the paper's processing.

Input: the dataset's folder, one sub-folder per activity (``Climb_stairs/``, ``Walk/``,
...) of trial files ``Accelerometer-<YYYY-MM-DD-HH-MM-SS>-<activity>-<subject>.txt``, one
line ``x y z`` per sample, integer codes 0..63 at 32 Hz with ``g = code / 63 * 3 - 1.5``.

Kept as in the paper: subjects f1, f2, f3, m1, m2, m3, m4 and the activities
climb_stairs, drink_glass, pour_water, walk and getup_bed (the folder name, in any case,
gives the class). The ``*_MODEL`` folders are not read: they hold the trials the
dataset's authors built their own models from. Every trial file is cut on its own into
10-s windows (320 samples) every 5 s from its first sample; the incomplete tail is
dropped, so a trial under 10 s gives no window. Each window is resized to 300 samples
(30 Hz) by linear interpolation. A window starts at the time in the file name (taken as
UTC) plus its offset. Lines that are not three codes in 0..63 are counted and dropped;
files named otherwise are counted and not read. The set carries the paper's batch size for
ADL's networks, 50.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

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

ACTIVITIES = ("climb_stairs", "drink_glass", "pour_water", "walk", "getup_bed")
SUBJECTS = ("f1", "f2", "f3", "m1", "m2", "m3", "m4")
RATE_HZ = 32
WINDOW_SECONDS = 10
BATCH_SIZE = 50  # a small set needs small batches for enough steps per epoch
WINDOW_SAMPLES = WINDOW_SECONDS * RATE_HZ
STEP_SAMPLES = WINDOW_SAMPLES // 2
MAX_CODE = 63
CODE = re.compile(r"[0-9]{1,2}")
FILE_NAME = re.compile(
    r"Accelerometer-(?P<start>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-(?P<activity>.+)-"
    r"(?P<subject>[fm]\d+)\.txt$"
)


def codes_to_g(codes: np.ndarray) -> np.ndarray:
    """The dataset's 6-bit codes (0..63 spanning -1.5 g to +1.5 g) in g."""
    return codes.astype(np.float32) / MAX_CODE * 3 - 1.5


def read_trial(path: Path) -> tuple[np.ndarray, int]:
    """A trial file's ``(n, 3)`` codes and the number of lines that are not three codes."""
    rows, bad = [], 0
    for line in path.read_text(encoding="latin-1").splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 3 and all(CODE.fullmatch(f) and int(f) <= MAX_CODE for f in fields):
            rows.append([int(f) for f in fields])
        else:
            bad += 1
    return np.array(rows, dtype=np.int64).reshape(-1, 3), bad


def trial_windows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A trial's ``(n, 320, 3)`` windows in g and their first samples' indices."""
    starts = np.arange(0, len(codes) - WINDOW_SAMPLES + 1, STEP_SAMPLES)
    windows = codes[starts[:, None] + np.arange(WINDOW_SAMPLES)]
    return codes_to_g(windows), starts


def trial_start_ms(stamp: str) -> int:
    moment = datetime.strptime(stamp, "%Y-%m-%d-%H-%M-%S").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000


def adl_trials(raw_dir: str) -> tuple[list[tuple[str, Path]], list[Path]]:
    """The (activity, file) of every trial to read, and the files named otherwise."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"ADL folder {raw_dir} does not exist")
    folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    missing = [activity for activity in ACTIVITIES if activity not in folders]
    if len(missing) == len(ACTIVITIES):
        raise ValueError(
            f"{raw_dir} has none of the activity folders {list(ACTIVITIES)} "
            "(give the dataset's top folder, e.g. HMP_Dataset)"
        )
    trials, misnamed = [], []
    for activity in ACTIVITIES:
        for path in sorted(folders[activity].glob("*.txt")) if activity in folders else []:
            if FILE_NAME.match(path.name):
                trials.append((activity, path))
            else:
                misnamed.append(path)
    return trials, misnamed


def adl_windows(raw_dir: str, progress: Progress = no_progress) -> RecipeWindows:
    """All windows of the paper's ADL subjects and activities under ``raw_dir``."""
    trials, misnamed = adl_trials(raw_dir)
    parts = RecipeParts()
    bad_lines = short = other_subjects = 0
    for number, (activity, path) in enumerate(trials, 1):
        name = FILE_NAME.match(path.name)
        subject = name["subject"]
        if subject not in SUBJECTS:
            other_subjects += 1
            continue
        codes, bad = read_trial(path)
        bad_lines += bad
        part, starts = trial_windows(codes)
        if len(part) == 0:
            short += 1
            continue
        parts.add(
            resize_windows(part, WINDOW_SECONDS * SAMPLE_RATE_HZ),
            activity,
            subject,
            trial_start_ms(name["start"]) + starts * 1000 // RATE_HZ,
        )
        if number % 50 == 0:
            progress(f"adl: {number}/{len(trials)} trial files read")
    dropped = {
        "files not named Accelerometer-<time>-<activity>-<subject>.txt": len(misnamed),
        "trial files of other subjects": other_subjects,
        "trials shorter than 10 s": short,
        "lines that are not three codes in 0..63": bad_lines,
    }
    made = parts.finished("ADL", raw_dir, len(trials), dropped)
    made.subject_order = [subject for subject in SUBJECTS if subject in made.subject_order]
    return made


def import_adl(
    raw_dir: str, out: str, name: str = "adl", progress: Progress = no_progress
) -> RecipeSummary:
    """The ADL (HMP) dataset as a labelled set of 10-s windows at ``out``."""
    part = adl_windows(raw_dir, progress)
    return write_recipe_set(out, name, WINDOW_SECONDS, list(ACTIVITIES), BATCH_SIZE, part)
