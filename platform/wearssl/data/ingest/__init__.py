"""Ingest raw recordings into the windowed corpus, in parallel with Ray Data, resumably.

``ingest_recordings(inputs, out, options)`` assumes Ray is initialised (the job does it).

How it works:

- **Inputs** are files, folders (searched recursively for the formats of
  ``wearssl.data.devices``; other files there are ignored) or globs, local or any pyarrow URI.
  A named file of an unknown format is quarantined.
- **Subjects.** A recording's subject is its file name without the extension, or the
  ``subject`` that a mapping CSV (columns ``file,subject``; ``file`` is the file name or
  the full path) gives it. The id is pseudonymised on the driver (so workers never need
  the key) and only the pseudonym is stored or logged.
- **Work.** One Ray Data task per subject, which in the usual case of one recording a
  subject is one task per recording; a subject's recordings are done in one task, in
  file-name order, because their windows may fall on the same subject-day, and a
  subject-day is one corpus file. Each task reserves ``num_cpus=1`` and ``memory=``
  estimated from the file sizes (rounded up to a power of two so that tasks of similar
  size share one Ray Data operator; capped at the largest node's memory). Tasks read
  from the input URI and write day files straight to the output URI, so any node can
  run any task.
- **Per recording:** content hash (sha256 of the bytes) -> skip if already in the
  manifest -> read -> calibrate / non-wear / resample / window (``wearssl.data.preprocess``)
  -> one corpus file per subject-day (``corpus.write_day``, atomic), in the window
  format and layout version that the corpus's ``corpus.json`` records. A day that already
  holds windows of another recording of the subject is merged with them (window start
  times unique, the earlier file's window kept), and its manifest ``recording`` lists
  both hashes joined by ``+``.
- **Driver.** Streams results, prints a log line per recording, and merges manifest
  entries with ``corpus.add_to_manifest`` (atomic) at most every ``flush_seconds`` and at
  the end. The quarantine report ``OUT/quarantine.csv`` and the ingest report
  ``OUT/ingest_report.parquet`` are rewritten atomically with it, and the run ends with
  a summary of the report (totals only: no file names in logs).
- **Ingest report** (``corpus.INGEST_REPORT_SCHEMA``), one row per file: status and
  reason; device, device id, sample rate; the clock its times are on and the UTC offset
  where the device states it (or where absolute times were moved onto a zone's wall
  clock); first and last sample; gaps (count, seconds); ActiGraph idle sleep filled
  (seconds); calibration (applied or refused, why, and the error in mg before and after
  the fit); read errors and the reader's message; CSV rows dropped (malformed lines,
  missing values, time not increasing) and samples clipped; seconds lost; windows, worn
  windows and non-wear seconds. A row is replaced when its file is processed again and
  kept when the file is skipped as already ingested.
- **Resuming.** A killed run leaves only complete day files and a manifest listing
  complete subject-days. Rerunning skips recordings whose hash the manifest lists and
  redoes the others, overwriting their day files with identical content, so every window
  ends up in the corpus exactly once. To reprocess with other options, ingest into a new
  corpus.
- **Bad input** never stops the run: an empty, unreadable, corrupt, unknown or too
  short (< one window) recording, or a task that dies (e.g. out of memory), is listed in
  the quarantine report as ``quarantined`` with the reason; a recording the reader could
  partly recover is ingested and listed as ``partial`` with the kept fraction and the
  seconds lost. Report rows carry file names (the report stays with the data owner) and
  are replaced when the file is processed again.

Exit status of the job: ``EXIT_OK`` (0) all recordings ingested or skipped (some may be
``partial``), ``EXIT_QUARANTINED`` (3) finished, but some recordings were quarantined,
``EXIT_USAGE`` (2) bad arguments.

Modules: ``options`` (what a run is asked and reports), ``inputs`` (files, subjects,
hashes, task memory), ``recording_task`` (one subject's task and each file's report
row), ``days`` (day files, merged across a subject's recordings), ``reports``
(quarantine and ingest reports), ``driver`` (the job-level loop).
"""

from wearssl.data.ingest.driver import ingest_recordings
from wearssl.data.ingest.options import (
    EXIT_OK,
    EXIT_QUARANTINED,
    EXIT_USAGE,
    IngestOptions,
    IngestReport,
)
from wearssl.data.ingest.reports import QUARANTINE_NAME

__all__ = [
    "EXIT_OK",
    "EXIT_QUARANTINED",
    "EXIT_USAGE",
    "QUARANTINE_NAME",
    "IngestOptions",
    "IngestReport",
    "ingest_recordings",
]
