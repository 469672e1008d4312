"""What the ``wearssl`` front door knows of a job: its name, its help and how it runs.

A job's module builds its arguments with light imports only; the heavy ones (Ray, torch,
MLflow, pandas) happen inside ``run``, after parsing, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

FAULT_EXIT = "2 usage or config error, or a fault the job names (one line on stderr)"
UNEXPECTED_EXIT = "1 unexpected failure (a traceback)"


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # its line in ``wearssl --help``
    description: str
    epilog: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def exit_status(*codes: str) -> str:
    """The epilog's exit-status line: ``codes`` in order, then the unexpected failure."""
    line = "exit status: " + "; ".join([*codes, UNEXPECTED_EXIT]) + "."
    return textwrap.fill(line, width=88) + "\n"
