"""Which reader a file goes to: its format from its name, its recording's name, a local
copy of a remote file, and ``read_recording``, the one entry point."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from wearssl.data.corpus import resolve
from wearssl.data.devices.arrays import read_npy, read_npz
from wearssl.data.devices.csv_file import read_csv_recording
from wearssl.data.devices.device_files import read_device_file
from wearssl.data.devices.empatica import E4_FILE_NAMES, read_e4
from wearssl.data.devices.options import ReadOptions
from wearssl.data.devices.recording import Recording, RecordingError

DEVICE_FORMATS = ("cwa", "gt3x", "bin")
FORMAT_SUFFIXES = {
    ".cwa": "cwa",
    ".cwa.gz": "cwa",
    ".gt3x": "gt3x",
    ".bin": "bin",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".npy": "npy",
    ".npz": "npz",
}


# ---------------------------------------------------------------- file names


def recording_format(path: str) -> str | None:
    """The format of a file from its name (``cwa``, ``gt3x``, ``bin``, ``e4``, ``csv``,
    ``npy``, ``npz``), or None when the extension is not one this module reads."""
    name = path.rsplit("/", 1)[-1].lower()
    if name in E4_FILE_NAMES:
        return "e4"
    for suffix in sorted(FORMAT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return FORMAT_SUFFIXES[suffix]
    return None


def recording_stem(path: str) -> str:
    """The file name without its recording extension: ``/a/P01.cwa.gz`` -> ``P01``; for
    an E4 file, whose name is fixed, its folder's name: ``/a/S01/ACC.csv.gz`` -> ``S01``."""
    parts = path.rstrip("/").rsplit("/", 2)
    if recording_format(path) == "e4" and len(parts) > 1 and parts[-2]:
        return parts[-2]
    name = parts[-1]
    lower = name.lower()
    for suffix in sorted(FORMAT_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for ``uri``: the path itself when local, else a temporary copy
    (removed afterwards) with the same file name, since some readers need a real file."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri.removeprefix("file://")
        return
    fs, path = resolve(uri)
    with tempfile.TemporaryDirectory(prefix="wearssl-read-") as tmp:
        local = os.path.join(tmp, path.rsplit("/", 1)[-1])
        with fs.open_input_stream(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, length=8 << 20)
        yield local


# ---------------------------------------------------------------- entry point


def read_recording(path: str, options: ReadOptions | None = None) -> Recording:
    """Read one recording (local path or URI) into a ``Recording``.

    Raises ``RecordingError`` naming the file for an empty, unreadable or unknown file.
    """
    options = options or ReadOptions()
    kind = recording_format(path)
    if kind is None:
        raise RecordingError(f"{path}: unknown recording format (extension not recognised)")
    with local_copy(path) as local:
        if not os.path.exists(local):
            raise RecordingError(f"{path}: file not found")
        if os.path.getsize(local) == 0:
            raise RecordingError(f"{path}: empty file (0 bytes)")
        if kind in DEVICE_FORMATS:
            recording = read_device_file(local, options)
        elif kind == "e4":
            recording = read_e4(local, options)
        elif kind == "csv":
            recording = read_csv_recording(local, options)
        elif kind == "npy":
            recording = read_npy(local, options)
        else:
            recording = read_npz(local, options)
    recording.source = path
    return recording


def estimated_samples(path: str, size_bytes: int) -> int:
    """A generous guess of a file's sample count from its size, before reading it (used
    to reserve memory for the task that reads it)."""
    bytes_per_sample = {
        "cwa": 4.0,  # 120 packed samples per 512-byte block (80 when unpacked)
        "gt3x": 1.5,  # 12-bit packed samples, zip-compressed
        "bin": 6.0,  # GENEActiv hex text ~12 bytes/sample; Matrix binary fewer
        "e4": 12.0,
        "csv": 20.0,
        "npy": 12.0,
        "npz": 4.0,
    }
    kind = recording_format(path)
    per_sample = bytes_per_sample.get(kind or "", 4.0)
    if path.lower().endswith(".gz"):
        per_sample /= 4.0
    return int(size_bytes / per_sample)
