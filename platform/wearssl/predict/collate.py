"""Merge the per-recording outputs of prediction folders into one table of each kind:
days, Info, hours and bouts, with the recording (file stem) and subject in front."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wearssl.predict import COLLATED_NAME as COLLATED_NAME
from wearssl.predict.outputs import (
    BOUTS_SUFFIX,
    DAILY_SUFFIX,
    HOURLY_SUFFIX,
    INFO_SUFFIX,
    write_table,
)
from wearssl.predict.summary import DAY_FLAGS

LEGACY_DAILY_SUFFIX = "-dailySummary.csv"
LEGACY_INFO_SUFFIX = "-info.json"
"""Names of the daily summary and info file written before the -Daily.csv / -Info.json
outputs; collate still reads folders that hold them."""
DAILY_SUFFIXES = (DAILY_SUFFIX, LEGACY_DAILY_SUFFIX)


@dataclass(frozen=True)
class CollatedRecording:
    """One recording's output folder: its stem, daily table and Info file."""

    stem: str
    daily: Path

    def sibling(self, *suffixes: str) -> Path | None:
        """The first of the recording's files with these suffixes that exists."""
        for suffix in suffixes:
            path = self.daily.with_name(f"{self.stem}{suffix}")
            if path.is_file():
                return path
        return None

    def info(self) -> dict[str, Any]:
        path = self.sibling(INFO_SUFFIX, LEGACY_INFO_SUFFIX)
        return json.loads(path.read_text()) if path else {}


def collated_paths(daily_out: str | Path) -> dict[str, Path]:
    """Where collate writes: the daily table at ``daily_out`` and, beside it, the others
    named from its base (``all-days.csv`` -> ``all-days-Info.csv``,
    ``all-days-Hourly.csv.gz``, ``all-days-Bouts.csv.gz``; a ``-Daily`` ending is dropped
    from the base: ``collated-Daily.csv`` -> ``collated-Info.csv``)."""
    out = Path(daily_out)
    base = out.name.removesuffix(".gz").removesuffix(".csv").removesuffix("-Daily")
    return {
        "daily": out,
        "info": out.with_name(f"{base}-Info.csv"),
        "hourly": out.with_name(f"{base}{HOURLY_SUFFIX}"),
        "bouts": out.with_name(f"{base}{BOUTS_SUFFIX}"),
    }


def find_recordings(folders: list[str | Path]) -> list[CollatedRecording]:
    """The recordings with a daily table under ``folders`` (searched recursively), each
    stem once: where two folders hold the same recording, the first found (folders in the
    order given) is kept and a warning names the recording and both folders."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"collate: {folder} is not a folder")
        found += sorted(p for suffix in DAILY_SUFFIXES for p in folder.rglob(f"*{suffix}"))
    if not found:
        raise ValueError(
            f"collate: no *{DAILY_SUFFIX} (or *{LEGACY_DAILY_SUFFIX}) file under "
            f"{[str(f) for f in folders]}"
        )
    kept: dict[str, CollatedRecording] = {}
    for path in dict.fromkeys(p.resolve() for p in found):
        suffix = next(s for s in DAILY_SUFFIXES if path.name.endswith(s))
        stem = path.name[: -len(suffix)]
        if stem in kept:
            warnings.warn(
                f"collate: recording {stem!r} is summarised in both {kept[stem].daily.parent} "
                f"and {path.parent}; it is collated once, from {kept[stem].daily.parent}",
                stacklevel=2,
            )
            continue
        kept[stem] = CollatedRecording(stem, path)
    return list(kept.values())


def info_row(info: dict[str, Any]) -> dict[str, Any]:
    """An Info file flattened to one row: nested keys joined with ``.``, lists (the
    non-wear episodes, calibration offsets) kept as JSON text."""
    row = pd.json_normalize(info, sep=".").iloc[0].to_dict() if info else {}
    return {
        key: json.dumps(value) if isinstance(value, list) else value for key, value in row.items()
    }


def _stacked(rows: list[pd.DataFrame]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=["recording", "subject"])
    return pd.concat(rows, ignore_index=True, sort=False)


def collate(folders: list[str | Path], out: str | Path) -> dict[str, pd.DataFrame]:
    """Merge the outputs found under ``folders`` (see :func:`find_recordings`) into the
    tables of :func:`collated_paths` (``out`` is the daily one; CSV, gzipped when the name
    ends in ``.gz``), each with ``recording`` (file stem) and ``subject`` (the pseudonym
    of its Info file) in front:

    * daily: one row per recording-day, the ``-Daily.csv`` columns;
    * info: one row per recording, :func:`info_row` of its ``-Info.json``;
    * hourly: one row per recording-hour; bouts: one row per bout.

    Label columns of models with different classes are merged; a column a model lacks is
    left empty. Returns the tables by name."""
    rows: dict[str, list[pd.DataFrame]] = {"daily": [], "info": [], "hourly": [], "bouts": []}
    for recording in find_recordings(folders):
        info = recording.info()
        subject = info.get("Subject", info.get("subject"))
        tables = {
            "daily": pd.read_csv(recording.daily, dtype={"day": str}),
            "info": pd.DataFrame([info_row(info)]),
        }
        for kind, suffix in (("hourly", HOURLY_SUFFIX), ("bouts", BOUTS_SUFFIX)):
            path = recording.sibling(suffix)
            if path is not None:
                tables[kind] = pd.read_csv(path)
        for kind, table in tables.items():
            table = table.drop(columns=["recording", "subject", "Subject"], errors="ignore")
            table.insert(0, "subject", subject)
            table.insert(0, "recording", recording.stem)
            rows[kind].append(table)
    merged = {kind: _stacked(tables) for kind, tables in rows.items()}
    daily = merged["daily"]
    merged["daily"] = daily[
        [c for c in daily.columns if c not in DAY_FLAGS] + [c for c in DAY_FLAGS if c in daily]
    ]
    for kind, path in collated_paths(out).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(merged[kind], path, float_format=None)  # as read, Info's in full
    return merged
