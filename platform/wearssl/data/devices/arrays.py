"""NumPy files: ``.npy`` holding ``(n, 3)`` samples (needs a stated rate and start
time), or ``.npz`` with an ``xyz``/``accel``/``acc`` array, optionally
``time``/``times_ms`` and ``sample_rate_hz``/``fs``/``rate``."""

from __future__ import annotations

import zipfile
from datetime import datetime, timezone

import numpy as np

from wearssl.data.devices.clock import wall_clock_offset_ns, wall_clock_times
from wearssl.data.devices.options import ReadOptions
from wearssl.data.devices.recording import (
    Recording,
    RecordingError,
    checked_recording,
    regular_times,
)

XYZ_KEYS = ("xyz", "accel", "acc")
TIME_KEYS = ("time", "times_ms", "times")
RATE_KEYS = ("sample_rate_hz", "fs", "rate")


def _start_ns(path: str, options: ReadOptions) -> tuple[int, int | None]:
    """The wall-clock start of arrays without times, and the offset added to move a start
    with a zone onto the wall clock of ``options.timezone`` (None for one without)."""
    if options.start is None:
        raise RecordingError(f"{path}: arrays without times need a start time (ReadOptions.start)")
    try:
        moment = datetime.fromisoformat(options.start)
    except ValueError as error:
        raise RecordingError(f"{path}: start {options.start!r} is not an ISO time") from error
    if moment.tzinfo is None:  # already wall-clock time
        wall_ns = int(round(moment.replace(tzinfo=timezone.utc).timestamp() * 1_000_000))
        return wall_ns * 1_000, None
    utc_ns = int(round(moment.timestamp() * 1_000_000)) * 1_000
    offset = wall_clock_offset_ns(utc_ns, options.timezone)
    return utc_ns + offset, offset


def _xyz_array(path: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2 or array.shape[1] != 3 or not np.issubdtype(array.dtype, np.number):
        raise RecordingError(
            f"{path}: expected a numeric (n, 3) array of samples, got {array.dtype} {array.shape}"
        )
    return array


def read_npy(path: str, options: ReadOptions) -> Recording:
    """An ``.npy`` of ``(n, 3)`` samples at the stated rate from the stated start."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise RecordingError(f"{path}: not a readable .npy file: {error}") from error
    xyz = _xyz_array(path, array)
    if options.sample_rate_hz is None:
        raise RecordingError(f"{path}: a .npy recording needs a stated sample rate")
    start, offset = _start_ns(path, options)
    times = regular_times(start, len(xyz), options.sample_rate_hz)
    samples = np.asarray(xyz, dtype=np.float32)
    return checked_recording(path, "npy", times, samples, options, utc_offset_ns=offset)


def _first_key(archive: np.lib.npyio.NpzFile, keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if key in archive.files), None)


def read_npz(path: str, options: ReadOptions) -> Recording:
    """An ``.npz`` of samples with their times, or with a rate and the stated start."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise RecordingError(f"{path}: not a readable .npz file: {error}") from error
    with archive:
        xyz_key = _first_key(archive, XYZ_KEYS)
        if xyz_key is None:
            raise RecordingError(
                f"{path}: no samples array; expected one of {XYZ_KEYS}, found {archive.files}"
            )
        xyz = _xyz_array(path, archive[xyz_key]).astype(np.float32)
        rate_key = _first_key(archive, RATE_KEYS)
        rate = float(np.ravel(archive[rate_key])[0]) if rate_key else None
        time_key = _first_key(archive, TIME_KEYS)
        if time_key is not None:
            times, offset = wall_clock_times(np.ravel(archive[time_key]), options.timezone)
            if len(times) != len(xyz):
                raise RecordingError(
                    f"{path}: {time_key!r} has {len(times)} values for {len(xyz)} samples"
                )
        else:
            rate = options.sample_rate_hz or rate
            if rate is None:
                raise RecordingError(f"{path}: an .npz without times needs a sample rate")
            start, offset = _start_ns(path, options)
            times = regular_times(start, len(xyz), rate)
    return checked_recording(path, "npz", times, xyz, options, rate=rate, utc_offset_ns=offset)
