"""CSV / CSV.gz files with columns ``time,x,y,z`` (names configurable; or, for a file
without a header row, 0-based column positions), in g or m/s².

Rows that cannot be parsed (a garbage line, a row with too many or too few columns) are
dropped and counted as malformed lines; a file with more than ``MAX_MALFORMED_FRACTION``
of them is refused, since its layout is wrong rather than a few lines damaged.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from wearssl.data.devices.clock import wall_clock_times
from wearssl.data.devices.options import ReadOptions
from wearssl.data.devices.recording import (
    DROPPED_MALFORMED,
    DROPPED_MISSING,
    Recording,
    RecordingError,
    checked_recording,
)

MAX_MALFORMED_FRACTION = 0.01
"""A CSV file with more malformed lines than this share is refused: its layout is wrong."""
_NUMBER = r"^[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|(?i:nan|inf|infinity))$"


def _csv_column_count(path: str, read_options: pacsv.ReadOptions) -> int:
    """The number of columns of a CSV file's first block of rows."""
    try:
        with pacsv.open_csv(path, read_options=read_options) as reader:
            return len(reader.schema)
    except (pa.ArrowInvalid, OSError) as error:
        raise RecordingError(f"{path}: cannot read as CSV: {error}") from error


def read_csv_table(
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
        table, malformed = read_csv_table(path, read_options, types, names["time"])
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
    return checked_recording(
        path,
        "csv",
        times,
        xyz,
        options,
        {DROPPED_MALFORMED: malformed, DROPPED_MISSING: missing},
        labels,
        utc_offset_ns=offset,
    )
