"""The commit a result was produced by, for provenance in runs and benchmarks."""

from __future__ import annotations

import subprocess
from pathlib import Path

UNKNOWN_COMMIT = "unknown"  # outside a git checkout, or without git


def git_commit(repo: str | Path | None = None) -> str:
    """``HEAD`` of the repository at ``repo`` (default: this package's), or
    :data:`UNKNOWN_COMMIT`."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT
