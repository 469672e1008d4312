"""Writing one recording's windows as corpus day files, merged with the days another
recording of the same subject already wrote."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wearssl.data import corpus
from wearssl.data.corpus import CorpusInfo, WindowFormat
from wearssl.data.ingest.options import RECORDING_SEPARATOR
from wearssl.data.preprocess import (
    NS_PER_SECOND,
    WindowedRecording,
    split_days,
)


def _merged_with_existing(fs: pafs.FileSystem, root: str, table: pa.Table) -> pa.Table:
    """``table`` merged with the day file already in the corpus: one row per window start,
    sorted by time, the existing row kept where both have one."""
    subject, day = table["subject"][0].as_py(), table["day"][0].as_py()
    path = corpus.join(root, corpus.day_file(subject, day))
    if not corpus.exists(fs, path):
        return table
    existing = pq.read_table(path, filesystem=fs).cast(table.schema)
    combined = pa.concat_tables([existing, table])
    times = combined["time"].cast(pa.int64()).to_numpy()
    _, first = np.unique(times, return_index=True)
    return combined.take(pa.array(first))


def write_recording_days(
    fs: pafs.FileSystem,
    root: str,
    subject: str,
    recording_id: str,
    windowed: WindowedRecording,
    info: CorpusInfo,
    day_recordings: dict[str, set[str]],
    entries: dict[str, dict],
) -> None:
    starts_ms = windowed.starts_ns // (NS_PER_SECOND // 1000)
    for day, rows in split_days(windowed.starts_ns):
        table = corpus.day_table(
            subject,
            day,
            starts_ms[rows],
            windowed.windows[rows],
            windowed.wear[rows],
            WindowFormat(info.window_format),
            info.version,
        )
        sources = day_recordings.get(day, set())
        if sources - {recording_id}:
            table = _merged_with_existing(fs, root, table)
        sources = sources | {recording_id}
        day_recordings[day] = sources
        label = RECORDING_SEPARATOR.join(sorted(sources))
        entries[day] = corpus.write_day(root, table, label, fs=fs)
