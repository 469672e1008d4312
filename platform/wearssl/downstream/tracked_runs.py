"""MLflow runs of a job's trials, opened when a trial starts and closed when it ends.

A trial's run is created RUNNING by the trial itself, with its description (the tag
``mlflow.note.content``) and ``started_at``, under its parent run; the trial logs its
results, sets ``finished_at`` and ends the run FINISHED or FAILED
(:func:`wearssl.infra.tracking.run_outcome`), so the run's times are the trial's. A
record file per trial names its run, so a resumed trial continues that run instead of
creating another. Timestamps are tags (ISO-8601 UTC), never metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from wearssl.infra.mlflow_runs import log_params, record_run, recorded_run
from wearssl.infra.tracking import DESCRIPTION_TAG, STARTED_AT_TAG, utc_timestamp

PARENT_RECORD = "mlflow_run.json"  # a group's parent run, next to its trials' records


def open_run(
    client: mlflow.MlflowClient,
    record: Path,
    uri: str,
    create: dict[str, Any],
    params: Mapping[str, Any],
) -> str:
    """The run ``record`` names (set RUNNING again: a resumed trial or job), else a new
    RUNNING run made by ``client.create_run(**create)`` with ``params``, its id written to
    ``record``. ``create`` must hold the run's tags, its description among them."""
    previous = recorded_run(client, record, uri)
    if previous is not None:
        return previous
    run_id = client.create_run(**create).info.run_id
    log_params(client, run_id, dict(params))
    record_run(record, run_id, uri)
    return run_id


def start_tags(description: str, started: float) -> dict[str, str]:
    """The tags a run starts with: its description and ``started_at``."""
    return {DESCRIPTION_TAG: description, STARTED_AT_TAG: utc_timestamp(started)}


@dataclass(frozen=True)
class TrialRuns:
    """Where a job's trials keep their runs: the store, the experiment, the parent run of
    each group of trials (a dataset of the evaluation), the folder of the records that
    name each trial's run, the config's name (for descriptions) and the job's source tags
    (:func:`wearssl.infra.mlflow_runs.source_tags`), which every trial run carries."""

    uri: str
    experiment_id: str
    parents: Mapping[str, str]
    records: str
    config_name: str
    source: Mapping[str, str]

    def start(
        self,
        group: str,
        name: str,
        description: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        started: float,
    ) -> str:
        """The RUNNING run of trial ``name`` under group ``group``'s parent: the one an
        earlier execution of the trial opened, else a new one starting at ``started`` (the
        trial's start, in seconds since the epoch)."""
        client = mlflow.MlflowClient(tracking_uri=self.uri)
        create = {
            "experiment_id": self.experiment_id,
            "run_name": name,
            "start_time": int(started * 1000),
            "tags": {
                MLFLOW_PARENT_RUN_ID: self.parents[group],
                **self.source,
                **start_tags(description, started),
                **tags,
            },
        }
        record = Path(self.records) / group / f"{name.replace('/', '-')}.json"
        return open_run(client, record, self.uri, create, params)
