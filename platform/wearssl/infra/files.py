"""Files that jobs write where a reader (a resumed run, another node) may look at any time.

Every file is written under a temporary name and renamed, so a reader never sees half of
one; markers count how often something happened (one file each, so concurrent writers never
collide).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def write_json(path: str | os.PathLike, value: Any) -> None:
    write_atomically(path, lambda partial: partial.write_text(json.dumps(value, indent=2)))


def write_parquet(path: str | os.PathLike, table: pa.Table) -> None:
    write_atomically(path, lambda partial: pq.write_table(table, partial))


def storage_location(path: str) -> str:
    """A storage URI as given, a local path made absolute (Ray Tune and Train need that)."""
    return path if "://" in path else str(Path(path).resolve())


def add_marker(folder: str | os.PathLike, key: str) -> int:
    """Add one marker file for ``key`` to ``folder``; how many markers it now holds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = {"trial": key, "at": time.time(), "pid": os.getpid()}
    (folder / f"{uuid.uuid4().hex}.json").write_text(json.dumps(marker))
    return count_markers(folder)


def count_markers(folder: str | os.PathLike) -> int:
    folder = Path(folder)
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0
