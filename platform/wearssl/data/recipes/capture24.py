"""Capture-24 (Chan et al. 2024): free-living wrist recordings with annotations.

Input: the dataset's folder with ``P001.csv.gz`` ... (columns ``time,x,y,z,annotation``,
100 Hz, in g; the annotation is free text, empty where nothing was annotated) and
``annotation-label-dictionary.csv``, which maps each annotation (column ``annotation``)
to the labels of several schemes (columns ``label:Walmsley2020``,
``label:WillettsSpecific2018``, ...). The scheme is chosen by its column name.

Each file is resampled to 30 Hz (``wearssl.data.preprocess``: anti-alias low-pass, linear
interpolation) and cut into 10-s windows, one after another from its first sample; each
window sample takes the annotation of the latest raw sample at or before it. A window
is kept only when all its samples carry one annotation that the scheme maps to a label.
Dropped, and counted apart: windows with mixed annotations (a change of activity inside
the window), windows with a missing annotation or one the scheme maps to nothing,
windows over a gap in the data, and windows whose annotation is not in the dictionary.
The subject is the file name (``P001``); subjects keep the files' order. The set carries
the reference setup's batch size for Capture-24's networks, 1,000.

All windows are held in memory before the set is written: about 1 GB per 30 recorded
days.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from wearssl.data.devices import CsvColumns
from wearssl.data.ingest_labelled import LabelledOptions, windows_from_csv
from wearssl.data.recipes import CAPTURE24_DEFAULT_SCHEME
from wearssl.data.recipes.common import (
    Progress,
    RecipeParts,
    RecipeSummary,
    RecipeWindows,
    no_progress,
    write_recipe_set,
)

DICTIONARY = "annotation-label-dictionary.csv"
ANNOTATION = "annotation"
SCHEME_PREFIX = "label:"
DEFAULT_SCHEME = CAPTURE24_DEFAULT_SCHEME
WINDOW_SECONDS = 10
BATCH_SIZE = 1000  # the reference setup's batch for this set
FILE_NAME = re.compile(r"(P\d+)\.csv(\.gz)?$")
MIXED = "windows with mixed annotations"
MISSING = "windows with a missing or unmapped annotation"
OVER_GAP = "windows over a gap"
UNKNOWN = f"windows with an annotation not in {DICTIONARY}"


def read_scheme(raw_dir: str, scheme: str) -> dict[str, str | None]:
    """Annotation -> label of ``scheme`` (None where the scheme gives no label)."""
    path = Path(raw_dir) / DICTIONARY
    if not path.is_file():
        raise FileNotFoundError(f"Capture-24 label dictionary {path} is missing")
    table = pd.read_csv(path, dtype=str)
    schemes = [column for column in table.columns if column.startswith(SCHEME_PREFIX)]
    if ANNOTATION not in table.columns:
        raise ValueError(f"{path} has no column {ANNOTATION!r}")
    if scheme not in table.columns:
        raise ValueError(f"{path} has no label scheme {scheme!r}; it has {schemes}")
    labels = table[scheme].str.strip()
    mapping: dict[str, str | None] = {"": None}  # unannotated time: an empty field
    for annotation, label in zip(table[ANNOTATION], labels, strict=True):
        mapping[annotation] = None if pd.isna(label) or label == "" else label
    return mapping


def capture24_files(raw_dir: str) -> list[Path]:
    """The participants' files ``P<number>.csv[.gz]``, sorted by name."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Capture-24 folder {raw_dir} does not exist")
    files = sorted(p for p in root.iterdir() if p.is_file() and FILE_NAME.fullmatch(p.name))
    if not files:
        raise ValueError(f"no P<number>.csv.gz files in {raw_dir}")
    return files


def capture24_windows(
    raw_dir: str, scheme: str = DEFAULT_SCHEME, progress: Progress = no_progress
) -> tuple[RecipeWindows, list[str]]:
    """All labelled windows of the Capture-24 files under ``raw_dir`` (see the module
    docstring), and the scheme's label names in sorted order."""
    mapping = read_scheme(raw_dir, scheme)
    label_names = sorted({label for label in mapping.values() if label is not None})
    known = set(label_names)
    files = capture24_files(raw_dir)
    options = LabelledOptions(
        name="capture24",
        window_seconds=WINDOW_SECONDS,
        units="g",
        columns=CsvColumns(label=ANNOTATION),
        label_map=mapping,
        purity=1.0,
    )
    parts = RecipeParts()
    dropped = dict.fromkeys((MIXED, MISSING, OVER_GAP, UNKNOWN), 0)
    for number, path in enumerate(files, 1):
        part = windows_from_csv(str(path), options)
        in_scheme = np.array([label in known for label in part.labels], dtype=bool)
        dropped[MIXED] += part.impure
        dropped[MISSING] += part.null
        dropped[OVER_GAP] += part.gap
        dropped[UNKNOWN] += int((~in_scheme).sum())
        subject = FILE_NAME.fullmatch(path.name).group(1)
        kept = int(in_scheme.sum())
        if kept:
            parts.add(
                part.windows[in_scheme], part.labels[in_scheme], subject, part.times_ms[in_scheme]
            )
        progress(f"capture24: {number}/{len(files)} {path.name}: {kept} windows")
    return parts.finished("Capture-24", raw_dir, len(files), dropped), label_names


def import_capture24(
    raw_dir: str,
    out: str,
    scheme: str = DEFAULT_SCHEME,
    name: str = "capture24",
    progress: Progress = no_progress,
) -> RecipeSummary:
    """Capture-24 as a labelled set of 10-s windows labelled by ``scheme`` at ``out``."""
    part, label_names = capture24_windows(raw_dir, scheme, progress)
    return write_recipe_set(out, name, WINDOW_SECONDS, label_names, BATCH_SIZE, part)
