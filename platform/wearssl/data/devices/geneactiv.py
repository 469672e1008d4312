"""GENEActiv ``.bin`` files: the UTC offset of the text header, and how much a
truncated file lost, from the header's page count."""

from __future__ import annotations

import re

from wearssl.data.devices.clock import parse_utc_offset
from wearssl.data.devices.recording import DeviceHeader

GENEACTIV = "GENEActiv"
"""The device name ``actipy`` gives a GENEActiv file."""
GENEACTIV_SAMPLES_PER_PAGE = 300
HEADER_BYTES = 64 * 1024
"""The text header lies within the file's first bytes."""
_GENEACTIV_PAGES = re.compile(rb"Number of Pages:\s*(\d+)")
_GENEACTIV_ZONE = re.compile(rb"Time Zone:\s*(?:GMT|UTC)?\s*([+-]?\d{1,2}:\d{2}(?::\d{2})?)")


def _header_text(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEADER_BYTES)


def geneactiv_header(path: str) -> DeviceHeader:
    """The UTC offset the header's ``Time Zone`` states (none where it states none)."""
    match = _GENEACTIV_ZONE.search(_header_text(path))
    return DeviceHeader(parse_utc_offset(match.group(1).decode()) if match else None)


def geneactiv_lost_seconds(
    path: str, n_samples: int, rate: float, read_errors: int
) -> float | None:
    """Seconds of the pages the header counts that the reader did not return (None when
    the header gives no page count and the reader reported errors)."""
    match = _GENEACTIV_PAGES.search(_header_text(path))
    if match is None:
        return None if read_errors else 0.0
    expected = int(match.group(1)) * GENEACTIV_SAMPLES_PER_PAGE
    return max(0, expected - n_samples) / rate
