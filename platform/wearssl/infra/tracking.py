"""MLflow conventions shared by every job.

- Store: ``MLFLOW_TRACKING_URI`` when set (a tracking server), else the embedded default,
  a SQLite file and an artifact folder under ``./mlruns``; ``mlflow ui`` on it shows every run.
- One experiment per job kind (``wearssl-pretrain``, ``wearssl-evaluate``, ...), with a
  description, and the tag that opens it in MLflow's model-training view.
- Tags on every run: git commit, plus what the job adds (corpus manifest hash, cluster size).
- Logging never kills the work: calls that fail (server unreachable) are kept and
  reported at the end (:class:`ResilientLogger`), and re-sent values that the store
  already holds are dropped, so each (metric, step) is logged once.
- A tracking server is checked once before a job starts (:func:`require_reachable`): a dead
  one stops the job in seconds. Every HTTP call is bounded (:data:`HTTP_LIMITS`, unless
  the environment sets them): MLflow's own defaults retry one call for about four minutes.
- A job's run always ends FINISHED, FAILED or KILLED (:func:`run_outcome`).
"""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from wearssl.config import ConfigError
from wearssl.errors import TrackingUnavailableError as TrackingUnavailableError
from wearssl.infra.git import git_commit as git_commit  # provenance tag of every run

log = logging.getLogger(__name__)

DEFAULT_STORE_DIR = "mlruns"
EXPERIMENT_PREFIX = "wearssl-"
MAX_PARAM_LENGTH = 500
MAX_TAG_LENGTH = 5000
# The user-info part (``user:password@``) of a URI's authority.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
# Bounds on MLflow's HTTP calls (its defaults: 7 retries with backoff factor 2 and a 120-s
# timeout, about 4 minutes for one call to a dead server). Environment values win.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
REACHABLE_TIMEOUT_S = 5.0
# Set by the ``wearssl`` front door to the job it runs: the source every run of it names.
JOB_ENV = "WEARSSL_JOB"
# The experiment tag MLflow's UI reads to choose an experiment's view; without it, an
# experiment with no traces may open in the GenAI view (traces, evaluations, prompts).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"  # shown as "Machine learning"
DESCRIPTION_TAG = MLFLOW_RUN_NOTE  # a run's or experiment's description in the UI
STARTED_AT_TAG = "started_at"  # when a job's run began and ended (ISO 8601, UTC)
FINISHED_AT_TAG = "finished_at"
EXPERIMENT_DESCRIPTIONS = {
    "pretrain": "Self-supervised pre-training of harnet on unlabelled wrist accelerometry "
    "(multi-task: arrow of time, permutation, time warp). One run per pre-training; its "
    "model is registered as <network>-<stage>-<config>.",
    "evaluate": "Downstream evaluation of pre-trained and baseline networks on labelled "
    "activity sets: one parent run per evaluation, one child run per arm and fold.",
    "ablate": "Ablation sweeps: one parent run per sweep, one child run per point "
    "(pre-training and its evaluation).",
    "explain": "Relevance maps of a model's heads and their faithfulness by masking: "
    "figures, curves and a summary per run.",
}


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
    for every job, a URI holding credentials is refused (:func:`refuse_credentials`) and
    a server that does not answer stops it now (:func:`require_reachable`). HTTP calls
    get the bounds of :data:`HTTP_LIMITS` where the environment sets none."""
    uri = refuse_credentials(tracking_uri(explicit_uri))
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    require_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def require_reachable(uri: str, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """Raise :class:`TrackingUnavailableError` unless the server at an ``http(s)`` ``uri``
    answers its health check within ``timeout_s`` (one try); local stores always pass."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server behind a proxy or auth may not expose /health
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} does not answer ({reason}); start it, or unset "
            "MLFLOW_TRACKING_URI to use the local store"
        ) from None


@contextmanager
def run_outcome(run_id: str, uri: str) -> Iterator[None]:
    """End run ``run_id`` as FINISHED when the block completes, KILLED when it is
    interrupted (Ctrl-C, SIGTERM: see :func:`wearssl.cli.run_job`), FAILED on any error;
    the error itself goes on. A store that is down is reported, never raised over it."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        try:
            MlflowClient(tracking_uri=uri).set_terminated(run_id, status)
        except Exception as err:  # noqa: BLE001 - the job's own outcome matters more
            log.warning("could not mark MLflow run %s %s at %s: %s", run_id, status, uri, err)


def utc_timestamp(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (default: now) as the ``started_at``/``finished_at`` tags
    hold it: ISO 8601, UTC, whole seconds."""
    moment = (
        datetime.now(timezone.utc)
        if seconds is None
        else datetime.fromtimestamp(seconds, timezone.utc)
    )
    return moment.isoformat(timespec="seconds")


def current_job() -> str:
    """The job the ``wearssl`` front door is running (:data:`JOB_ENV`), else ``"job"``."""
    return os.environ.get(JOB_ENV) or "job"


def experiment_description(job_kind: str) -> str:
    """What the experiment of ``job_kind`` holds, shown on its page in the MLflow UI."""
    return EXPERIMENT_DESCRIPTIONS.get(job_kind, f"Runs of the wearssl {job_kind} job.")


def experiment_tags(job_kind: str) -> dict[str, str]:
    """The tags of the experiment of ``job_kind``: its view in the UI and its description."""
    return {
        EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND,
        DESCRIPTION_TAG: experiment_description(job_kind),
    }


def experiment_id(job_kind: str, uri: str | None = None) -> str:
    """Id of the job kind's experiment, created on first use (artifacts next to a local
    store) with :func:`experiment_tags`; an existing one lacking them gets them."""
    name = EXPERIMENT_PREFIX + job_kind
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        _add_missing_tags(client, found.experiment_id, found.tags, experiment_tags(job_kind))
        return found.experiment_id
    artifact_location = None
    if uri and uri.startswith("sqlite:///"):
        artifact_location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags=experiment_tags(job_kind)
        )
    except mlflow.exceptions.MlflowException:
        # another process created it between our lookup and create
        return client.get_experiment_by_name(name).experiment_id


def _add_missing_tags(
    client: MlflowClient, experiment: str, held: dict[str, str], wanted: dict[str, str]
) -> None:
    """Set the ``wanted`` tags the experiment does not hold; a description or view a
    person chose in the UI stays."""
    for key, value in wanted.items():
        if key not in held:
            client.set_experiment_tag(experiment, key, value)


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
    # values kept from a failed call may have reached the store before the call failed
    may_be_logged: bool = False

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
        """Log the pending values; those the store holds already (a retry after a call
        that failed late, a rerun that replayed them) are dropped, never logged twice."""
        if not self.pending:
            return
        try:
            if self.may_be_logged:
                self.pending = self._not_logged(self.pending)
            now = int(time.time() * 1000)
            batch = [Metric(key, value, now, step) for key, value, step in self.pending]
            if batch:
                self._client().log_batch(self.run_id, metrics=batch, synchronous=True)
        except Exception as err:  # noqa: BLE001 - the store is down; keep the values
            log.warning(
                "MLflow unreachable, %d metric values kept for later: %s", len(self.pending), err
            )
            self.may_be_logged = True
            return
        self.pending.clear()
        self.may_be_logged = False

    def _not_logged(self, values: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
        client = self._client()
        held = {
            key: {m.step for m in client.get_metric_history(self.run_id, key)}
            for key in {key for key, _, _ in values}
        }
        return [(key, value, step) for key, value, step in values if step not in held[key]]

    def unlogged_report(self) -> str:
        if not self.pending:
            return ""
        keys = sorted({key for key, _, _ in self.pending})
        steps = sorted({step for _, _, step in self.pending})
        return (
            f"{len(self.pending)} metric values could not be logged to {self.uri} "
            f"(keys {keys}, steps {steps})"
        )
