"""One subject's task: each of its recordings read, preprocessed and written to the
corpus, and the report row (summary) of each file."""

from __future__ import annotations

import json
import time

import numpy as np

from wearssl.data import corpus
from wearssl.data.devices import (
    DROPPED_MALFORMED,
    DROPPED_MISSING,
    DROPPED_NOT_INCREASING,
    Recording,
    RecordingError,
    read_recording,
)
from wearssl.data.ingest.days import write_recording_days
from wearssl.data.ingest.inputs import content_hash
from wearssl.data.ingest.options import RECORDING_SEPARATOR, IngestOptions, SubjectWork
from wearssl.data.preprocess import (
    PreprocessOptions,
    WindowedRecording,
    finite_or_none,
    preprocess,
    split_days,
)


def file_summary(path: str, subject: str, node: str) -> dict:
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
    summary = file_summary(path, subject, node)
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
        write_recording_days(fs, root, subject, digest, windowed, info, day_recordings, entries)
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


def ingest_row(row: dict, out: str, options: IngestOptions, known: frozenset[str]) -> dict:
    work = SubjectWork(**json.loads(row["work"]))
    return {"payload": json.dumps(ingest_subject(work, out, options, known))}
