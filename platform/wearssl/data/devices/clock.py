"""Sample times on the wearer's wall clock.

Every recording's times are kept as int64 nanoseconds on the wearer's *wall clock*
(local time, not UTC). Device files already store wall-clock time without a zone, so
their values are kept as they are; where the device states its UTC offset (an
ActiGraph's ``TimeZone``, a GENEActiv's ``Time Zone``) it is kept in
``Recording.utc_offset_seconds``, and ``Recording.clock`` says which case a recording is.
Inputs with absolute times (numbers since the Unix epoch, ISO strings with a zone, an
E4's start) are moved onto the wall clock of ``ReadOptions.timezone`` with one constant
offset, that of the first sample (so a daylight-saving change inside a recording does not
fold time back onto itself), and that offset is kept. Numeric epochs are read as seconds,
milliseconds, microseconds or nanoseconds by their magnitude (any date between 1973 and
2286 is unambiguous); floating-point ones are rounded to the microsecond, about the
precision float64 holds for today's dates. Strings are parsed as
ISO 8601 (``2019-12-23 21:04:06.690``, ``2024-01-01T00:00:00+01:00``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NS_PER_SECOND = 1_000_000_000
FLOAT_EPOCH_RESOLUTION_NS = 1_000  # float epoch times are rounded to the microsecond

CLOCK_DEVICE_OFFSET = "device wall clock; UTC offset stated by the device"
CLOCK_DEVICE_LOCAL = "device wall clock; UTC offset not stated"
CLOCK_FROM_UTC = "UTC times moved to the wall clock of {zone}"
CLOCK_AS_GIVEN = "wall-clock times as given; UTC offset not stated"


def parse_utc_offset(text: str) -> int:
    """``"-05:00:00"`` / ``"+01:00"`` -> seconds east of UTC."""
    sign = -1 if text.startswith("-") else 1
    parts = [int(part) for part in text.lstrip("+-").split(":")]
    hours, minutes, seconds = (parts + [0, 0])[:3]
    return sign * (hours * 3600 + minutes * 60 + seconds)


def _epoch_unit_ns(values: np.ndarray) -> int:
    """Nanoseconds per unit of numeric epoch times, judged by their magnitude."""
    magnitude = float(np.nanmedian(np.abs(values))) if len(values) else 0.0
    for limit, unit_ns in ((1e11, NS_PER_SECOND), (1e14, 1_000_000), (1e17, 1_000)):
        if magnitude < limit:
            return unit_ns
    return 1


def wall_clock_offset_ns(first_utc_ns: int, zone: str) -> int:
    moment = datetime.fromtimestamp(first_utc_ns / NS_PER_SECOND, tz=timezone.utc)
    offset = ZoneInfo(zone).utcoffset(moment)
    return int(offset.total_seconds()) * NS_PER_SECOND if offset else 0


def wall_clock_times(column: pa.Array | np.ndarray, zone: str) -> tuple[np.ndarray, int | None]:
    """Sample times as int64 wall-clock ns (see the module docstring for the rules), and
    the offset (ns) added to move absolute times onto the wall clock of ``zone``; None for
    times already on a wall clock (no zone stated)."""
    if isinstance(column, np.ndarray):
        column = pa.array(column)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = _parse_time_strings(column)
        kind = column.type
    if pa.types.is_timestamp(kind):
        ns = pc.cast(column, pa.timestamp("ns", tz=kind.tz)).cast(pa.int64())
        times = ns.to_numpy(zero_copy_only=False)
        absolute = kind.tz is not None
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = column.to_numpy(zero_copy_only=False)
        unit = _epoch_unit_ns(values)
        if pa.types.is_integer(kind):
            times = values.astype(np.int64) * unit
        elif unit > FLOAT_EPOCH_RESOLUTION_NS:
            # float64 holds today's epoch seconds to ~0.2 us: round to the microsecond,
            # so 1551178506.01 is ...506.010000000 and not ...506.009999872
            resolution = FLOAT_EPOCH_RESOLUTION_NS
            scaled = values.astype(np.float64) * (unit // resolution)
            times = np.rint(scaled).astype(np.int64) * resolution
        else:
            times = np.rint(values.astype(np.float64) * unit).astype(np.int64)
        absolute = True
    else:
        raise ValueError(f"time column of type {kind} is neither a timestamp nor a number")
    if not absolute:
        return times, None
    offset = wall_clock_offset_ns(int(times[0]), zone) if len(times) else 0
    return times + offset, offset


def times_to_wall_clock_ns(column: pa.Array | np.ndarray, zone: str) -> np.ndarray:
    """Sample times as int64 wall-clock ns (see ``wall_clock_times``)."""
    return wall_clock_times(column, zone)[0]


def utc_offset_and_clock(offset_ns: int | None, zone: str) -> tuple[int | None, str]:
    """``Recording.utc_offset_seconds`` and ``Recording.clock`` of times moved onto the
    wall clock of ``zone`` by ``offset_ns`` (None: times given on a wall clock)."""
    if offset_ns is None:
        return None, CLOCK_AS_GIVEN
    return offset_ns // NS_PER_SECOND, CLOCK_FROM_UTC.format(zone=zone)


def _parse_time_strings(column: pa.Array) -> pa.Array:
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(column.to_pylist()), format="ISO8601")
    return pa.array(parsed)
