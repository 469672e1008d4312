"""The windowed corpus: Parquet files of 10-s windows plus a Parquet manifest.

Layout of a corpus root (a local folder or any URI pyarrow understands, e.g. ``s3://``)::

    ROOT/corpus.json                      format facts (rate, window samples, storage dtype)
    ROOT/manifest.parquet                 one row per subject-day
    ROOT/ingest_report.parquet            one row per ingested file (what ingest found)
    ROOT/days/<subject>/<day>.parquet     one file per subject-day, one row per window

A window row holds: ``subject`` (pseudonym), ``day`` (ISO date), ``time`` (window start
on the wearer's wall clock, i.e. local time, as a timezone-naive ``timestamp("ms")``:
Arrow's type for a wall-clock time without a zone), ``window`` (the 3 x 300 samples,
channel-major), ``std`` (std of the vector magnitude over the window) and ``wear``. The
ingest report gives each recording's ``clock`` and, where known, its
``utc_offset_seconds`` (wall clock minus UTC), which turn a wall-clock time into UTC.

The ingest report (``INGEST_REPORT_SCHEMA``) is written with the manifest, atomically,
and records the corpus version in its schema metadata; its ``recording`` is the content
hash that the manifest's ``recording`` lists, so a subject-day can be traced to the files,
devices and clocks it came from. A subject's split comes from a stable hash of
its pseudonym, so it never changes as the corpus grows.

``corpus.json`` records the format version:

- version 1: ``window`` a fixed-size list of 900 values of the storage dtype; Parquet
  stores it value by value with repetition and definition levels, which dominate the
  read time;
- version 2: ``window`` one ``fixed_size_binary(900 * itemsize)`` value per window, the
  same samples as little-endian bytes, with the storage format in the field's metadata;
- version 3: as version 2, with ``time`` timezone-naive. Versions 1 and 2 hold the same
  wall-clock values in a ``timestamp("ms", tz="UTC")``, a label that is not what the
  values are.

Readers take any layout, file by file, from the Arrow types of the columns, and
``read_day`` presents ``time`` of every version as the same naive wall-clock timestamps.
Writers write the version the corpus records (``info_to_write``), so a corpus never
mixes versions: windows added to a version-2 corpus are written as version 2; a new
corpus is version 3.

Writes are atomic (write a temporary object, then rename), so an interrupted writer
never leaves a half-written day file or manifest behind.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wearssl.errors import CorpusError as CorpusError

SAMPLE_RATE_HZ = 30
WINDOW_SECONDS = 10  # a corpus row's window; other lengths: wearssl.config.vocabulary


def window_samples(seconds: int) -> int:
    """Samples in a ``seconds``-s window at :data:`SAMPLE_RATE_HZ`."""
    return SAMPLE_RATE_HZ * seconds


WINDOW_SAMPLES = window_samples(WINDOW_SECONDS)  # samples in a corpus row


CHANNELS = 3
MANIFEST_NAME = "manifest.parquet"
INGEST_REPORT_NAME = "ingest_report.parquet"
INFO_NAME = "corpus.json"
DAYS_DIR = "days"
TEST_FRACTION = 0.2
MILLI_G = 1000.0
CORPUS_VERSION = 3
"""The newest corpus format this code writes and reads; it reads every older one too."""
LIST_LAYOUT_VERSION = 1
"""The version whose ``window`` is a fixed-size list of values (newer: one binary value)."""
NAIVE_TIME_VERSION = 3
"""The first version whose ``time`` is timezone-naive (older: the same values labelled UTC)."""
WALL_CLOCK_TIME = pa.timestamp("ms")
"""The Arrow type of ``time`` as stored from version 3 on, and as ``read_day`` returns it."""
FORMAT_METADATA_KEY = b"window_format"


class WindowFormat(str, Enum):
    """How window samples are stored. float16 keeps the AX3's 3.9 mg resolution at half
    the bytes of float32; int16 milli-g is the same size with a fixed 1 mg step."""

    FLOAT16 = "float16"
    INT16_MG = "int16_mg"
    FLOAT32 = "float32"


_ARROW_VALUE_TYPE = {
    WindowFormat.FLOAT16: pa.float16(),
    WindowFormat.INT16_MG: pa.int16(),
    WindowFormat.FLOAT32: pa.float32(),
}
_STORED_DTYPE = {
    WindowFormat.FLOAT16: np.dtype("<f2"),
    WindowFormat.INT16_MG: np.dtype("<i2"),
    WindowFormat.FLOAT32: np.dtype("<f4"),
}
_FORMAT_OF_VALUE_TYPE = {value_type: f for f, value_type in _ARROW_VALUE_TYPE.items()}

MANIFEST_SCHEMA = pa.schema(
    [
        ("subject", pa.string()),
        ("day", pa.string()),
        ("file", pa.string()),
        ("row_start", pa.int64()),
        ("row_end", pa.int64()),
        ("n_windows", pa.int64()),
        ("n_wear", pa.int64()),
        ("split", pa.string()),
        ("recording", pa.string()),
    ]
)


INGEST_REPORT_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("subject", pa.string()),
        ("recording", pa.string()),
        ("status", pa.string()),  # ingested, partial, skipped or quarantined
        ("reason", pa.string()),
        ("device", pa.string()),
        ("device_id", pa.string()),
        ("sample_rate_hz", pa.float64()),
        ("clock", pa.string()),  # what the times are (wearssl.data.devices CLOCK_*)
        ("utc_offset_seconds", pa.int64()),  # wall clock minus UTC; null: not stated
        ("first_sample", pa.string()),  # ISO wall-clock time
        ("last_sample", pa.string()),
        ("gaps", pa.int64()),
        ("gap_seconds", pa.float64()),
        ("idle_sleep_seconds", pa.float64()),
        ("calibration", pa.string()),  # applied, refused or off
        ("calibration_reason", pa.string()),
        ("calibration_error_before_mg", pa.float64()),
        ("calibration_error_after_mg", pa.float64()),
        ("read_errors", pa.int64()),
        ("reader_message", pa.string()),
        ("malformed_lines", pa.int64()),
        ("missing_rows", pa.int64()),
        ("not_increasing_rows", pa.int64()),
        ("clipped_samples", pa.int64()),
        ("lost_seconds", pa.float64()),
        ("kept_fraction", pa.float64()),
        ("nonwear_seconds", pa.float64()),
        ("days", pa.int64()),
        ("windows", pa.int64()),
        ("wear_windows", pa.int64()),
        ("ingested_at", pa.string()),  # ISO UTC time the row was written
    ]
)
REPORT_VERSION_KEY = b"corpus_version"


@dataclass(frozen=True)
class CorpusInfo:
    sample_rate_hz: int = SAMPLE_RATE_HZ
    window_samples: int = WINDOW_SAMPLES
    window_format: str = WindowFormat.FLOAT16.value
    version: int = CORPUS_VERSION


def _check_version(version: int) -> None:
    if not LIST_LAYOUT_VERSION <= version <= CORPUS_VERSION:
        raise ValueError(
            f"no layout for corpus version {version}: versions are "
            f"{LIST_LAYOUT_VERSION} to {CORPUS_VERSION}"
        )


def time_type(version: int = CORPUS_VERSION) -> pa.DataType:
    """The Arrow type of ``time`` in a day file of corpus ``version``."""
    _check_version(version)
    return WALL_CLOCK_TIME if version >= NAIVE_TIME_VERSION else pa.timestamp("ms", tz="UTC")


def window_field(
    window_format: WindowFormat, version: int = CORPUS_VERSION, length: int = WINDOW_SAMPLES
) -> pa.Field:
    """The ``window`` column of a day file in the layout of corpus ``version``."""
    _check_version(version)
    window_format = WindowFormat(window_format)
    if version == LIST_LAYOUT_VERSION:
        return pa.field("window", pa.list_(_ARROW_VALUE_TYPE[window_format], CHANNELS * length))
    width = CHANNELS * length * _STORED_DTYPE[window_format].itemsize
    metadata = {FORMAT_METADATA_KEY: window_format.value.encode()}
    return pa.field("window", pa.binary(width), metadata=metadata)


def window_schema(
    window_format: WindowFormat = WindowFormat.FLOAT16, version: int = CORPUS_VERSION
) -> pa.Schema:
    return pa.schema(
        [
            ("subject", pa.string()),
            ("day", pa.string()),
            ("time", time_type(version)),
            window_field(window_format, version),
            ("std", pa.float32()),
            ("wear", pa.bool_()),
        ]
    )


# ---------------------------------------------------------------- filesystems


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a local path or a URI (``s3://``, ``gs://``, ...)."""
    text = str(uri)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def atomic_write_table(fs: pafs.FileSystem, path: str, table: pa.Table, **parquet_kw) -> None:
    """Write a Parquet file so readers only ever see the old or the complete new file."""
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp, filesystem=fs, **parquet_kw)
    fs.move(tmp, path)


def atomic_write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, path)


# ---------------------------------------------------------------- windows


def window_std(windows: np.ndarray) -> np.ndarray:
    """Std of the vector magnitude over each window: ``(n, 3, L) -> (n,)`` float32."""
    magnitude = np.sqrt(np.einsum("ncl,ncl->nl", windows, windows, dtype=np.float64))
    return magnitude.std(axis=1).astype(np.float32)


def encode_windows(
    windows: np.ndarray, window_format: WindowFormat, version: int = CORPUS_VERSION
) -> pa.Array:
    """``(n, 3, L)`` float windows in g -> the ``window`` column of corpus ``version``.
    A window that is not finite in the storage format (NaN, or beyond float16's range)
    is a ValueError: the corpus never holds one."""
    n, _, length = windows.shape
    window_format = WindowFormat(window_format)
    if not np.isfinite(windows).all():
        raise ValueError(f"{_non_finite_count(windows)} windows hold NaN or infinite values")
    if window_format is WindowFormat.INT16_MG:
        windows = np.clip(np.rint(windows * MILLI_G), -32768, 32767)
    stored = np.ascontiguousarray(windows, dtype=_STORED_DTYPE[window_format])
    if not np.isfinite(stored).all():
        raise ValueError(
            f"{_non_finite_count(stored)} windows hold values beyond the range of "
            f"{window_format.value} (up to {np.abs(windows).max():.3g} g)"
        )
    field = window_field(window_format, version, length)
    if version != LIST_LAYOUT_VERSION:
        return pa.FixedSizeBinaryArray.from_buffers(field.type, n, [None, pa.py_buffer(stored)])
    if window_format is WindowFormat.FLOAT16:
        # converting through uint16 skips a slow first-call path for float16 in pyarrow
        values = pa.array(stored.reshape(-1).view(np.uint16)).view(pa.float16())
    else:
        values = pa.array(stored.reshape(-1), type=field.type.value_type)
    return pa.FixedSizeListArray.from_arrays(values, type=field.type)


def _non_finite_count(windows: np.ndarray) -> int:
    return int((~np.isfinite(windows)).any(axis=(1, 2)).sum())


def _stored_format(field: pa.Field) -> WindowFormat:
    """The storage format of a ``window`` column, from its type (list) or metadata (binary)."""
    if pa.types.is_fixed_size_list(field.type):
        return _FORMAT_OF_VALUE_TYPE[field.type.value_type]
    if pa.types.is_fixed_size_binary(field.type) and FORMAT_METADATA_KEY in (field.metadata or {}):
        return WindowFormat(field.metadata[FORMAT_METADATA_KEY].decode())
    raise ValueError(
        f"window column of type {field.type} with metadata {field.metadata} is neither "
        "layout of the corpus format (a fixed-size list, or fixed-size binary with "
        f"{FORMAT_METADATA_KEY.decode()!r} metadata)"
    )


def _stored_windows(table: pa.Table, rows: np.ndarray | None = None) -> np.ndarray:
    """The ``window`` column of a day table (either layout), or its ``rows`` only, as
    ``(n, 3, L)`` in the stored dtype (float16, int16 milli-g or float32)."""
    field = table.schema.field("window")
    dtype = _STORED_DTYPE[_stored_format(field)]
    column = table["window"]
    if rows is not None:
        column = column.take(pa.array(rows, pa.int64()))
    column = column.combine_chunks()
    if pa.types.is_fixed_size_list(field.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
        per_window = field.type.list_size
    else:
        width = field.type.byte_width
        per_window = width // dtype.itemsize
        data = column.buffers()[1]
        raw = np.frombuffer(data if data is not None else b"", np.uint8)
        values = raw[column.offset * width : (column.offset + len(column)) * width].view(dtype)
    values = values.astype(dtype.newbyteorder("="), copy=False)
    return values.reshape(len(column), CHANNELS, per_window // CHANNELS)


def decode_windows(
    table: pa.Table, rows: np.ndarray | None = None, dtype: type | None = np.float32
) -> np.ndarray:
    """The windows of a day table (either layout), or its ``rows`` only, in g: ``(n, 3, L)``
    of ``dtype``, or with ``dtype=None`` in the stored precision (float16 for float16 and
    int16 milli-g, float32 for float32)."""
    stored = _stored_windows(table, rows)
    if stored.dtype == np.int16:
        return (stored.astype(np.float32) / MILLI_G).astype(np.float16 if dtype is None else dtype)
    return stored.astype(stored.dtype if dtype is None else dtype)


def day_table(
    subject: str,
    day: str,
    start_times_ms: np.ndarray,
    windows: np.ndarray,
    wear: np.ndarray,
    window_format: WindowFormat = WindowFormat.FLOAT16,
    version: int = CORPUS_VERSION,
) -> pa.Table:
    """One subject-day's windows as a table in the schema of corpus ``version``."""
    n = len(windows)
    if windows.shape[1:] != (CHANNELS, WINDOW_SAMPLES):
        raise ValueError(
            f"windows for {subject}/{day} have shape {windows.shape[1:]}, "
            f"expected {(CHANNELS, WINDOW_SAMPLES)}"
        )
    try:
        encoded = encode_windows(windows, window_format, version)
    except ValueError as error:
        raise ValueError(f"windows for {subject}/{day}: {error}") from error
    return pa.table(
        {
            "subject": pa.array([subject] * n, pa.string()),
            "day": pa.array([day] * n, pa.string()),
            "time": pa.array(start_times_ms.astype("int64"), time_type(version)),
            "window": encoded,
            "std": pa.array(window_std(windows), pa.float32()),
            "wear": pa.array(wear.astype(bool), pa.bool_()),
        },
        schema=window_schema(window_format, version),
    )


def day_file(subject: str, day: str) -> str:
    """Path of a subject-day file relative to the corpus root."""
    return f"{DAYS_DIR}/{subject}/{day}.parquet"


def write_day(
    root: str,
    table: pa.Table,
    recording: str,
    fs: pafs.FileSystem | None = None,
) -> dict:
    """Write one subject-day table atomically and return its manifest entry."""
    if fs is None:
        fs, root = resolve(root)
    subject = table["subject"][0].as_py()
    day = table["day"][0].as_py()
    rel = day_file(subject, day)
    # dictionary-encoding the window values costs size and decode time: keep it for ids only
    atomic_write_table(
        fs, join(root, rel), table, compression="zstd", use_dictionary=["subject", "day"]
    )
    n_wear = int(pc.sum(table["wear"]).as_py() or 0)
    return manifest_entry(subject, day, rel, table.num_rows, n_wear, recording)


def manifest_entry(
    subject: str, day: str, file: str, n_windows: int, n_wear: int, recording: str
) -> dict:
    return {
        "subject": subject,
        "day": day,
        "file": file,
        "row_start": 0,
        "row_end": n_windows,
        "n_windows": n_windows,
        "n_wear": n_wear,
        "split": subject_split(subject),
        "recording": recording,
    }


def read_day(
    root: str, entry: dict, fs: pafs.FileSystem | None = None, columns: list[str] | None = None
) -> pa.Table:
    """The window rows of one manifest entry (a subject-day), all columns or ``columns``;
    ``time`` as naive wall-clock timestamps whatever the corpus version."""
    if fs is None:
        fs, root = resolve(root)
    table = pq.read_table(join(root, entry["file"]), filesystem=fs, columns=columns)
    table = with_wall_clock_time(table)
    return table.slice(entry["row_start"], entry["row_end"] - entry["row_start"])


def with_wall_clock_time(table: pa.Table) -> pa.Table:
    """``table`` with its ``time`` (if it has one) as naive wall-clock timestamps: a
    version-1 or -2 day file's UTC label is dropped, its values (wall-clock times) kept."""
    if "time" not in table.column_names or table.schema.field("time").type == WALL_CLOCK_TIME:
        return table
    index = table.column_names.index("time")
    wall_clock = table["time"].cast(pa.int64()).cast(WALL_CLOCK_TIME)
    return table.set_column(index, pa.field("time", WALL_CLOCK_TIME), wall_clock)


# ---------------------------------------------------------------- manifest and info


def subject_split(subject: str, test_fraction: float = TEST_FRACTION) -> str:
    """Stable train/test assignment from a hash of the subject's pseudonym."""
    bucket = int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < test_fraction else "train"


def manifest_table(entries: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(entries, schema=MANIFEST_SCHEMA)


def read_manifest(root: str | Path) -> pa.Table:
    fs, path = resolve(root)
    manifest_path = join(path, MANIFEST_NAME)
    if not exists(fs, manifest_path):
        raise FileNotFoundError(f"no corpus manifest at {manifest_path}")
    return pq.read_table(manifest_path, filesystem=fs).select(MANIFEST_SCHEMA.names)


def write_manifest(root: str | Path, manifest: pa.Table) -> None:
    """Replace the manifest atomically, rows sorted by subject and day, one row per subject-day."""
    fs, path = resolve(root)
    manifest = manifest.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    manifest = manifest.sort_by([("subject", "ascending"), ("day", "ascending")])
    keys = list(zip(manifest["subject"].to_pylist(), manifest["day"].to_pylist(), strict=True))
    if len(set(keys)) != len(keys):
        raise ValueError(f"manifest for {root} would list a subject-day twice")
    atomic_write_table(fs, join(path, MANIFEST_NAME), manifest)


def add_to_manifest(root: str | Path, entries: list[dict]) -> pa.Table:
    """Merge new subject-day entries into the manifest (a new entry replaces an old one
    for the same subject-day) and write it atomically. Returns the new manifest."""
    new = manifest_table(entries)
    try:
        old = read_manifest(root)
    except FileNotFoundError:
        merged = new
    else:
        replaced = {(e["subject"], e["day"]) for e in entries}
        keep = [
            (s, d) not in replaced
            for s, d in zip(old["subject"].to_pylist(), old["day"].to_pylist(), strict=True)
        ]
        merged = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())), new])
    write_manifest(root, merged)
    return merged


def read_ingest_report(root: str | Path) -> pa.Table | None:
    """The ingest report of a corpus (None where ingest has not written one yet)."""
    fs, path = resolve(root)
    report_path = join(path, INGEST_REPORT_NAME)
    if not exists(fs, report_path):
        return None
    return pq.read_table(report_path, filesystem=fs)


def write_ingest_report(root: str | Path, rows: list[dict], version: int) -> None:
    """Replace the ingest report atomically: ``rows`` (keys of ``INGEST_REPORT_SCHEMA``,
    missing ones null) sorted by file, tagged with the corpus ``version``."""
    fs, path = resolve(root)
    schema = INGEST_REPORT_SCHEMA.with_metadata({REPORT_VERSION_KEY: str(version).encode()})
    ordered = sorted(rows, key=lambda row: row["file"])
    table = pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in ordered], schema=schema
    )
    atomic_write_table(fs, join(path, INGEST_REPORT_NAME), table)


def manifest_hash(manifest: pa.Table) -> str:
    """A short content hash of a manifest, used to tag runs with the corpus they read."""
    digest = hashlib.sha256()
    for row in manifest.sort_by([("subject", "ascending"), ("day", "ascending")]).to_pylist():
        digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def write_info(root: str | Path, info: CorpusInfo) -> None:
    fs, path = resolve(root)
    atomic_write_bytes(fs, join(path, INFO_NAME), json.dumps(asdict(info), indent=2).encode())


def read_info(root: str | Path) -> CorpusInfo:
    fs, path = resolve(root)
    info_path = join(path, INFO_NAME)
    if not exists(fs, info_path):
        raise FileNotFoundError(f"{root} is not a wearssl corpus: {info_path} is missing")
    with fs.open_input_stream(info_path) as f:
        info = CorpusInfo(**json.loads(f.read()))
    if not LIST_LAYOUT_VERSION <= info.version <= CORPUS_VERSION:
        raise CorpusError(
            f"{info_path} records corpus version {info.version}; this wearssl reads versions "
            f"{LIST_LAYOUT_VERSION} to {CORPUS_VERSION} (a newer corpus needs a newer wearssl)"
        )
    return info


def info_to_write(root: str | Path, wanted: CorpusInfo) -> CorpusInfo:
    """What new windows for the corpus at ``root`` are written as: ``wanted`` where there
    is no corpus yet; the corpus's own info (so its version's layout) where it holds one
    of the same rate, window length and format. Another format is a ValueError."""
    try:
        existing = read_info(root)
    except FileNotFoundError:
        return wanted
    if replace(existing, version=wanted.version) != wanted:
        raise ValueError(
            f"{root} already holds a corpus with {existing}; cannot add windows with {wanted}"
        )
    return existing
