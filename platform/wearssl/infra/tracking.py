"""MLflow conventions shared by every job.

- Store: ``MLFLOW_TRACKING_URI`` when set (a tracking server), else the embedded default,
  a SQLite file and an artifact folder under ``./mlruns``; ``mlflow ui`` on it shows every run.
- One experiment per job kind (``wearssl-pretrain``, ``wearssl-evaluate``, ...).
- Tags on every run: git commit, plus what the job adds (corpus manifest hash, cluster size).
- Logging never kills the work: calls that fail (server unreachable) are kept and
  reported at the end (:class:`ResilientLogger`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from wearssl.config import ConfigError
from wearssl.infra.git import git_commit as git_commit  # provenance tag of every run

log = logging.getLogger(__name__)

DEFAULT_STORE_DIR = "mlruns"
EXPERIMENT_PREFIX = "wearssl-"
MAX_PARAM_LENGTH = 500
# The user-info part (``user:password@``) of a URI's authority.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def default_store(base: str | Path = ".") -> tuple[str, str]:
    """(tracking URI, artifact root) of the embedded local store under ``base``."""
    store = Path(base).resolve() / DEFAULT_STORE_DIR
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI in force: explicit > ``MLFLOW_TRACKING_URI`` > embedded default."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_store()[0]


def refuse_credentials(uri: str) -> str:
    """``uri``, unless it holds credentials (``user:password@`` before its host), which would
    show in logs, run records and the configs handed to Ray workers: a :class:`ConfigError`
    then says to set them in every node's environment instead."""
    if _USERINFO.match(uri):
        shown = _USERINFO.sub(r"\1***@", uri)
        raise ConfigError(
            f"the MLflow tracking URI {shown} holds credentials; "
            "give them in the environment of the driver and every Ray node instead "
            "(MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)"
        )
    return uri


def configure(explicit_uri: str | None = None) -> str:
    """Point MLflow at the job's tracking URI (see :func:`tracking_uri`) and return it;
    a URI holding credentials is refused (:func:`refuse_credentials`), for every job."""
    uri = refuse_credentials(tracking_uri(explicit_uri))
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_id(job_kind: str, uri: str | None = None) -> str:
    """Id of the job kind's experiment, created on first use (artifacts next to a local store)."""
    name = EXPERIMENT_PREFIX + job_kind
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifact_location = None
    if uri and uri.startswith("sqlite:///"):
        artifact_location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # another process created it between our lookup and create
        return client.get_experiment_by_name(name).experiment_id


def params_for_mlflow(flat: dict[str, Any]) -> dict[str, str]:
    """Flattened config values as MLflow param strings (MLflow limits their length)."""
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in flat.items()}


@dataclass
class ResilientLogger:
    """Logs metrics to one run and keeps, rather than raises, what the store refused.

    Training must survive a tracking server that goes away; what could not be logged is
    retried by :meth:`flush` and whatever still fails is reported at the end of the run.
    """

    run_id: str
    uri: str
    pending: list[tuple[str, float, int]] = field(default_factory=list)

    def _client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri)

    def logged_steps(self, key: str) -> set[int]:
        try:
            return {m.step for m in self._client().get_metric_history(self.run_id, key)}
        except Exception as err:  # noqa: BLE001 - any store failure means "unknown"
            log.warning("could not read metric history of %s: %s", key, err)
            return set()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.pending.extend((key, float(value), step) for key, value in metrics.items())
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        now = int(time.time() * 1000)
        batch = [Metric(key, value, now, step) for key, value, step in self.pending]
        try:
            self._client().log_batch(self.run_id, metrics=batch, synchronous=True)
        except Exception as err:  # noqa: BLE001 - the store is down; keep the values
            log.warning("MLflow unreachable, %d metric values kept for later: %s", len(batch), err)
            return
        self.pending.clear()

    def unlogged_report(self) -> str:
        if not self.pending:
            return ""
        keys = sorted({key for key, _, _ in self.pending})
        steps = sorted({step for _, _, step in self.pending})
        return (
            f"{len(self.pending)} metric values could not be logged to {self.uri} "
            f"(keys {keys}, steps {steps})"
        )
