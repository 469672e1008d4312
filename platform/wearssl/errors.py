"""The faults a job names in one line and exit status 2 (see :data:`wearssl.cli.USER_ERRORS`).

They live here, away from the modules that raise them, so that the command line can map
them to exit codes without importing Ray, torch or MLflow before it has parsed its
arguments.
"""

from __future__ import annotations


class ResourcePlanError(ValueError):
    """A configuration that cannot run on the cluster it sees."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model asked for."""


class CorpusError(ValueError):
    """A corpus that cannot be read as one: unreadable files, corrupt values, a version
    this wearssl does not read. The message names the file (and subject where known)."""


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server does not answer when a job starts."""


class PretrainingFault(RuntimeError):
    """Training stopped on a fault that a retry would meet again (non-finite loss, an epoch
    without an optimiser step, an unreadable or corrupt corpus file)."""
