"""The run's reports: the quarantine CSV and the ingest report (rewritten with the
manifest), their summary, and the log line of each recording."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime, timezone

from wearssl.data import corpus

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


def read_quarantine(out: str) -> dict[str, dict]:
    fs, root = corpus.resolve(out)
    path = corpus.join(root, QUARANTINE_NAME)
    if not corpus.exists(fs, path):
        return {}
    with fs.open_input_stream(path) as f:
        rows = csv.DictReader(io.StringIO(f.read().decode("utf-8")))
        return {row["file"]: row for row in rows}


def write_quarantine(out: str, rows: dict[str, dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=QUARANTINE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for file in sorted(rows):
        writer.writerow(
            {k: "" if rows[file].get(k) is None else rows[file][k] for k in QUARANTINE_COLUMNS}
        )
    fs, root = corpus.resolve(out)
    corpus.atomic_write_bytes(fs, corpus.join(root, QUARANTINE_NAME), buffer.getvalue().encode())


def read_report(out: str) -> dict[str, dict]:
    report = corpus.read_ingest_report(out)
    return {} if report is None else {row["file"]: row for row in report.to_pylist()}


def update_report(rows: dict[str, dict], summary: dict) -> None:
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


def update_quarantine(rows: dict[str, dict], summary: dict) -> None:
    """Report rows: replaced when a file is processed again, kept when it is skipped."""
    if summary["status"] in ("quarantined", "partial"):
        rows[summary["file"]] = summary
    elif summary["status"] == "ingested":
        rows.pop(summary["file"], None)


def log_line(summary: dict, done: int, total: int) -> str:
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
