"""What a job draws on the console while long work runs: one progress line with a rate and an ETA.

The driver draws it, never a Ray worker, so the line is not prefixed and repeated by Ray's
log forwarding. On a terminal the line is redrawn in place (at most every
``redraw_seconds``); in a log file or CI, where carriage returns pile up, a plain line is
written at most every ``log_seconds``, so a long epoch leaves a few lines, not thousands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss``; ``?`` when unknown (not finite or negative)."""
    if not seconds == seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(per_second: float, unit: str) -> str:
    """``per_second`` as ``x unit/s``, or ``x unit/min`` when under one a second (trials of a
    minute each would otherwise read ``0.0 trials/s``)."""
    if per_second >= 1 or per_second == 0:
        return f"{per_second:,.1f} {unit}/s"
    return f"{per_second * 60:,.1f} {unit}/min"


def progress_text(label: str, done: float, total: float, elapsed: float, unit: str) -> str:
    """``label  done/total unit  rate  ETA m:ss``: the ETA from the mean rate so far."""
    rate = done / elapsed if elapsed > 0 else 0.0
    remaining = (total - done) / rate if rate > 0 else float("nan")
    return (
        f"{label}  {done:,.0f}/{total:,.0f} {unit}  {format_rate(rate, unit)}"
        f"  ETA {format_duration(remaining)}"
    )


@dataclass
class ProgressLine:
    """A progress line for ``total`` units of work, drawn by :meth:`update`."""

    label: str
    total: float
    unit: str = "windows"
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    redraw_seconds: float = 0.5
    log_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _started: float = field(init=False)
    _last_drawn: float = field(init=False)
    _drawn_in_place: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._last_drawn = self._started

    @property
    def in_place(self) -> bool:
        """Whether the stream is a terminal, where the line is redrawn in place."""
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def update(self, done: float) -> None:
        """Draw the line for ``done`` units when its interval has passed since the last one."""
        now = self.clock()
        interval = self.redraw_seconds if self.in_place else self.log_seconds
        if now - self._last_drawn < interval:
            return
        self._last_drawn = now
        text = progress_text(self.label, done, self.total, now - self._started, self.unit)
        if self.in_place:
            self.stream.write(f"\r\033[K{text}")
            self._drawn_in_place = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove an in-place line, so the next printed line starts on a clean row."""
        if self._drawn_in_place:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn_in_place = False
