"""What an ingest run is asked to do and what it reports: options, exit statuses, the
report object, and one subject's work."""

from __future__ import annotations

from dataclasses import dataclass, field

from wearssl.data import corpus
from wearssl.data.corpus import WindowFormat
from wearssl.data.devices import (
    ReadOptions,
)
from wearssl.data.preprocess import (
    PreprocessOptions,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_QUARANTINED = 3
RECORDING_SEPARATOR = "+"


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
    recordings: list[dict]  # one summary per input file (see file_summary)
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
