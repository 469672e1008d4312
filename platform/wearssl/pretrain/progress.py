"""Pre-training's console: rank 0 tells the driver how far an epoch is and what to say; the
driver draws it (one :class:`~wearssl.infra.console.ProgressLine` per epoch, one line per
finished epoch), so nothing is printed by a worker and repeated by Ray's log forwarding.

Rank 0 posts to a small actor (:class:`ProgressBoard`) without waiting for an answer; a
driver thread (:class:`ProgressPrinter`) polls it while ``trainer.fit()`` runs. A slow or
gone driver, or a dead board, never blocks or fails training: posts are fire-and-forget
and a failed post is dropped.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, TextIO

import ray

from wearssl.infra.console import ProgressLine

log = logging.getLogger(__name__)

POST_SECONDS = 0.5
POLL_SECONDS = 0.5
POLL_TIMEOUT_S = 10.0


class _Board:
    """The latest progress of the running epoch and the lines not yet printed."""

    def __init__(self) -> None:
        self._progress: tuple[int, int] | None = None
        self._lines: list[str] = []

    def progress(self, epoch: int, windows: int) -> None:
        self._progress = (epoch, windows)

    def say(self, line: str) -> None:
        """A line to print; it also ends the running epoch's progress (lines come between
        epochs: resuming, an epoch's metrics, early stopping, a fault)."""
        self._lines.append(line)
        self._progress = None

    def take(self) -> tuple[tuple[int, int] | None, list[str]]:
        lines, self._lines = self._lines, []
        return self._progress, lines


ProgressBoard = ray.remote(num_cpus=0)(_Board)


class WorkerProgress:
    """Rank 0's side: posts progress at most every ``POST_SECONDS`` and lines as they come.

    ``board`` None (another rank, or no driver listening) posts nothing."""

    def __init__(self, board: Any, windows_per_step: int) -> None:
        self._board = board
        self._windows_per_step = windows_per_step
        self._last_post = -float("inf")

    def step(self, epoch: int, steps: int) -> None:
        now = time.monotonic()
        if now - self._last_post >= POST_SECONDS:
            self._last_post = now
            self._post("progress", epoch, steps * self._windows_per_step)

    def say(self, line: str) -> None:
        self._post("say", line)

    def _post(self, method: str, *args: Any) -> None:
        if self._board is None:
            return
        try:
            getattr(self._board, method).remote(*args)
        except Exception as err:  # noqa: BLE001 - the console must never stop training
            log.debug("progress post dropped: %s", err)


class ProgressPrinter:
    """The driver's side: a thread that polls ``board`` and draws what it holds.

    Use as a context manager around ``trainer.fit()``; leaving it prints what is left."""

    def __init__(
        self, board: Any, epochs: int, windows_per_epoch: int, stream: TextIO | None = None
    ) -> None:
        self._board = board
        self._epochs = epochs
        self._windows_per_epoch = windows_per_epoch
        self._stream = stream or sys.stdout
        self._line: ProgressLine | None = None
        self._epoch = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="pretrain-progress", daemon=True)

    def __enter__(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.draw_once()
        if self._line is not None:
            self._line.clear()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.draw_once()

    def draw_once(self) -> None:
        """Fetch the board's progress and lines and draw them; a failed fetch draws nothing."""
        try:
            progress, lines = ray.get(self._board.take.remote(), timeout=POLL_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - a missed poll only delays the console
            log.debug("progress poll failed: %s", err)
            return
        for line in lines:
            if self._line is not None:
                self._line.clear()
            print(line, file=self._stream, flush=True)
        if progress is not None:
            self._draw_progress(*progress)

    def _draw_progress(self, epoch: int, windows: int) -> None:
        if epoch != self._epoch:
            self._epoch = epoch
            self._line = ProgressLine(
                f"epoch {epoch + 1}/{self._epochs}", self._windows_per_epoch, stream=self._stream
            )
        if self._line is not None:
            self._line.update(min(windows, self._windows_per_epoch))
