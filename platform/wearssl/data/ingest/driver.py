"""The job-level loop: plan subject tasks, run them with Ray Data, and merge manifest
entries and reports at most every ``flush_seconds`` and at the end."""

from __future__ import annotations

import json
import time
import warnings

import pyarrow as pa

from wearssl.data import corpus
from wearssl.data.corpus import INGEST_REPORT_NAME, CorpusInfo, WindowFormat
from wearssl.data.devices import (
    RecordingError,
    recording_format,
)
from wearssl.data.ingest.inputs import (
    estimated_task_memory,
    expand_inputs,
    load_subject_map,
    memory_class,
    raw_subject,
)
from wearssl.data.ingest.options import (
    RECORDING_SEPARATOR,
    IngestOptions,
    IngestReport,
    SubjectWork,
)
from wearssl.data.ingest.recording_task import file_summary, ingest_row
from wearssl.data.ingest.reports import (
    QUARANTINE_NAME,
    log_line,
    read_quarantine,
    read_report,
    report_summary,
    update_quarantine,
    update_report,
    write_quarantine,
)
from wearssl.data.privacy import pseudonymise

TASK_MAX_RETRIES = 2


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
            summary = file_summary(path, "", "")
            summary["reason"] = "unknown recording format (extension not recognised)"
            rejected.append(summary)
            continue
        try:
            subject = pseudonymise(raw_subject(path, mapping))
        except RecordingError as error:
            summary = file_summary(path, "", "")
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
                    ingest_row,
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
    if not files:
        raise ValueError(f"no recordings found in {', '.join(inputs)}")
    _prepare_corpus(out, options.window_format)
    try:
        manifest: pa.Table | None = corpus.read_manifest(out)
    except FileNotFoundError:
        manifest = None
    works, summaries = _plan(files, options, manifest)
    version = corpus.read_info(out).version
    quarantine = read_quarantine(out)
    report_rows = read_report(out)
    for summary in summaries:
        update_quarantine(quarantine, summary)
        update_report(report_rows, summary)
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
        write_quarantine(out, quarantine)
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
                    update_quarantine(quarantine, summary)
                    update_report(report_rows, summary)
                    if options.verbose:
                        print(log_line(summary, len(summaries), total), flush=True)
                if time.monotonic() - last_flush >= options.flush_seconds:
                    flush()
        for work in works:
            if work.subject not in finished:
                for path in work.files:
                    summary = file_summary(path, work.subject, "")
                    summary["reason"] = "the task failed (worker crash or out of memory)"
                    summaries.append(summary)
                    update_quarantine(quarantine, summary)
                    update_report(report_rows, summary)
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
