"""ActiGraph ``.gt3x`` files: the header's UTC offset and range, and idle sleep.

Idle sleep. An ActiGraph stops sampling while it lies still ("idle sleep mode") and logs
sleep/wake events; actipy (3.8) returns no samples for that time and does not report it.
As ActiLife, GGIR and agcounts do, every gap in a ``.gt3x`` is filled by repeating the
last sample at the device's rate (the device was still and is taken as worn);
``Recording.idle_sleep_seconds`` is the time filled.
"""

from __future__ import annotations

import zipfile

import numpy as np

from wearssl.data.devices.clock import NS_PER_SECOND, parse_utc_offset
from wearssl.data.devices.recording import DeviceHeader

ACTIGRAPH = "Actigraph"
"""The device name ``actipy`` gives an ActiGraph file."""


def actigraph_header(path: str) -> DeviceHeader:
    """The UTC offset (``TimeZone``) and range (``Acceleration Max``) a ``.gt3x``'s
    ``info.txt`` states."""
    with zipfile.ZipFile(path) as archive:
        text = archive.read("info.txt").decode("utf-8-sig", "replace")
    fields = dict(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition(":") for line in text.splitlines())
        if sep
    )
    zone = fields.get("TimeZone")
    try:
        top: float | None = float(fields.get("Acceleration Max", "").replace(",", "."))
    except ValueError:
        top = None
    return DeviceHeader(parse_utc_offset(zone) if zone else None, top if top and top > 0 else None)


def fill_idle_sleep(
    times_ns: np.ndarray, xyz: np.ndarray, rate_hz: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fill every gap of one sample period or more by repeating the sample before it at
    ``rate_hz`` (ActiGraph idle sleep: the device lay still). Returns the filled times,
    samples and the seconds filled."""
    period_ns = NS_PER_SECOND / rate_hz
    steps = np.diff(times_ns)
    gaps = np.flatnonzero(steps > 1.5 * period_ns)
    if len(gaps) == 0:
        return times_ns, xyz, 0.0
    missing = np.rint(steps[gaps] / period_ns).astype(np.int64) - 1
    repeats = np.ones(len(times_ns), np.int64)
    repeats[gaps] += missing
    run_ends = np.cumsum(repeats)
    times = np.repeat(times_ns, repeats)
    for end, count in zip(run_ends[gaps].tolist(), missing.tolist(), strict=True):
        offsets = np.arange(1, count + 1, dtype=np.float64) * period_ns
        times[end - count : end] += np.rint(offsets).astype(np.int64)
    return times, np.repeat(xyz, repeats, axis=0), float(missing.sum()) / rate_hz
