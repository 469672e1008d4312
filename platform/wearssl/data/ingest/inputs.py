"""Which files an ingest run reads and whose they are: inputs expanded from files,
folders and globs, the subject of each file, its content hash, and the memory a task
reading it reserves."""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import io
import math
import os
from pathlib import Path

import pyarrow.fs as pafs

from wearssl.data import corpus
from wearssl.data.devices import (
    RecordingError,
    estimated_samples,
    recording_format,
    recording_stem,
)

HASH_CHUNK_BYTES = 8 << 20
TASK_BASE_MEMORY = 512 << 20
# Peak bytes per raw sample of one task. bench/ingest.py measured 2.0 GiB for 60 M samples
# read from .npy (~33 B/sample over the base); actipy's readers grow 28-B/sample arrays by
# doubling before the float32 copy, so device files need more.
TASK_BYTES_PER_SAMPLE = 80
_GLOB_CHARACTERS = set("*?[")


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _files_under(fs: pafs.FileSystem, base: str) -> list[str]:
    selector = pafs.FileSelector(base, recursive=True)
    return [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _as_input(fs: pafs.FileSystem, original: str, path: str) -> str:
    """A path as the tasks should open it: URIs keep their scheme."""
    if _is_uri(original):
        scheme = original.split("://", 1)[0]
        return f"{scheme}://{path.lstrip('/')}" if scheme != "file" else path
    return path


def expand_inputs(inputs: list[str]) -> tuple[list[str], int]:
    """Files to ingest from files, folders and globs, and how many files in folders were
    ignored for an unsupported extension. A missing input is a ValueError."""
    files: list[str] = []
    ignored = 0
    for item in inputs:
        if _GLOB_CHARACTERS & set(item):
            if _is_uri(item):
                base = item.split("://", 1)[1].split("*", 1)[0].rsplit("/", 1)[0]
                fs, _ = corpus.resolve(item.split("://", 1)[0] + "://" + base)
                pattern = item.split("://", 1)[1]
                matches = [
                    _as_input(fs, item, p)
                    for p in _files_under(fs, base)
                    if fnmatch.fnmatch(p, pattern)
                ]
            else:
                matches = [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not matches:
                raise ValueError(f"input {item!r} matches no file")
            files += [str(Path(p).resolve()) if not _is_uri(p) else p for p in matches]
            continue
        fs, path = corpus.resolve(item)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ValueError(f"input {item!r} does not exist")
        if info.type == pafs.FileType.Directory:
            for found in _files_under(fs, path):
                name = found.rsplit("/", 1)[-1]
                if name.startswith("."):
                    continue
                if recording_format(found) is None:
                    ignored += 1
                else:
                    files.append(_as_input(fs, item, found))
        else:
            files.append(_as_input(fs, item, path))
    return sorted(dict.fromkeys(files)), ignored


def load_subject_map(path: str) -> dict[str, str]:
    """A CSV with columns ``file,subject`` -> {file name or path: raw subject id}."""
    fs, local = corpus.resolve(path)
    with fs.open_input_stream(local) as f:
        rows = list(csv.DictReader(io.StringIO(f.read().decode("utf-8-sig"))))
    if not rows or not {"file", "subject"} <= set(rows[0]):
        raise ValueError(f"subject map {path} must be a CSV with columns 'file' and 'subject'")
    mapping: dict[str, str] = {}
    for row in rows:
        file, subject = row["file"].strip(), row["subject"].strip()
        if not file or not subject:
            raise ValueError(f"subject map {path}: empty file or subject in row {row}")
        mapping[file] = subject
    return mapping


def raw_subject(path: str, mapping: dict[str, str] | None) -> str:
    """The raw subject id of a recording (file-name stem, or the mapping's entry)."""
    if mapping is None:
        return recording_stem(path)
    name = path.rsplit("/", 1)[-1]
    for key in (path, name):
        if key in mapping:
            return mapping[key]
    raise RecordingError(f"{path}: not listed in the subject map")


def content_hash(path: str) -> str:
    """sha256 of a file's bytes, streamed (local path or URI)."""
    fs, local = corpus.resolve(path)
    digest = hashlib.sha256()
    with fs.open_input_stream(local) as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def estimated_task_memory(paths: list[str]) -> int:
    """Bytes a task needs for the largest of its recordings (they are done one by one)."""
    largest = 0
    for path in paths:
        fs, local = corpus.resolve(path)
        size = fs.get_file_info(local).size or 0
        largest = max(largest, estimated_samples(path, size))
    return TASK_BASE_MEMORY + largest * TASK_BYTES_PER_SAMPLE


def memory_class(nbytes: int, cap: int) -> int:
    """``nbytes`` rounded up to a power of two, at most ``cap``."""
    return int(min(cap, 2 ** math.ceil(math.log2(max(nbytes, 1)))))
