"""Read one raw recording, whatever its format, into a common in-memory form.

Formats (chosen by the file name's extension, case-insensitive):

- Axivity ``.cwa`` / ``.cwa.gz``, ActiGraph ``.gt3x``, GENEActiv ``.bin`` and Matrix
  ``.bin`` (told apart by content): read with ``actipy`` with every processing step off,
  so the values are exactly what the device stored, in g.
- CSV / CSV.gz with columns ``time,x,y,z`` (names configurable; or, for a file without a
  header row, 0-based column positions), in g or m/s².
- NumPy: ``.npy`` holding ``(n, 3)`` samples (needs a stated rate and start time), or
  ``.npz`` with an ``xyz``/``accel``/``acc`` array, optionally ``time``/``times_ms`` and
  ``sample_rate_hz``/``fs``/``rate``.

Times. Every recording's times are kept as int64 nanoseconds on the wearer's *wall
clock*, written as if it were UTC. Device files already store wall-clock time without a
zone, so their values are kept as they are. Inputs with absolute times (numbers since the
Unix epoch, or ISO strings with a zone) are moved onto the wall clock of
``ReadOptions.timezone`` with one constant offset, that of the first sample (so a
daylight-saving change inside a recording does not fold time back onto itself). Numeric
epochs are read as seconds, milliseconds, microseconds or nanoseconds by their magnitude
(any date between 1973 and 2286 is unambiguous); floating-point ones are rounded to the
microsecond, about the precision float64 holds for today's dates. Strings are parsed as
ISO 8601 (``2019-12-23 21:04:06.690``, ``2024-01-01T00:00:00+01:00``).

Losses. A reader that skips corrupt blocks or stops at a truncated file still returns
what it could read; ``Recording.lost_seconds`` estimates how much was lost (from the
file's block count for Axivity, from the header's page count for GENEActiv; ``None``
when the format gives no way to tell) and ``Recording.notes`` says what the reader
reported. A file that yields nothing raises ``RecordingError``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from wearssl.data.corpus import resolve

STANDARD_GRAVITY = 9.80665
UNITS = ("g", "m/s2")
NS_PER_SECOND = 1_000_000_000
FLOAT_EPOCH_RESOLUTION_NS = 1_000  # float epoch times are rounded to the microsecond

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
XYZ_KEYS = ("xyz", "accel", "acc")
TIME_KEYS = ("time", "times_ms", "times")
RATE_KEYS = ("sample_rate_hz", "fs", "rate")

CWA_HEADER_BYTES = 1024
CWA_BLOCK_BYTES = 512
GENEACTIV_SAMPLES_PER_PAGE = 300
_GENEACTIV_PAGES = re.compile(rb"Number of Pages:\s*(\d+)")
_READER_MESSAGE = re.compile(r"(Skipping|Stopping|differs|Error reading|Exception:)")


class RecordingError(ValueError):
    """A recording that cannot be read; the message names the file and the reason."""


Column = str | int
"""A CSV column: its name in the header row, or its 0-based position in a file without one."""

POSITION_ROLES = ("time", "x", "y", "z")


CSV_COLUMNS_HELP = (
    "CSV columns by name (time=ts) or, for a file without a header row, by 0-based "
    "position (time=0,x=1,y=2,z=3)"
)
"""Command-line help of the ``--columns`` option that ``CsvColumns.parse`` reads."""


@dataclass(frozen=True)
class CsvColumns:
    """The columns to read from a CSV file (``label`` only for labelled data): each a
    name from the header row, or each a 0-based position, meaning the file has no header
    row. Names and positions do not mix."""

    time: Column = "time"
    x: Column = "x"
    y: Column = "y"
    z: Column = "z"
    label: Column = "label"

    def __post_init__(self) -> None:
        for role in self.__dataclass_fields__:
            value = getattr(self, role)
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ValueError(f"column {role}={value!r} must be a name or a position")
            if isinstance(value, int) and value < 0:
                raise ValueError(f"column position {role}={value} must be 0 or more")
        given = {role: getattr(self, role) for role in POSITION_ROLES}
        positions = {role: v for role, v in given.items() if isinstance(v, int)}
        if isinstance(self.label, int) and not positions:
            raise ValueError(
                f"column label={self.label} is a position but the other columns are names "
                f"{given}; give every column as a name or every one as a 0-based position"
            )
        if positions and len(positions) < len(given):
            names = {role: v for role, v in given.items() if isinstance(v, str)}
            raise ValueError(
                f"columns {names} are names but {positions} are positions; give every "
                f"column as a name or every one as a 0-based position (no header row)"
            )
        if positions:
            seen: dict[int, str] = {}
            for role, position in {**positions, **self._label_position()}.items():
                if position in seen:
                    raise ValueError(
                        f"column position {position} is given for both {seen[position]} and {role}"
                    )
                seen[position] = role

    def _label_position(self) -> dict[str, int]:
        return {"label": self.label} if isinstance(self.label, int) else {}

    @property
    def positional(self) -> bool:
        """Whether columns are given by position (the file has no header row)."""
        return isinstance(self.time, int)

    @classmethod
    def parse(cls, pairs: list[str] | None) -> CsvColumns:
        """``["time=timestamp", "x=x_acc", ...]`` -> columns; names not given keep defaults.

        A value of digits is a 0-based position (``time=0,x=1,y=2,z=3``: a file without a
        header row); then time, x, y and z must all be positions.
        """
        if not pairs:
            return cls()
        values: dict[str, Column] = {}
        for pair in pairs:
            for item in pair.split(","):
                key, sep, value = item.partition("=")
                key, value = key.strip(), value.strip()
                if not sep or key not in cls.__dataclass_fields__ or not value:
                    raise ValueError(
                        f"column mapping {item!r} must be ROLE=NAME or ROLE=POSITION with "
                        f"ROLE one of {list(cls.__dataclass_fields__)}"
                    )
                if value.startswith("-") and value[1:].isdigit():
                    raise ValueError(f"column mapping {item!r}: a position must be 0 or more")
                values[key] = int(value) if value.isdigit() else value
        positions = {k: v for k, v in values.items() if isinstance(v, int)}
        if positions:
            names = {k: v for k, v in values.items() if isinstance(v, str)}
            if names:
                role, name = next(iter(names.items()))
                raise ValueError(
                    f"column mapping {role}={name!r} is a name but "
                    f"{', '.join(f'{k}={v}' for k, v in positions.items())} "
                    f"{'is a position' if len(positions) == 1 else 'are positions'}; give "
                    f"every column as a name or every one as a 0-based position (no header row)"
                )
            missing = [role for role in POSITION_ROLES if role not in positions]
            if missing:
                raise ValueError(
                    f"column positions {positions} leave {missing} unset; a file without a "
                    f"header row needs a position for each of {list(POSITION_ROLES)}"
                )
        return cls(**values)


@dataclass(frozen=True)
class ReadOptions:
    """How to read formats that do not describe themselves fully.

    ``sample_rate_hz`` is required for ``.npy`` (and for ``.npz`` without times or rate);
    for other formats it overrides the rate inferred from the times. ``start`` (ISO time)
    is the first sample's time of arrays without times. ``units`` applies to CSV and
    arrays; device files are always in g.
    """

    sample_rate_hz: float | None = None
    start: str | None = None
    units: str = "g"
    columns: CsvColumns = field(default_factory=CsvColumns)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {self.units!r}")
        if self.sample_rate_hz is not None and not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        try:
            ZoneInfo(self.timezone)
        except Exception as error:
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA zone") from error


@dataclass
class Recording:
    """One recording's samples, as read, before any processing."""

    source: str
    device: str
    times_ns: np.ndarray  # (n,) int64 wall-clock ns since 1970-01-01, strictly increasing
    xyz: np.ndarray  # (n, 3) float32 acceleration in g
    sample_rate_hz: float
    read_errors: int = 0
    lost_seconds: float | None = 0.0
    notes: tuple[str, ...] = ()
    labels: np.ndarray | None = None  # (n,) object, labelled CSV files only

    @property
    def n_samples(self) -> int:
        return len(self.times_ns)

    @property
    def duration_seconds(self) -> float:
        return (int(self.times_ns[-1]) - int(self.times_ns[0])) / NS_PER_SECOND + (
            1 / self.sample_rate_hz
        )

    @property
    def kept_fraction(self) -> float | None:
        """Share of the samples the file should hold that were read (None if unknown)."""
        if self.lost_seconds is None:
            return None
        lost = self.lost_seconds * self.sample_rate_hz
        return self.n_samples / (self.n_samples + lost)


# ---------------------------------------------------------------- file names


def recording_format(path: str) -> str | None:
    """The format of a file from its name (``cwa``, ``gt3x``, ``bin``, ``csv``, ``npy``,
    ``npz``), or None when the extension is not one this module reads."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in sorted(FORMAT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return FORMAT_SUFFIXES[suffix]
    return None


def recording_stem(path: str) -> str:
    """The file name without its recording extension: ``/a/P01.cwa.gz`` -> ``P01``."""
    name = path.rsplit("/", 1)[-1]
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
            recording = _read_device(local, options)
        elif kind == "csv":
            recording = read_csv_recording(local, options)
        elif kind == "npy":
            recording = _read_npy(local, options)
        else:
            recording = _read_npz(local, options)
    recording.source = path
    return recording


# ---------------------------------------------------------------- device files (actipy)


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


def _read_device(path: str, options: ReadOptions) -> Recording:
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
    rate = float(options.sample_rate_hz or info["SampleRate"])
    read_errors = int(info.get("ReadErrors", 0))
    lost = _device_lost_seconds(path, str(info.get("Device", "")), len(times), rate, read_errors)
    return Recording(
        source=path,
        device=str(info.get("Device", "device")),
        times_ns=np.ascontiguousarray(times),
        xyz=np.ascontiguousarray(xyz),
        sample_rate_hz=rate,
        read_errors=read_errors,
        lost_seconds=lost,
        notes=notes,
    )


def _device_lost_seconds(
    path: str, device: str, n_samples: int, rate: float, read_errors: int
) -> float | None:
    """Seconds of data the file should hold that the reader could not return."""
    if device == "GENEActiv":
        with open(path, "rb") as f:
            match = _GENEACTIV_PAGES.search(f.read(64 * 1024))
        if match is None:
            return None if read_errors else 0.0
        expected = int(match.group(1)) * GENEACTIV_SAMPLES_PER_PAGE
        return max(0, expected - n_samples) / rate
    if device == "Axivity":
        if not read_errors:
            return 0.0
        blocks = (_uncompressed_size(path) - CWA_HEADER_BYTES) // CWA_BLOCK_BYTES
        good_blocks = max(1, blocks - read_errors)
        return read_errors * (n_samples / good_blocks) / rate
    return None if read_errors else 0.0


def _uncompressed_size(path: str) -> int:
    """Size of a file's content; for ``.gz`` the size its trailer records."""
    if not path.lower().endswith(".gz"):
        return os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


# ---------------------------------------------------------------- times


def _epoch_unit_ns(values: np.ndarray) -> int:
    """Nanoseconds per unit of numeric epoch times, judged by their magnitude."""
    magnitude = float(np.nanmedian(np.abs(values))) if len(values) else 0.0
    for limit, unit_ns in ((1e11, NS_PER_SECOND), (1e14, 1_000_000), (1e17, 1_000)):
        if magnitude < limit:
            return unit_ns
    return 1


def _wall_clock_offset_ns(first_utc_ns: int, zone: str) -> int:
    moment = datetime.fromtimestamp(first_utc_ns / NS_PER_SECOND, tz=timezone.utc)
    offset = ZoneInfo(zone).utcoffset(moment)
    return int(offset.total_seconds()) * NS_PER_SECOND if offset else 0


def times_to_wall_clock_ns(column: pa.Array | np.ndarray, zone: str) -> np.ndarray:
    """Sample times as int64 wall-clock ns (see the module docstring for the rules)."""
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
    if absolute and len(times):
        times = times + _wall_clock_offset_ns(int(times[0]), zone)
    return times


def _parse_time_strings(column: pa.Array) -> pa.Array:
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(column.to_pylist()), format="ISO8601")
    return pa.array(parsed)


def _increasing(times: np.ndarray) -> np.ndarray:
    """Mask of samples whose time is later than every earlier sample's."""
    if len(times) < 2:
        return np.ones(len(times), bool)
    keep = np.empty(len(times), bool)
    keep[0] = True
    keep[1:] = times[1:] > np.maximum.accumulate(times)[:-1]
    return keep


def infer_sample_rate(times_ns: np.ndarray) -> float:
    """The nominal rate: one over the mean time step, leaving out steps over twice the
    median (gaps). The mean, unlike the median, is right for times rounded to the
    millisecond (steps of 33 and 34 ms at 30 Hz)."""
    if len(times_ns) < 2:
        raise ValueError("cannot infer a sample rate from fewer than 2 samples")
    steps = np.diff(times_ns[:1_000_000])
    steps = steps[steps <= 2 * np.median(steps)]
    return NS_PER_SECOND / float(steps.mean())


# ---------------------------------------------------------------- CSV


def _csv_column_count(path: str, read_options: pacsv.ReadOptions) -> int:
    """The number of columns of a CSV file's first block of rows."""
    try:
        with pacsv.open_csv(path, read_options=read_options) as reader:
            return len(reader.schema)
    except (pa.ArrowInvalid, OSError) as error:
        raise RecordingError(f"{path}: cannot read as CSV: {error}") from error


def read_csv_recording(path: str, options: ReadOptions, with_labels: bool = False) -> Recording:
    """A CSV/CSV.gz file with a time column and three acceleration columns (and a
    label column when ``with_labels``). Rows with a missing value are dropped and so are
    rows whose time does not increase; both count as read errors.

    Columns given by position (``CsvColumns(time=0, x=1, y=2, z=3)``) mean the file has
    no header row: its first row is data."""
    columns = options.columns
    roles = ["time", "x", "y", "z"] + (["label"] if with_labels else [])
    given = {role: getattr(columns, role) for role in roles}
    read_options = pacsv.ReadOptions()
    if columns.positional:
        if not isinstance(columns.label, int) and with_labels:
            raise RecordingError(
                f"{path}: the columns are positions but label={columns.label!r} is a name; "
                f"give the label column's 0-based position too"
            )
        read_options = pacsv.ReadOptions(autogenerate_column_names=True)
        found = _csv_column_count(path, read_options)
        for role, position in given.items():
            if position >= found:
                raise RecordingError(
                    f"{path}: column position {role}={position} is out of range: the file "
                    f"has {found} column(s) (positions 0 to {found - 1})"
                )
        names = {role: f"f{position}" for role, position in given.items()}
        shown = {role: f"column {position}" for role, position in given.items()}
    else:
        names = dict(given)
        shown = {role: f"column {name!r}" for role, name in given.items()}
    wanted = list(dict.fromkeys(names.values()))
    types = {names[role]: pa.float32() for role in ("x", "y", "z")}
    if with_labels:
        types[names["label"]] = pa.string()
    try:
        table = pacsv.read_csv(
            path,
            read_options=read_options,
            convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types=types),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as error:
        hint = " (columns given by position: the file must have no header row)"
        raise RecordingError(
            f"{path}: cannot read as CSV with columns {given}: {error}"
            + (hint if columns.positional else "")
        ) from error
    if table.num_rows == 0:
        raise RecordingError(f"{path}: CSV file has no rows")
    complete = pc.is_valid(table[names["time"]])
    for role in ("x", "y", "z"):
        complete = pc.and_(complete, pc.is_valid(table[names[role]]))
    read_errors = table.num_rows - pc.sum(complete.cast(pa.int64())).as_py()
    if read_errors:
        table = table.filter(complete)
    try:
        times = times_to_wall_clock_ns(table[names["time"]].combine_chunks(), options.timezone)
    except ValueError as error:
        raise RecordingError(f"{path}: time {shown['time']}: {error}") from error
    xyz = np.column_stack([table[names[role]].to_numpy() for role in ("x", "y", "z")]).astype(
        np.float32
    )
    labels = None
    if with_labels:
        labels = np.asarray(table[names["label"]].to_pylist(), dtype=object)
    return _checked_recording(path, "csv", times, xyz, options, read_errors, labels)


def _checked_recording(
    path: str,
    device: str,
    times: np.ndarray,
    xyz: np.ndarray,
    options: ReadOptions,
    read_errors: int = 0,
    labels: np.ndarray | None = None,
    rate: float | None = None,
) -> Recording:
    """Drop non-increasing times, convert units, infer the rate; a common tail of the
    readers of self-made formats."""
    keep = _increasing(times) & np.isfinite(xyz).all(axis=1)
    if not keep.all():
        read_errors += int((~keep).sum())
        times, xyz = times[keep], xyz[keep]
        labels = labels[keep] if labels is not None else None
    if len(times) == 0:
        raise RecordingError(f"{path}: no valid samples")
    if options.units == "m/s2":
        xyz = xyz / np.float32(STANDARD_GRAVITY)
    rate = options.sample_rate_hz or rate
    if rate is None:
        if len(times) < 2:
            raise RecordingError(f"{path}: a single sample has no sample rate")
        rate = infer_sample_rate(times)
    notes = (
        (f"dropped {read_errors} rows with missing or non-increasing values",)
        if read_errors
        else ()
    )
    return Recording(
        source=path,
        device=device,
        times_ns=np.ascontiguousarray(times, dtype=np.int64),
        xyz=np.ascontiguousarray(xyz, dtype=np.float32),
        sample_rate_hz=float(rate),
        read_errors=read_errors,
        lost_seconds=0.0,
        notes=notes,
        labels=labels,
    )


# ---------------------------------------------------------------- NumPy arrays


def _start_ns(path: str, options: ReadOptions) -> int:
    if options.start is None:
        raise RecordingError(f"{path}: arrays without times need a start time (ReadOptions.start)")
    try:
        moment = datetime.fromisoformat(options.start)
    except ValueError as error:
        raise RecordingError(f"{path}: start {options.start!r} is not an ISO time") from error
    if moment.tzinfo is None:  # already wall-clock time
        return int(round(moment.replace(tzinfo=timezone.utc).timestamp() * 1_000_000)) * 1_000
    utc_ns = int(round(moment.timestamp() * 1_000_000)) * 1_000
    return utc_ns + _wall_clock_offset_ns(utc_ns, options.timezone)


def _regular_times(start_ns: int, n: int, rate: float) -> np.ndarray:
    return start_ns + np.rint(np.arange(n, dtype=np.float64) * (NS_PER_SECOND / rate)).astype(
        np.int64
    )


def _xyz_array(path: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2 or array.shape[1] != 3 or not np.issubdtype(array.dtype, np.number):
        raise RecordingError(
            f"{path}: expected a numeric (n, 3) array of samples, got {array.dtype} {array.shape}"
        )
    return array


def _read_npy(path: str, options: ReadOptions) -> Recording:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise RecordingError(f"{path}: not a readable .npy file: {error}") from error
    xyz = _xyz_array(path, array)
    if options.sample_rate_hz is None:
        raise RecordingError(f"{path}: a .npy recording needs a stated sample rate")
    times = _regular_times(_start_ns(path, options), len(xyz), options.sample_rate_hz)
    return _checked_recording(path, "npy", times, np.asarray(xyz, dtype=np.float32), options)


def _first_key(archive: np.lib.npyio.NpzFile, keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if key in archive.files), None)


def _read_npz(path: str, options: ReadOptions) -> Recording:
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
            times = times_to_wall_clock_ns(np.ravel(archive[time_key]), options.timezone)
            if len(times) != len(xyz):
                raise RecordingError(
                    f"{path}: {time_key!r} has {len(times)} values for {len(xyz)} samples"
                )
        else:
            rate = options.sample_rate_hz or rate
            if rate is None:
                raise RecordingError(f"{path}: an .npz without times needs a sample rate")
            times = _regular_times(_start_ns(path, options), len(xyz), rate)
    return _checked_recording(path, "npz", times, xyz, options, rate=rate)


def estimated_samples(path: str, size_bytes: int) -> int:
    """A generous guess of a file's sample count from its size, before reading it (used
    to reserve memory for the task that reads it)."""
    bytes_per_sample = {
        "cwa": 4.0,  # 120 packed samples per 512-byte block (80 when unpacked)
        "gt3x": 1.5,  # 12-bit packed samples, zip-compressed
        "bin": 6.0,  # GENEActiv hex text ~12 bytes/sample; Matrix binary fewer
        "csv": 20.0,
        "npy": 12.0,
        "npz": 4.0,
    }
    kind = recording_format(path)
    per_sample = bytes_per_sample.get(kind or "", 4.0)
    if path.lower().endswith(".gz"):
        per_sample /= 4.0
    return int(size_bytes / per_sample)
