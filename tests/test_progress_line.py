"""The progress line: its ETA arithmetic, and how often it writes to a terminal or a log."""

from __future__ import annotations

import io

from wearssl.infra.console import ProgressLine, format_duration, format_rate, progress_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_duration_formats_minutes_hours_and_unknown() -> None:
    assert format_duration(65) == "1:05"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "?"
    assert format_duration(-1) == "?"


def test_eta_is_the_remaining_work_at_the_mean_rate() -> None:
    text = progress_text("epoch 1/3", done=1_000, total=4_000, elapsed=10.0, unit="windows")
    assert "1,000/4,000 windows" in text
    assert "100.0 windows/s" in text
    assert text.endswith("ETA 0:30")


def test_log_stream_gets_a_plain_line_at_most_every_log_interval() -> None:
    clock, stream = FakeClock(), io.StringIO()
    line = ProgressLine("epoch", 100, stream=stream, log_seconds=30, clock=clock)
    for second in range(1, 91):
        clock.now = float(second)
        line.update(second)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "\r" not in stream.getvalue()


def test_terminal_line_is_redrawn_in_place_and_cleared() -> None:
    clock, stream = FakeClock(), Terminal()
    line = ProgressLine("epoch", 10, stream=stream, redraw_seconds=0.5, clock=clock)
    clock.now = 1.0
    line.update(5)
    line.clear()
    assert stream.getvalue().startswith("\r\033[K")
    assert "\n" not in stream.getvalue()
    assert stream.getvalue().endswith("\r\033[K")


def test_a_rate_under_one_a_second_reads_per_minute() -> None:
    assert format_rate(2.5, "windows") == "2.5 windows/s"
    assert format_rate(1 / 60, "trials") == "1.0 trials/min"
    assert "0.0 trials/s" not in progress_text("sweep", 1, 7, 72.0, "trials")
