"""MLflow runs as the jobs keep them: parameters and metrics in batches, the config as an
artifact, and a run that an interrupted job resumes."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.entities import Metric, Param
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from pydantic import BaseModel
from torch import nn

from wearssl.infra import tracking
from wearssl.infra.files import write_json
from wearssl.infra.git import UNKNOWN_COMMIT

log = logging.getLogger(__name__)

RUN_RECORD = "mlflow_run.json"
CONFIG_ARTIFACT = "config.yaml"
PARAM_BATCH = 100
METRIC_BATCH = 500


@dataclass(frozen=True)
class RegisteredVersion:
    """How a logged model is registered: the registered model's name, the description of
    it and of the new version, and the version's tags."""

    name: str
    description: str
    tags: dict[str, str] = field(default_factory=dict)


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number worth logging as a metric. A bool is a flag, not
    a measurement (``True`` would otherwise log as 1.0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def job_tags(cluster: dict[str, float], job: str | None = None) -> dict[str, str]:
    """The tags every run of a job carries: the code's commit (``git_commit``, and MLflow's
    own source tags, which its UI shows and links) and the cluster's size. ``job`` names
    the job (default: the one the ``wearssl`` front door runs, :func:`tracking.current_job`).
    """
    commit = tracking.git_commit()
    tags = {
        "git_commit": commit,
        "mlflow.source.name": f"wearssl {job or tracking.current_job()}",
        "mlflow.source.type": "JOB",
        "cluster_cpus": f"{cluster.get('CPU', 0):g}",
        "cluster_gpus": f"{cluster.get('GPU', 0):g}",
    }
    if commit != UNKNOWN_COMMIT:
        tags["mlflow.source.git.commit"] = commit
    return tags


SOURCE_TAGS = ("git_commit", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit")


def source_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Of a job's tags (:func:`job_tags`), those that say where a run came from: a job's
    trial runs carry them too, so the UI shows their source like their parent's."""
    return {key: tags[key] for key in SOURCE_TAGS if key in tags}


def log_params(client: mlflow.MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, v) for k, v in tracking.params_for_mlflow(params).items()]
    for start in range(0, len(items), PARAM_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAM_BATCH])


def log_metrics(client: mlflow.MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    for start in range(0, len(metrics), METRIC_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + METRIC_BATCH])


def log_config(client: mlflow.MlflowClient, run_id: str, config: BaseModel) -> None:
    """The job's resolved config as the run's ``config.yaml`` artifact."""
    with tempfile.TemporaryDirectory() as staging:
        path = Path(staging) / CONFIG_ARTIFACT
        path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run_id, str(path))


def model_signature(window_samples: int, outputs: int | Mapping[str, int]) -> ModelSignature:
    """What a logged network takes and gives: float32 batches of 3-axis windows of
    ``window_samples`` samples, and logits: ``outputs`` per window for a classifier, or one
    named tensor per entry of ``outputs`` (name: width) for a network that returns a dict,
    such as the pre-trained network's pretext-task heads."""
    logits = (
        [TensorSpec(np.dtype(np.float32), (-1, outputs))]
        if isinstance(outputs, int)
        else [TensorSpec(np.dtype(np.float32), (-1, n), name) for name, n in outputs.items()]
    )
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, window_samples))]),
        outputs=Schema(logits),
    )


def log_model(
    run_id: str,
    model: nn.Module,
    uri: str,
    window_samples: int,
    outputs: int | Mapping[str, int],
    registered: RegisteredVersion | None = None,
) -> str | None:
    """Log ``model`` to run ``run_id`` as an ``mlflow.pytorch`` model named ``model``, with
    its signature (:func:`model_signature`: windows in, logits as ``outputs`` says) and, for
    a classifier, a one-window input example; registered per ``registered`` (its description
    on the registered model and the version, its tags on the version) when given. The
    registered version, or None.

    A network with named outputs gets no input example: MLflow serves a PyTorch model of one
    output tensor only, and would warn at length that the example cannot be served."""
    mlflow.set_tracking_uri(uri)
    classifier = isinstance(outputs, int)
    example = np.zeros((1, 3, window_samples), dtype=np.float32) if classifier else None
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=registered.name if registered else None,
            signature=model_signature(window_samples, outputs),
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            # "pt2", the format MLflow recommends over pickle, traces the network with the
            # input example and fixes every dimension of size 1: with a one-window example
            # the logged model would accept batches of one window only.
            serialization_format="pickle",
        )
    if registered is None:
        return None
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.update_registered_model(registered.name, description=registered.description)
    client.update_model_version(registered.name, version, description=registered.description)
    for key, value in registered.tags.items():
        client.set_model_version_tag(registered.name, version, key, value)
    return version


def resume_run(
    client: mlflow.MlflowClient, previous: dict[str, Any] | None, uri: str
) -> str | None:
    """The run ``previous`` (an earlier execution's record: ``run_id``, ``tracking_uri``)
    names, set running again; None when there is none, it was kept on another tracking
    store, or it is gone (deleted, or purged): a warning says so and the caller starts anew."""
    if previous is None or previous.get("tracking_uri") != uri:
        return None
    run_id = previous["run_id"]
    try:
        gone = client.get_run(run_id).info.lifecycle_stage == "deleted"
    except mlflow.exceptions.MlflowException:
        gone = True
    if gone:
        log.warning("the recorded MLflow run %s is gone from %s; starting a new run", run_id, uri)
        return None
    client.update_run(run_id, status="RUNNING")
    return run_id


def recorded_run(client: mlflow.MlflowClient, record: Path, uri: str) -> str | None:
    """The run an earlier execution recorded in ``record`` (see :func:`resume_run`)."""
    previous = json.loads(record.read_text()) if record.is_file() else None
    return resume_run(client, previous, uri)


def record_run(record: Path, run_id: str, uri: str) -> None:
    """Remember ``run_id`` in ``record`` so that a resumed execution finds it."""
    write_json(record, {"run_id": run_id, "tracking_uri": uri})
