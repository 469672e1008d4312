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
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import io
import json
import math
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wearssl.data import corpus
from wearssl.data.corpus import INGEST_REPORT_NAME, CorpusInfo, WindowFormat
from wearssl.data.devices import (
    DROPPED_MALFORMED,
    DROPPED_MISSING,
    DROPPED_NOT_INCREASING,
    ReadOptions,
    Recording,
    RecordingError,
    estimated_samples,
    read_recording,
    recording_format,
    recording_stem,
)
from wearssl.data.preprocess import (
    NS_PER_SECOND,
    PreprocessOptions,
    WindowedRecording,
    finite_or_none,
    preprocess,
    split_days,
)
from wearssl.data.privacy import pseudonymise

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_QUARANTINED = 3
QUARANTINE_NAME = "quarantine.csv"
QUARANTINE_COLUMNS = (
    "file",
    "status",
    "reason",
    "kept_fraction",
    "lost_seconds",
    "subject",
    "recording",
)
RECORDING_SEPARATOR = "+"
HASH_CHUNK_BYTES = 8 << 20
TASK_BASE_MEMORY = 512 << 20
# Peak bytes per raw sample of one task. bench/ingest.py measured 2.0 GiB for 60 M samples
# read from .npy (~33 B/sample over the base); actipy's readers grow 28-B/sample arrays by
# doubling before the float32 copy, so device files need more.
TASK_BYTES_PER_SAMPLE = 80
TASK_MAX_RETRIES = 2
_GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class IngestOptions:
    read: ReadOptions = field(default_factory=ReadOptions)
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    window_format: WindowFormat = WindowFormat.FLOAT16
    subject_map: str | None = None
    flush_seconds: float = 5.0
    progress: bool = True
    verbose: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_format", WindowFormat(self.window_format))
        p = self.preprocess
        if p.window_seconds != corpus.WINDOW_SECONDS or p.target_rate_hz != corpus.SAMPLE_RATE_HZ:
            raise ValueError(
                f"the corpus holds {corpus.WINDOW_SECONDS}-s windows at "
                f"{corpus.SAMPLE_RATE_HZ} Hz; got window_seconds={p.window_seconds}, "
                f"target_rate_hz={p.target_rate_hz}"
            )
        if p.align != "clock":
            raise ValueError("corpus windows are aligned to the clock (align='clock')")
        if self.flush_seconds < 0:
            raise ValueError(f"flush_seconds must be >= 0, got {self.flush_seconds}")


@dataclass
class IngestReport:
    out: str
    recordings: list[dict]  # one summary per input file (see _summary)
    manifest_rows: int
    seconds: float

    def with_status(self, *statuses: str) -> list[dict]:
        return [r for r in self.recordings if r["status"] in statuses]

    @property
    def exit_status(self) -> int:
        return EXIT_QUARANTINED if self.with_status("quarantined") else EXIT_OK

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("ingested", "partial", "skipped", "quarantined")}
        for r in self.recordings:
            counts[r["status"]] += 1
        return counts


@dataclass(frozen=True)
class SubjectWork:
    """The recordings of one subject, done in one task."""

    subject: str  # pseudonym
    files: list[str]
    existing: dict[str, dict]  # day -> manifest entry already in the corpus
    memory_bytes: int


# ---------------------------------------------------------------- inputs and subjects


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _files_under(fs: pafs.FileSystem, base: str) -> list[str]:
    selector = pafs.FileSelector(base, recursive=True)
    return [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _as_input(fs: pafs.FileSystem, original: str, path: str) -> str:
    """A path as the tasks should open it: URIs keep their scheme."""
    if _is_uri(original):
        scheme = original.split("://", 1)[0]
        return f"{scheme}://{path.lstrip('/')}" if scheme != "file" else path
    return path


def expand_inputs(inputs: list[str]) -> tuple[list[str], int]:
    """Files to ingest from files, folders and globs, and how many files in folders were
    ignored for an unsupported extension. A missing input is a ValueError."""
    files: list[str] = []
    ignored = 0
    for item in inputs:
        if _GLOB_CHARACTERS & set(item):
            if _is_uri(item):
                base = item.split("://", 1)[1].split("*", 1)[0].rsplit("/", 1)[0]
                fs, _ = corpus.resolve(item.split("://", 1)[0] + "://" + base)
                pattern = item.split("://", 1)[1]
                matches = [
                    _as_input(fs, item, p)
                    for p in _files_under(fs, base)
                    if fnmatch.fnmatch(p, pattern)
                ]
            else:
                matches = [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not matches:
                raise ValueError(f"input {item!r} matches no file")
            files += [str(Path(p).resolve()) if not _is_uri(p) else p for p in matches]
            continue
        fs, path = corpus.resolve(item)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ValueError(f"input {item!r} does not exist")
        if info.type == pafs.FileType.Directory:
            for found in _files_under(fs, path):
                name = found.rsplit("/", 1)[-1]
                if name.startswith("."):
                    continue
                if recording_format(found) is None:
                    ignored += 1
                else:
                    files.append(_as_input(fs, item, found))
        else:
            files.append(_as_input(fs, item, path))
    return sorted(dict.fromkeys(files)), ignored


def load_subject_map(path: str) -> dict[str, str]:
    """A CSV with columns ``file,subject`` -> {file name or path: raw subject id}."""
    fs, local = corpus.resolve(path)
    with fs.open_input_stream(local) as f:
        rows = list(csv.DictReader(io.StringIO(f.read().decode("utf-8-sig"))))
    if not rows or not {"file", "subject"} <= set(rows[0]):
        raise ValueError(f"subject map {path} must be a CSV with columns 'file' and 'subject'")
    mapping: dict[str, str] = {}
    for row in rows:
        file, subject = row["file"].strip(), row["subject"].strip()
        if not file or not subject:
            raise ValueError(f"subject map {path}: empty file or subject in row {row}")
        mapping[file] = subject
    return mapping


def raw_subject(path: str, mapping: dict[str, str] | None) -> str:
    """The raw subject id of a recording (file-name stem, or the mapping's entry)."""
    if mapping is None:
        return recording_stem(path)
    name = path.rsplit("/", 1)[-1]
    for key in (path, name):
        if key in mapping:
            return mapping[key]
    raise RecordingError(f"{path}: not listed in the subject map")


def content_hash(path: str) -> str:
    """sha256 of a file's bytes, streamed (local path or URI)."""
    fs, local = corpus.resolve(path)
    digest = hashlib.sha256()
    with fs.open_input_stream(local) as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def estimated_task_memory(paths: list[str]) -> int:
    """Bytes a task needs for the largest of its recordings (they are done one by one)."""
    largest = 0
    for path in paths:
        fs, local = corpus.resolve(path)
        size = fs.get_file_info(local).size or 0
        largest = max(largest, estimated_samples(path, size))
    return TASK_BASE_MEMORY + largest * TASK_BYTES_PER_SAMPLE


def memory_class(nbytes: int, cap: int) -> int:
    """``nbytes`` rounded up to a power of two, at most ``cap``."""
    return int(min(cap, 2 ** math.ceil(math.log2(max(nbytes, 1)))))


# ---------------------------------------------------------------- one task


def _summary(path: str, subject: str, node: str) -> dict:
    """A recording's summary before anything is known: the log line, quarantine row and
    ingest-report row are made from it."""
    return {
        "file": path,
        "subject": subject,
        "node": node,
        "status": "quarantined",
        "reason": "",
        "recording": "",
        "kept_fraction": None,
        "lost_seconds": None,
        "days": 0,
        "windows": 0,
        "wear_windows": 0,
        "seconds": 0.0,
        "started_at": time.time(),
        "timings": {},
    }


def _iso_wall_clock(ns: int) -> str:
    return np.datetime64(int(ns), "ns").astype("datetime64[ms]").astype(str)


def recording_facts(recording: Recording) -> dict:
    """What the reader found, for the ingest report and prediction's Info.json."""
    dropped = recording.dropped_rows
    return {
        "device": recording.device,
        "device_id": recording.device_id,
        "sample_rate_hz": recording.sample_rate_hz,
        "clock": recording.clock,
        "utc_offset_seconds": recording.utc_offset_seconds,
        "first_sample": _iso_wall_clock(recording.times_ns[0]),
        "last_sample": _iso_wall_clock(recording.times_ns[-1]),
        "idle_sleep_seconds": recording.idle_sleep_seconds,
        "read_errors": recording.read_errors,
        "reader_message": "; ".join(recording.notes),
        "malformed_lines": dropped.get(DROPPED_MALFORMED, 0),
        "missing_rows": dropped.get(DROPPED_MISSING, 0),
        "not_increasing_rows": dropped.get(DROPPED_NOT_INCREASING, 0),
        "clipped_samples": recording.clipped_samples,
        "lost_seconds": recording.lost_seconds,
        "kept_fraction": recording.kept_fraction,
    }


def preprocess_facts(windowed: WindowedRecording, options: PreprocessOptions) -> dict:
    """What preprocessing found, for the ingest report and prediction's Info.json."""
    calibration = windowed.calibration
    if not options.calibrate:
        state = "off"
    else:
        state = "applied" if calibration.applied else "refused"
    return {
        "gaps": windowed.gap_count,
        "gap_seconds": windowed.gap_seconds,
        "calibration": state,
        "calibration_reason": calibration.reason if state == "refused" else "",
        "calibration_error_before_mg": finite_or_none(calibration.error_before_mg),
        "calibration_error_after_mg": finite_or_none(calibration.error_after_mg),
        "nonwear_seconds": windowed.nonwear_seconds,
    }


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


def _write_recording_days(
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


def ingest_one(
    path: str,
    subject: str,
    out: str,
    options: IngestOptions,
    known: frozenset[str],
    day_recordings: dict[str, set[str]],
    entries: dict[str, dict],
    node: str = "",
) -> dict:
    """Ingest one recording of ``subject`` into the corpus at ``out``; never raises for
    bad input. Adds its days' manifest entries to ``entries``; returns its summary."""
    summary = _summary(path, subject, node)
    began = time.perf_counter()
    try:
        summary["recording"] = digest = content_hash(path)
        if digest in known:
            summary.update(status="skipped", reason="already in the corpus")
            return summary
        info = corpus.read_info(out)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        recording = read_recording(path, options.read)
        timings["read"] = time.perf_counter() - t0
        summary.update(recording_facts(recording))
        windowed = preprocess(
            recording.times_ns,
            recording.xyz,
            recording.sample_rate_hz,
            options.preprocess,
            recording.resolution_g,
        )
        timings.update(windowed.timings)
        summary.update(preprocess_facts(windowed, options.preprocess))
        duration = recording.duration_seconds
        lost, read_errors, notes = recording.lost_seconds, recording.read_errors, recording.notes
        del recording
        if len(windowed) == 0:
            summary["reason"] = (
                f"too short: {duration:.1f} s of data holds no whole "
                f"{options.preprocess.window_seconds}-s window"
            )
            return summary
        t0 = time.perf_counter()
        fs, root = corpus.resolve(out)
        _write_recording_days(fs, root, subject, digest, windowed, info, day_recordings, entries)
        timings["write"] = time.perf_counter() - t0
        days = {day for day, _ in split_days(windowed.starts_ns)}
        partial = read_errors > 0 or bool(lost)
        summary.update(
            status="partial" if partial else "ingested",
            reason="; ".join(notes) or (f"{read_errors} read errors" if partial else ""),
            days=len(days),
            windows=len(windowed),
            wear_windows=int(windowed.wear.sum()),
            timings=timings,
        )
    except RecordingError as error:
        summary["reason"] = summary["reader_message"] = str(error)
    except OSError as error:
        summary["reason"] = f"{path}: cannot be read: {error}"
    except MemoryError:
        summary["reason"] = "out of memory while processing"
    except Exception as error:  # a bad file must not stop the others
        summary["reason"] = f"{path}: unexpected {type(error).__name__}: {error}"
    finally:
        summary["seconds"] = time.perf_counter() - began
    return summary


def ingest_subject(
    work: SubjectWork, out: str, options: IngestOptions, known: frozenset[str]
) -> dict:
    """Ingest all recordings of one subject (runs in a Ray task)."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    day_recordings = {
        day: set(entry["recording"].split(RECORDING_SEPARATOR))
        for day, entry in work.existing.items()
    }
    entries: dict[str, dict] = {}
    done: set[str] = set(known)
    summaries = []
    for path in work.files:
        summary = ingest_one(
            path, work.subject, out, options, frozenset(done), day_recordings, entries, node
        )
        if summary["recording"]:
            done.add(summary["recording"])
        summaries.append(summary)
    return {"subject": work.subject, "recordings": summaries, "entries": list(entries.values())}


def _ingest_row(row: dict, out: str, options: IngestOptions, known: frozenset[str]) -> dict:
    work = SubjectWork(**json.loads(row["work"]))
    return {"payload": json.dumps(ingest_subject(work, out, options, known))}


# ---------------------------------------------------------------- driver


def _largest_node_memory() -> int:
    import ray

    sizes = [n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(sizes, default=0)) or (1 << 62)


def _prepare_corpus(out: str, window_format: WindowFormat) -> None:
    """Write ``corpus.json`` for a new corpus; an existing one must hold ``window_format``
    (its version is kept: the tasks write that version's layout)."""
    info = corpus.info_to_write(out, CorpusInfo(window_format=window_format.value))
    corpus.write_info(out, info)


def _known_recordings(manifest: pa.Table | None) -> frozenset[str]:
    if manifest is None:
        return frozenset()
    return frozenset(
        part
        for label in manifest["recording"].to_pylist()
        for part in label.split(RECORDING_SEPARATOR)
    )


def _existing_days(manifest: pa.Table | None) -> dict[str, dict[str, dict]]:
    by_subject: dict[str, dict[str, dict]] = {}
    if manifest is not None:
        for entry in manifest.to_pylist():
            by_subject.setdefault(entry["subject"], {})[entry["day"]] = entry
    return by_subject


def _read_quarantine(out: str) -> dict[str, dict]:
    fs, root = corpus.resolve(out)
    path = corpus.join(root, QUARANTINE_NAME)
    if not corpus.exists(fs, path):
        return {}
    with fs.open_input_stream(path) as f:
        rows = csv.DictReader(io.StringIO(f.read().decode("utf-8")))
        return {row["file"]: row for row in rows}


def _write_quarantine(out: str, rows: dict[str, dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=QUARANTINE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for file in sorted(rows):
        writer.writerow(
            {k: "" if rows[file].get(k) is None else rows[file][k] for k in QUARANTINE_COLUMNS}
        )
    fs, root = corpus.resolve(out)
    corpus.atomic_write_bytes(fs, corpus.join(root, QUARANTINE_NAME), buffer.getvalue().encode())


def _read_report(out: str) -> dict[str, dict]:
    report = corpus.read_ingest_report(out)
    return {} if report is None else {row["file"]: row for row in report.to_pylist()}


def _update_report(rows: dict[str, dict], summary: dict) -> None:
    """Ingest-report rows: replaced when a file is processed again, kept when skipped."""
    if summary["status"] == "skipped" and summary["file"] in rows:
        return
    rows[summary["file"]] = {
        **summary,
        "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def report_summary(summaries: list[dict]) -> list[str]:
    """Lines summing up the ingest-report rows of one run (totals only, no file names)."""
    done = [s for s in summaries if s["status"] in ("ingested", "partial")]

    def total(key: str) -> float:
        return sum(s.get(key) or 0 for s in done)

    windows, worn = int(total("windows")), int(total("wear_windows"))
    share = f" ({100 * worn / windows:.1f} %)" if windows else ""
    calibration = Counter(s.get("calibration") or "-" for s in done)
    devices = Counter(s.get("device") or "-" for s in done)
    clocks = Counter(s.get("clock") or "-" for s in done)
    return [
        f"ingest report: {len(done)} recordings ingested "
        f"({', '.join(f'{n} {d}' for d, n in sorted(devices.items()))}): {windows} windows, "
        f"{worn} worn{share}, {total('nonwear_seconds'):.0f} s non-wear",
        f"  gaps {int(total('gaps'))} ({total('gap_seconds'):.1f} s); idle sleep filled "
        f"{total('idle_sleep_seconds'):.1f} s; calibration "
        + ", ".join(f"{n} {state}" for state, n in sorted(calibration.items())),
        f"  read errors {int(total('read_errors'))}; rows dropped: "
        f"{int(total('malformed_lines'))} malformed, {int(total('missing_rows'))} missing, "
        f"{int(total('not_increasing_rows'))} time not increasing; "
        f"{int(total('clipped_samples'))} samples clipped; {total('lost_seconds'):.1f} s lost",
        "  clocks: " + "; ".join(f"{n} x {clock}" for clock, n in sorted(clocks.items())),
    ]


def _update_quarantine(rows: dict[str, dict], summary: dict) -> None:
    """Report rows: replaced when a file is processed again, kept when it is skipped."""
    if summary["status"] in ("quarantined", "partial"):
        rows[summary["file"]] = summary
    elif summary["status"] == "ingested":
        rows.pop(summary["file"], None)


def _log_line(summary: dict, done: int, total: int) -> str:
    """One line per recording; names only the pseudonym and a hash prefix, never the file."""
    recording = summary["recording"][:12] or "-"
    head = f"ingest [{done}/{total}] subject={summary['subject']} recording={recording}"
    status = summary["status"]
    if status == "skipped":
        return f"{head} skipped (already ingested)"
    if status == "quarantined":
        return f"{head} quarantined (see {QUARANTINE_NAME})"
    line = (
        f"{head} days={summary['days']} windows={summary['windows']} "
        f"wear={summary['wear_windows']} {summary['seconds']:.1f}s node={summary['node'][:8]}"
    )
    if status == "partial":
        kept = summary["kept_fraction"]
        line += f" partial (kept {'unknown' if kept is None else f'{kept:.3g}'})"
    return line


def _plan(
    files: list[str], options: IngestOptions, manifest: pa.Table | None
) -> tuple[list[SubjectWork], list[dict]]:
    """Group files by subject pseudonym; files that cannot be assigned are returned as
    quarantine summaries."""
    mapping = load_subject_map(options.subject_map) if options.subject_map else None
    existing = _existing_days(manifest)
    by_subject: dict[str, list[str]] = {}
    rejected = []
    for path in files:
        if recording_format(path) is None:
            summary = _summary(path, "", "")
            summary["reason"] = "unknown recording format (extension not recognised)"
            rejected.append(summary)
            continue
        try:
            subject = pseudonymise(raw_subject(path, mapping))
        except RecordingError as error:
            summary = _summary(path, "", "")
            summary["reason"] = str(error)
            rejected.append(summary)
            continue
        by_subject.setdefault(subject, []).append(path)
    works = [
        SubjectWork(subject, paths, existing.get(subject, {}), estimated_task_memory(paths))
        for subject, paths in sorted(by_subject.items())
    ]
    return works, rejected


def _results(works: list[SubjectWork], out: str, options: IngestOptions, known: frozenset[str]):
    """Yield each subject task's result as it finishes (a failed task yields nothing)."""
    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.max_errored_blocks, context.enable_progress_bars)
    # datasets copy the context when they are created: set it first
    context.max_errored_blocks = -1
    context.enable_progress_bars = options.progress
    try:
        cap = _largest_node_memory()
        classes: dict[int, list[SubjectWork]] = {}
        for work in works:
            classes.setdefault(memory_class(work.memory_bytes, cap), []).append(work)
        with warnings.catch_warnings():
            # Ray Data retries tasks forever by default, so a recording that kills its
            # worker would stall the run; max_retries (only settable through the
            # deprecated **ray_remote_args) bounds that.
            warnings.simplefilter("ignore", DeprecationWarning)
            datasets = [
                ray.data.from_items(
                    [{"work": json.dumps(w.__dict__)} for w in group],
                    override_num_blocks=len(group),
                ).map(
                    _ingest_row,
                    fn_kwargs={"out": out, "options": options, "known": known},
                    num_cpus=1,
                    memory=memory,
                    max_retries=TASK_MAX_RETRIES,
                )
                for memory, group in sorted(classes.items())
            ]
        dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
        for row in dataset.iter_rows():
            yield json.loads(row["payload"])
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved


def ingest_recordings(
    inputs: list[str], out: str, options: IngestOptions | None = None
) -> IngestReport:
    """Ingest recordings into the corpus at ``out`` (created if needed); Ray must be
    initialised. See the module docstring for what happens to each recording."""
    options = options or IngestOptions()
    began = time.perf_counter()
    files, ignored = expand_inputs(inputs)
    _prepare_corpus(out, options.window_format)
    try:
        manifest: pa.Table | None = corpus.read_manifest(out)
    except FileNotFoundError:
        manifest = None
    works, summaries = _plan(files, options, manifest)
    version = corpus.read_info(out).version
    quarantine = _read_quarantine(out)
    report_rows = _read_report(out)
    for summary in summaries:
        _update_quarantine(quarantine, summary)
        _update_report(report_rows, summary)
    if options.verbose:
        note = f", {ignored} other files in folders ignored" if ignored else ""
        print(f"ingest: {len(files)} files, {len(works)} subjects{note}", flush=True)

    pending: list[dict] = []
    manifest_rows = 0 if manifest is None else manifest.num_rows
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal pending, manifest_rows, last_flush
        if pending:
            manifest_rows = corpus.add_to_manifest(out, pending).num_rows
            pending = []
        _write_quarantine(out, quarantine)
        corpus.write_ingest_report(out, list(report_rows.values()), version)
        last_flush = time.monotonic()

    finished: set[str] = set()
    total = len(files)
    try:
        if works:
            for result in _results(works, out, options, _known_recordings(manifest)):
                finished.add(result["subject"])
                pending += result["entries"]
                for summary in result["recordings"]:
                    summaries.append(summary)
                    _update_quarantine(quarantine, summary)
                    _update_report(report_rows, summary)
                    if options.verbose:
                        print(_log_line(summary, len(summaries), total), flush=True)
                if time.monotonic() - last_flush >= options.flush_seconds:
                    flush()
        for work in works:
            if work.subject not in finished:
                for path in work.files:
                    summary = _summary(path, work.subject, "")
                    summary["reason"] = "the task failed (worker crash or out of memory)"
                    summaries.append(summary)
                    _update_quarantine(quarantine, summary)
                    _update_report(report_rows, summary)
    finally:
        flush()
    report = IngestReport(out, summaries, manifest_rows, time.perf_counter() - began)
    if options.verbose:
        counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
        print(
            f"ingest: done in {report.seconds:.1f}s: {counts}; "
            f"manifest has {manifest_rows} subject-days",
            flush=True,
        )
        for line in report_summary(summaries):
            print(line, flush=True)
        print(f"ingest: report per recording in {corpus.join(out, INGEST_REPORT_NAME)}", flush=True)
        if report.with_status("quarantined", "partial"):
            print(f"ingest: see {corpus.join(out, QUARANTINE_NAME)}", flush=True)
    return report
