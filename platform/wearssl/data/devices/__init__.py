"""Read one raw recording, whatever its format, into a common in-memory form.

Formats (chosen by the file name's extension, case-insensitive; ``files``):

- Axivity ``.cwa`` / ``.cwa.gz`` (``axivity``), ActiGraph ``.gt3x`` (``actigraph``),
  GENEActiv ``.bin`` (``geneactiv``) and Matrix ``.bin`` (told apart by content): read
  with ``actipy`` with every processing step off (``device_files``), so the values are
  exactly what the device stored, in g.
- Empatica E4 ``ACC.csv`` / ``ACC.csv.gz``, told apart by its file name (``empatica``).
- CSV / CSV.gz with columns ``time,x,y,z`` (names or positions configurable), in g or
  m/s² (``csv_file``).
- NumPy ``.npy`` / ``.npz`` (``arrays``).

Every reader returns a ``Recording`` (``recording``: with the bad-sample and loss rules
they share) whose times are on the wearer's wall clock (``clock``: the rules for times).
"""

from wearssl.data.devices.clock import (
    CLOCK_AS_GIVEN,
    CLOCK_DEVICE_LOCAL,
    CLOCK_DEVICE_OFFSET,
    CLOCK_FROM_UTC,
    NS_PER_SECOND,
    times_to_wall_clock_ns,
    wall_clock_times,
)
from wearssl.data.devices.csv_file import read_csv_recording
from wearssl.data.devices.files import (
    estimated_samples,
    local_copy,
    read_recording,
    recording_format,
    recording_stem,
)
from wearssl.data.devices.options import CSV_COLUMNS_HELP, UNITS, CsvColumns, ReadOptions
from wearssl.data.devices.recording import (
    DROPPED_MALFORMED,
    DROPPED_MISSING,
    DROPPED_NOT_INCREASING,
    STANDARD_GRAVITY,
    Recording,
    RecordingError,
    infer_sample_rate,
)

__all__ = [
    "CLOCK_AS_GIVEN",
    "CLOCK_DEVICE_LOCAL",
    "CLOCK_DEVICE_OFFSET",
    "CLOCK_FROM_UTC",
    "CSV_COLUMNS_HELP",
    "DROPPED_MALFORMED",
    "DROPPED_MISSING",
    "DROPPED_NOT_INCREASING",
    "NS_PER_SECOND",
    "STANDARD_GRAVITY",
    "UNITS",
    "CsvColumns",
    "ReadOptions",
    "Recording",
    "RecordingError",
    "estimated_samples",
    "infer_sample_rate",
    "local_copy",
    "read_csv_recording",
    "read_recording",
    "recording_format",
    "recording_stem",
    "times_to_wall_clock_ns",
    "wall_clock_times",
]
