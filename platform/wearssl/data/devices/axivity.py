"""Axivity ``.cwa`` files (AX3, AX6; the UK Biobank device): how much a file with
corrupt blocks lost, from its block count."""

from __future__ import annotations

import os

AXIVITY = "Axivity"
"""The device name ``actipy`` gives an Axivity file."""
CWA_HEADER_BYTES = 1024
CWA_BLOCK_BYTES = 512


def axivity_lost_seconds(path: str, n_samples: int, rate: float, read_errors: int) -> float:
    """Seconds of data in the blocks the reader skipped, at the mean samples per good
    block."""
    if not read_errors:
        return 0.0
    blocks = (_uncompressed_size(path) - CWA_HEADER_BYTES) // CWA_BLOCK_BYTES
    good_blocks = max(1, blocks - read_errors)
    return read_errors * (n_samples / good_blocks) / rate


def _uncompressed_size(path: str) -> int:
    """Size of a file's content; for ``.gz`` the size its trailer records."""
    if not path.lower().endswith(".gz"):
        return os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")
