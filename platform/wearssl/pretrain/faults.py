"""What pre-training workers leave in the run folder for the driver: the fault that stopped
them, and metric values the tracking store refused.

Ray Train's result holds only checkpointed reports, so a worker that stops an epoch without
a checkpoint writes why to ``fault.txt``; the driver raises it as a
:class:`~wearssl.errors.PretrainingFault`. Values the store refused are kept in
``unlogged_metrics.json`` for the driver to retry and report.
"""

from __future__ import annotations

import json
import math
import re

import ray

from wearssl.data import corpus
from wearssl.infra import tracking

UNLOGGED_FILE = "unlogged_metrics.json"
FAULT_FILE = "fault.txt"

# How a CorpusError raised in a Ray Data task shows in the worker: Ray passes the task's
# traceback on as text (the exception object's cause does not cross processes).
_CORPUS_ERROR_LINE = re.compile(rf"{corpus.CorpusError.__name__}: (.+)")


def corpus_fault(error: BaseException) -> str | None:
    """The message of the :class:`corpus.CorpusError` behind ``error`` (raised here, or in
    a read task, whose error Ray re-raises with the task's traceback as text), or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, corpus.CorpusError) and not isinstance(seen, ray.exceptions.RayError):
            return str(seen)
        found = _CORPUS_ERROR_LINE.search(str(seen))
        if found:
            return found.group(1).strip()
        seen = seen.__cause__ or seen.__context__
    return None


def epoch_fault(epoch: int, reduced: list[float], read_errors: set[str], batch: int) -> str:
    """Why the epoch cannot be kept ('' when it can): (seen, loss sum, steps, ...) reduced."""
    if read_errors:
        return "; ".join(sorted(read_errors))
    steps = int(reduced[2])
    if steps == 0:
        return (
            f"epoch {epoch + 1} made no optimiser step: its windows did not fill one batch of "
            f"{batch} (sampling.subjects_per_batch x sampling.windows_per_subject)"
        )
    loss = reduced[1] / steps
    if not math.isfinite(loss):
        return (
            f"epoch {epoch + 1}: the training loss is {loss} (not finite); the run stops "
            "without checkpointing it. Lower optim.lr, or look for extreme values in the corpus"
        )
    return ""


def keep_fault(run_dir: str, message: str) -> None:
    """Keep the fault that stops the workers, for the driver to raise."""
    fs, path = corpus.resolve(run_dir)
    corpus.atomic_write_bytes(fs, corpus.join(path, FAULT_FILE), message.encode())


def take_fault(run_dir: str) -> str:
    """The fault the workers kept in ``run_dir`` ('' when none); it is removed."""
    fs, path = corpus.resolve(run_dir)
    record = corpus.join(path, FAULT_FILE)
    if not corpus.exists(fs, record):
        return ""
    with fs.open_input_stream(record) as f:
        message = f.read().decode()
    fs.delete_file(record)
    return message


def keep_unlogged(run_dir: str, pending: list[tuple[str, float, int]]) -> None:
    """Persist metric values the tracking store refused, for the driver to retry and report."""
    fs, path = corpus.resolve(run_dir)
    corpus.atomic_write_bytes(fs, corpus.join(path, UNLOGGED_FILE), json.dumps(pending).encode())


def retry_unlogged(run_dir: str, run_id: str, uri: str) -> str:
    """Log what the workers could not; returns a report of what still failed ("" if none)."""
    fs, path = corpus.resolve(run_dir)
    record = corpus.join(path, UNLOGGED_FILE)
    if not corpus.exists(fs, record):
        return ""
    with fs.open_input_stream(record) as f:
        pending = [tuple(item) for item in json.loads(f.read())]
    logger = tracking.ResilientLogger(run_id, uri, pending=pending, may_be_logged=True)
    logger.flush()
    if logger.pending:
        corpus.atomic_write_bytes(fs, record, json.dumps(logger.pending).encode())
        return logger.unlogged_report()
    fs.delete_file(record)
    return ""
