"""Device files (Axivity ``.cwa``, ActiGraph ``.gt3x``, GENEActiv and Matrix ``.bin``),
read with ``actipy`` with every processing step off, so the values are exactly what the
device stored, in g. What each device's header adds (UTC offset, range, expected size)
and its own handling (ActiGraph idle sleep) live in that device's module."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator

import numpy as np

from wearssl.data.devices.actigraph import ACTIGRAPH, actigraph_header, fill_idle_sleep
from wearssl.data.devices.axivity import AXIVITY, axivity_lost_seconds
from wearssl.data.devices.clock import CLOCK_DEVICE_LOCAL, CLOCK_DEVICE_OFFSET
from wearssl.data.devices.geneactiv import GENEACTIV, geneactiv_header, geneactiv_lost_seconds
from wearssl.data.devices.options import ReadOptions
from wearssl.data.devices.recording import (
    PHYSICAL_LIMIT_G,
    DeviceHeader,
    Recording,
    RecordingError,
    clipped,
)

_READER_MESSAGE = re.compile(r"(Skipping|Stopping|differs|Error reading|Exception:)")


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Collect what this process and its children write to file descriptors 1 and 2.

    The device readers report skipped blocks there, in messages that name the file; the
    file name may be the subject's id, so the text is kept (for ``Recording.notes``, which
    only reaches the data owner's quarantine report) and not passed on to logs.
    """
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _reader_notes(lines: list[str]) -> tuple[str, ...]:
    """The reader's messages about skipped or missing data, repeats counted."""
    counts = Counter(line.strip() for line in lines if _READER_MESSAGE.search(line))
    return tuple(f"{text} (x{n})" if n > 1 else text for text, n in counts.items())


def read_device_file(path: str, options: ReadOptions) -> Recording:
    """A device file read with ``actipy``, clipped to the range its header states,
    ActiGraph idle sleep filled."""
    import actipy

    try:
        with _captured_output() as lines:
            data, info = actipy.read_device(
                path,
                lowpass_hz=None,
                calibrate_gravity=False,
                detect_nonwear=False,
                resample_hz=None,
                verbose=False,
            )
    except Exception as error:
        notes = _reader_notes(lines)
        detail = "; ".join(notes) or f"{type(error).__name__}: {error}"
        raise RecordingError(f"{path}: not a readable device file: {detail}") from error
    notes = _reader_notes(lines)
    if len(data) == 0:
        raise RecordingError(f"{path}: the device reader found no samples ({'; '.join(notes)})")
    xyz = data[["x", "y", "z"]].to_numpy(dtype=np.float32)
    times = data.index.values.astype("datetime64[ns]", copy=False).view(np.int64)
    del data
    valid = np.isfinite(xyz).all(axis=1)
    if not valid.all():
        xyz, times = xyz[valid], times[valid]
    device = str(info.get("Device", "device"))
    rate = float(options.sample_rate_hz or info["SampleRate"])
    read_errors = int(info.get("ReadErrors", 0))
    lost = _device_lost_seconds(path, device, len(times), rate, read_errors)
    header = _device_header(path, device)
    limit_g = header.range_g or PHYSICAL_LIMIT_G
    xyz, n_clipped = clipped(xyz, limit_g)
    idle_sleep = 0.0
    if device == ACTIGRAPH:
        times, xyz, idle_sleep = fill_idle_sleep(times, xyz, rate)
    if n_clipped:
        notes += (f"clipped {n_clipped} samples beyond +-{limit_g:g} g",)
    return Recording(
        source=path,
        device=device,
        times_ns=np.ascontiguousarray(times),
        xyz=np.ascontiguousarray(xyz),
        sample_rate_hz=rate,
        read_errors=read_errors,
        lost_seconds=lost,
        notes=notes,
        device_id=str(info.get("DeviceID") or ""),
        utc_offset_seconds=header.utc_offset_seconds,
        clock=CLOCK_DEVICE_LOCAL if header.utc_offset_seconds is None else CLOCK_DEVICE_OFFSET,
        idle_sleep_seconds=idle_sleep,
        clipped_samples=n_clipped,
    )


def _device_header(path: str, device: str) -> DeviceHeader:
    """What the header of a device file states beyond what actipy returns; empty for a
    device whose header states nothing more."""
    if device == ACTIGRAPH:
        return actigraph_header(path)
    if device == GENEACTIV:
        return geneactiv_header(path)
    return DeviceHeader()


def _device_lost_seconds(
    path: str, device: str, n_samples: int, rate: float, read_errors: int
) -> float | None:
    """Seconds of data the file should hold that the reader could not return (None when
    the reader reported errors and the format gives no way to tell how much)."""
    if device == GENEACTIV:
        return geneactiv_lost_seconds(path, n_samples, rate, read_errors)
    if device == AXIVITY:
        return axivity_lost_seconds(path, n_samples, rate, read_errors)
    return None if read_errors else 0.0
