"""Read one raw recording, whatever its format, into a common in-memory form.

Formats (chosen by the file name's extension, case-insensitive):

- Axivity ``.cwa`` / ``.cwa.gz``, ActiGraph ``.gt3x``, GENEActiv ``.bin`` and Matrix
  ``.bin`` (told apart by content): read with ``actipy`` with every processing step off,
  so the values are exactly what the device stored, in g.
- Empatica E4 ``ACC.csv`` / ``ACC.csv.gz`` (told apart by its file name): row 1 the start
  as Unix time (UTC) repeated per column, row 2 the sample rate (32 Hz), then one ``x,y,z``
  row per sample in 1/64 g (range +-2 g). The recording is named after its folder (one
  folder per session: ``S01/ACC.csv.gz`` is ``S01``).
- CSV / CSV.gz with columns ``time,x,y,z`` (names configurable; or, for a file without a
  header row, 0-based column positions), in g or m/s².
- NumPy: ``.npy`` holding ``(n, 3)`` samples (needs a stated rate and start time), or
  ``.npz`` with an ``xyz``/``accel``/``acc`` array, optionally ``time``/``times_ms`` and
  ``sample_rate_hz``/``fs``/``rate``.

Times. Every recording's times are kept as int64 nanoseconds on the wearer's *wall
clock* (local time, not UTC). Device files already store wall-clock time without a zone,
so their values are kept as they are; where the device states its UTC offset (an
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

ActiGraph idle sleep. An ActiGraph stops sampling while it lies still ("idle sleep
mode") and logs sleep/wake events; actipy (3.8) returns no samples for that time and does
not report it. As ActiLife, GGIR and agcounts do, every gap in a ``.gt3x`` is filled by
repeating the last sample at the device's rate (the device was still and is taken as
worn); ``Recording.idle_sleep_seconds`` is the time filled.

Bad samples. Samples beyond the device's range (stated by an ActiGraph's header, +-2 g
for an E4) or, where no range is stated, beyond +-16 g are clipped to it and counted in
``Recording.clipped_samples``. Samples with a missing or non-finite value are dropped, so
they become gaps.

Losses. A reader that skips corrupt blocks or stops at a truncated file still returns
what it could read; ``Recording.lost_seconds`` estimates how much was lost (from the
file's block count for Axivity, from the header's page count for GENEActiv, from the rows
dropped for CSV and arrays; ``None`` when the format gives no way to tell) and
``Recording.notes`` says what the reader reported. Rows of a CSV file that cannot be
parsed (a garbage line, a row with too many or too few columns) are dropped, and so are
rows whose time does not increase (time going backwards is reported with how often and
how far); ``Recording.dropped_rows`` counts them by reason. A file that yields nothing
raises ``RecordingError``.
"""

from __future__ import annotations

import contextlib
import gzip
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
PHYSICAL_LIMIT_G = 16.0
"""The largest acceleration a wrist device records: samples beyond it are clipped."""
E4_FILE_NAMES = ("acc.csv", "acc.csv.gz")
E4_COUNTS_PER_G = 64.0
E4_RANGE_G = 2.0

CLOCK_DEVICE_OFFSET = "device wall clock; UTC offset stated by the device"
CLOCK_DEVICE_LOCAL = "device wall clock; UTC offset not stated"
CLOCK_FROM_UTC = "UTC times moved to the wall clock of {zone}"
CLOCK_AS_GIVEN = "wall-clock times as given; UTC offset not stated"

DROPPED_MALFORMED = "malformed lines"
MAX_MALFORMED_FRACTION = 0.01
"""A CSV file with more malformed lines than this share is refused: its layout is wrong."""
DROPPED_MISSING = "missing or non-finite values"
DROPPED_NOT_INCREASING = "time not increasing"
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
_GENEACTIV_ZONE = re.compile(rb"Time Zone:\s*(?:GMT|UTC)?\s*([+-]?\d{1,2}:\d{2}(?::\d{2})?)")
_NUMBER = r"^[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|(?i:nan|inf|infinity))$"
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
    device_id: str = ""
    utc_offset_seconds: int | None = None  # wall clock minus UTC, where known
    clock: str = CLOCK_AS_GIVEN  # what the times are (one of the CLOCK_* texts)
    idle_sleep_seconds: float = 0.0  # ActiGraph idle sleep filled with the last sample
    clipped_samples: int = 0  # samples clipped to the device's range
    resolution_g: float | None = None  # the step between values, where coarser than ~4 mg
    dropped_rows: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped

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
            recording = _read_device(local, options)
        elif kind == "e4":
            recording = _read_e4(local, options)
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
    device = str(info.get("Device", "device"))
    rate = float(options.sample_rate_hz or info["SampleRate"])
    read_errors = int(info.get("ReadErrors", 0))
    lost = _device_lost_seconds(path, device, len(times), rate, read_errors)
    header = _device_header(path, device)
    limit_g = header.range_g or PHYSICAL_LIMIT_G
    xyz, clipped = _clipped(xyz, limit_g)
    idle_sleep = 0.0
    if device == "Actigraph":
        times, xyz, idle_sleep = fill_idle_sleep(times, xyz, rate)
    if clipped:
        notes += (f"clipped {clipped} samples beyond +-{limit_g:g} g",)
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
        clipped_samples=clipped,
    )


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


def _clipped(xyz: np.ndarray, limit_g: float) -> tuple[np.ndarray, int]:
    """``xyz`` clipped to +-``limit_g`` (a copy only where a value lies beyond), and how
    many samples had a value beyond."""
    beyond = int((np.abs(xyz) > limit_g).any(axis=1).sum())
    return (np.clip(xyz, -limit_g, limit_g) if beyond else xyz), beyond


@dataclass(frozen=True)
class DeviceHeader:
    """What a device file's header states beyond what actipy returns."""

    utc_offset_seconds: int | None = None
    range_g: float | None = None


def _offset_seconds(text: str) -> int:
    """``"-05:00:00"`` / ``"+01:00"`` -> seconds east of UTC."""
    sign = -1 if text.startswith("-") else 1
    parts = [int(part) for part in text.lstrip("+-").split(":")]
    hours, minutes, seconds = (parts + [0, 0])[:3]
    return sign * (hours * 3600 + minutes * 60 + seconds)


def _device_header(path: str, device: str) -> DeviceHeader:
    """The UTC offset and range a device file's header states (ActiGraph ``info.txt``,
    GENEActiv text header); empty for other devices or an unreadable header."""
    if device == "Actigraph":
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
        return DeviceHeader(
            _offset_seconds(zone) if zone else None, top if top and top > 0 else None
        )
    if device == "GENEActiv":
        with open(path, "rb") as f:
            match = _GENEACTIV_ZONE.search(f.read(64 * 1024))
        return DeviceHeader(_offset_seconds(match.group(1).decode()) if match else None)
    return DeviceHeader()


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
    offset = _wall_clock_offset_ns(int(times[0]), zone) if len(times) else 0
    return times + offset, offset


def times_to_wall_clock_ns(column: pa.Array | np.ndarray, zone: str) -> np.ndarray:
    """Sample times as int64 wall-clock ns (see ``wall_clock_times``)."""
    return wall_clock_times(column, zone)[0]


def _clock(offset_ns: int | None, zone: str) -> tuple[int | None, str]:
    """``Recording.utc_offset_seconds`` and ``Recording.clock`` of times moved onto the
    wall clock of ``zone`` by ``offset_ns`` (None: times given on a wall clock)."""
    if offset_ns is None:
        return None, CLOCK_AS_GIVEN
    return offset_ns // NS_PER_SECOND, CLOCK_FROM_UTC.format(zone=zone)


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


def _read_csv_table(
    path: str,
    read_options: pacsv.ReadOptions,
    types: dict[str, pa.DataType],
    time: str | None = None,
) -> tuple[pa.Table, int]:
    """The columns ``types`` names (and ``time``) of a CSV file, and how many malformed
    lines were dropped: lines with too many or too few columns and, where a column cannot
    be converted, lines whose value in a numeric or time column does not parse. More than
    ``MAX_MALFORMED_FRACTION`` of the lines malformed raises ``pa.ArrowInvalid``."""
    wanted = list(dict.fromkeys([*types, *([time] if time else [])]))
    malformed = 0

    def skip(row: pacsv.InvalidRow) -> str:
        nonlocal malformed
        malformed += 1
        return "skip"

    def read(column_types: dict[str, pa.DataType]) -> pa.Table:
        return pacsv.read_csv(
            path,
            read_options=read_options,
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types=column_types),
        )

    def checked(table: pa.Table, dropped: int, error: pa.ArrowInvalid | None) -> pa.Table:
        lines = table.num_rows + dropped
        if dropped > MAX_MALFORMED_FRACTION * lines:
            raise error or pa.ArrowInvalid(
                f"{dropped} of {lines} lines have too many or too few columns"
            )
        return table

    try:
        return checked(read(types), malformed, None), malformed
    except pa.ArrowInvalid as error:
        if "conversion error" not in str(error).lower():
            raise
        conversion_error = error
    malformed = 0
    text = read({name: pa.string() for name in wanted})
    columns: dict[str, pa.Array] = {}
    bad = np.zeros(text.num_rows, bool)
    for name in wanted:
        raw = text[name].combine_chunks()
        if name == time:
            parsed = _time_from_text(raw)
        elif pa.types.is_string(types[name]):
            parsed = raw
        else:
            parsed = _numbers_from_text(raw).cast(types[name])
        given = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(raw), ""), False)
        bad |= (given.to_numpy(zero_copy_only=False)) & ~pc.is_valid(parsed).to_numpy(
            zero_copy_only=False
        )
        columns[name] = parsed
    malformed += int(bad.sum())
    table = checked(pa.table(columns).filter(pa.array(~bad)), malformed, conversion_error)
    return table, malformed


def _numbers_from_text(column: pa.Array) -> pa.Array:
    """Numbers (float64) from text, null where a value is not a number."""
    text = pc.utf8_trim_whitespace(column)
    number = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    return pc.if_else(number, text, pa.scalar(None, pa.string())).cast(pa.float64())


def _time_from_text(column: pa.Array) -> pa.Array:
    """Times from text: numbers (epoch times) where most values are numbers, else ISO
    8601 times; null where a value does not parse."""
    import pandas as pd

    numbers = _numbers_from_text(column)
    if 2 * numbers.null_count < column.null_count + len(column):
        return numbers
    text = pd.Series(column.to_pylist(), dtype=object)
    return pa.array(pd.to_datetime(text, format="ISO8601", errors="coerce"), from_pandas=True)


def read_csv_recording(path: str, options: ReadOptions, with_labels: bool = False) -> Recording:
    """A CSV/CSV.gz file with a time column and three acceleration columns (and a
    label column when ``with_labels``). Malformed lines, rows with a missing value and
    rows whose time does not increase are dropped; each kind is counted.

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
    types = {names[role]: pa.float32() for role in ("x", "y", "z")}
    if with_labels:
        types[names["label"]] = pa.string()
    try:
        table, malformed = _read_csv_table(path, read_options, types, names["time"])
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
    missing = table.num_rows - pc.sum(complete.cast(pa.int64())).as_py()
    if missing:
        table = table.filter(complete)
    try:
        times, offset = wall_clock_times(table[names["time"]].combine_chunks(), options.timezone)
    except ValueError as error:
        raise RecordingError(f"{path}: time {shown['time']}: {error}") from error
    xyz = np.column_stack([table[names[role]].to_numpy() for role in ("x", "y", "z")]).astype(
        np.float32
    )
    labels = None
    if with_labels:
        labels = np.asarray(table[names["label"]].to_pylist(), dtype=object)
    return _checked_recording(
        path,
        "csv",
        times,
        xyz,
        options,
        {DROPPED_MALFORMED: malformed, DROPPED_MISSING: missing},
        labels,
        utc_offset_ns=offset,
    )


def _read_e4(path: str, options: ReadOptions) -> Recording:
    """An Empatica E4 ``ACC.csv`` (layout in the module docstring). Sample times come
    from the start, the rate and the row number; a malformed line dropped shifts the
    samples after it by one period, which the reader's note counts."""
    starts, rates = _e4_header(path)
    rate = options.sample_rate_hz or rates
    start_utc_ns = round(starts * 1_000_000) * 1_000
    offset = _wall_clock_offset_ns(start_utc_ns, options.timezone)
    read_options = pacsv.ReadOptions(skip_rows=2, autogenerate_column_names=True)
    types = {f"f{axis}": pa.float32() for axis in range(3)}
    try:
        table, malformed = _read_csv_table(path, read_options, types)
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as error:
        raise RecordingError(f"{path}: cannot read the E4 samples (x,y,z rows): {error}") from error
    if table.num_rows == 0:
        raise RecordingError(f"{path}: E4 file has no samples")
    counts = np.column_stack([table[name].to_numpy(zero_copy_only=False) for name in types]).astype(
        np.float32
    )
    times = _regular_times(start_utc_ns + offset, len(counts), rate)
    return _checked_recording(
        path,
        "E4",
        times,
        counts / np.float32(E4_COUNTS_PER_G),
        options,
        {DROPPED_MALFORMED: malformed},
        rate=rate,
        utc_offset_ns=offset,
        units="g",
        limit_g=E4_RANGE_G,
        resolution_g=1 / E4_COUNTS_PER_G,
    )


def _e4_header(path: str) -> tuple[float, float]:
    """The start (Unix seconds) and rate (Hz) in rows 1 and 2 of an E4 file."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            rows = [f.readline(), f.readline()]
        start, rate = ({float(value) for value in row.split(",")} for row in rows)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordingError(
            f"{path}: not an Empatica E4 file: rows 1 and 2 must hold the start (Unix "
            f"seconds) and the sample rate, one value per column ({error})"
        ) from error
    if len(start) != 1 or len(rate) != 1 or not min(rate) > 0:
        raise RecordingError(
            f"{path}: not an Empatica E4 file: row 1 {rows[0].strip()!r} and row 2 "
            f"{rows[1].strip()!r} must repeat one start time and one positive rate"
        )
    return start.pop(), rate.pop()


def _backwards_note(times: np.ndarray, dropped: int) -> str:
    """What the rows dropped for a non-increasing time say about the clock."""
    steps = np.diff(times)
    back = steps[steps < 0]
    if len(back) == 0:
        return f"dropped {dropped} rows repeating an earlier time"
    return (
        f"time goes backwards {len(back)} times (by up to {-back.min() / NS_PER_SECOND:.3f} "
        f"s): dropped {dropped} rows whose time did not increase"
    )


def _checked_recording(
    path: str,
    device: str,
    times: np.ndarray,
    xyz: np.ndarray,
    options: ReadOptions,
    dropped: dict[str, int] | None = None,
    labels: np.ndarray | None = None,
    rate: float | None = None,
    utc_offset_ns: int | None = None,
    units: str | None = None,
    limit_g: float = PHYSICAL_LIMIT_G,
    resolution_g: float | None = None,
) -> Recording:
    """Drop samples with non-finite values (they become gaps) and then those whose time
    does not increase, convert units, clip to +-``limit_g``, infer the rate: a common
    tail of the readers of self-made formats. ``dropped`` counts rows the reader dropped
    already, by reason; lost seconds are all dropped rows at the rate."""
    dropped = {reason: n for reason, n in (dropped or {}).items() if n}
    notes: list[str] = []
    if DROPPED_MALFORMED in dropped:
        notes.append(f"dropped {dropped[DROPPED_MALFORMED]} malformed lines")
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        dropped[DROPPED_MISSING] = dropped.get(DROPPED_MISSING, 0) + int((~finite).sum())
        times, xyz = times[finite], xyz[finite]
        labels = labels[finite] if labels is not None else None
    if DROPPED_MISSING in dropped:
        notes.append(f"dropped {dropped[DROPPED_MISSING]} rows with missing or non-finite values")
    keep = _increasing(times)
    if not keep.all():
        dropped[DROPPED_NOT_INCREASING] = int((~keep).sum())
        notes.append(_backwards_note(times, dropped[DROPPED_NOT_INCREASING]))
        times, xyz = times[keep], xyz[keep]
        labels = labels[keep] if labels is not None else None
    if len(times) == 0:
        raise RecordingError(f"{path}: no valid samples")
    if (units or options.units) == "m/s2":
        xyz = xyz / np.float32(STANDARD_GRAVITY)
    xyz, clipped = _clipped(xyz, limit_g)
    if clipped:
        notes.append(f"clipped {clipped} samples beyond +-{limit_g:g} g")
    rate = options.sample_rate_hz or rate
    if rate is None:
        if len(times) < 2:
            raise RecordingError(f"{path}: a single sample has no sample rate")
        rate = infer_sample_rate(times)
    offset_seconds, clock = _clock(utc_offset_ns, options.timezone)
    read_errors = sum(dropped.values())
    return Recording(
        source=path,
        device=device,
        times_ns=np.ascontiguousarray(times, dtype=np.int64),
        xyz=np.ascontiguousarray(xyz, dtype=np.float32),
        sample_rate_hz=float(rate),
        read_errors=read_errors,
        lost_seconds=read_errors / float(rate),
        notes=tuple(notes),
        labels=labels,
        utc_offset_seconds=offset_seconds,
        clock=clock,
        clipped_samples=clipped,
        dropped_rows=dropped,
        resolution_g=resolution_g,
    )


# ---------------------------------------------------------------- NumPy arrays


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
    offset = _wall_clock_offset_ns(utc_ns, options.timezone)
    return utc_ns + offset, offset


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
    start, offset = _start_ns(path, options)
    times = _regular_times(start, len(xyz), options.sample_rate_hz)
    samples = np.asarray(xyz, dtype=np.float32)
    return _checked_recording(path, "npy", times, samples, options, utc_offset_ns=offset)


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
            times = _regular_times(start, len(xyz), rate)
    return _checked_recording(path, "npz", times, xyz, options, rate=rate, utc_offset_ns=offset)


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
