"""Resolving a pre-trained weights spec to a local checkpoint file.

A spec is one of:

* ``models:/NAME/VERSION``, ``models:/NAME/latest`` or ``models:/NAME@ALIAS``: an MLflow
  registered model version; its run's checkpoint artifact is used;
* ``runs:/RUN_ID`` (the run's ``checkpoint/harnet.pt``) or ``runs:/RUN_ID/ARTIFACT_PATH``;
* a local file: one of our checkpoints or a published harnet state-dict file
  (``.mdl``/``.pt``); :func:`wearssl.models.harnet.harnet` tells the two apart when loading.

Jobs that log a model (pre-training, evaluation's export) log our checkpoint as the run
artifact ``checkpoint/harnet.pt`` next to the ``mlflow.pytorch`` model, so one rule covers
runs and registered versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from wearssl.models.harnet import CheckpointError

CHECKPOINT_ARTIFACT = "checkpoint/harnet.pt"
MODELS_SCHEME = "models:/"
RUNS_SCHEME = "runs:/"
_MODEL_ALIAS = re.compile(r"^(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_MODEL_VERSION = re.compile(r"^(?P<name>[^/@]+)/(?P<version>\d+|latest)$")


class WeightsError(CheckpointError):
    """A weights spec that cannot be resolved; the message names the spec."""


@dataclass(frozen=True)
class ResolvedWeights:
    spec: str
    path: Path
    run_id: str | None = None  # the MLflow run the file came from, if any


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None  # a number or "latest"
    alias: str | None = None


def parse_model_ref(spec: str) -> ModelRef:
    """``models:/NAME/3``, ``models:/NAME/latest`` or ``models:/NAME@champion``."""
    body = spec.removeprefix(MODELS_SCHEME)
    if match := _MODEL_ALIAS.match(body):
        return ModelRef(match["name"], alias=match["alias"])
    if match := _MODEL_VERSION.match(body):
        return ModelRef(match["name"], version=match["version"])
    raise WeightsError(
        f"weights spec {spec!r}: expected models:/NAME/VERSION, models:/NAME/latest "
        f"or models:/NAME@ALIAS"
    )


def model_version_run_id(spec: str, client: mlflow.MlflowClient) -> str:
    """The run that logged the registered model version named by ``spec``."""
    ref = parse_model_ref(spec)
    try:
        if ref.alias is not None:
            version = client.get_model_version_by_alias(ref.name, ref.alias)
        elif ref.version == "latest":
            versions = client.search_model_versions(f"name = '{ref.name}'")
            if not versions:
                raise WeightsError(f"weights spec {spec!r}: model {ref.name!r} has no versions")
            version = max(versions, key=lambda v: int(v.version))
        else:
            version = client.get_model_version(ref.name, ref.version)
    except MlflowException as err:
        raise WeightsError(
            f"weights spec {spec!r}: not found in the MLflow registry at "
            f"{client.tracking_uri} ({err.message})"
        ) from None
    if not version.run_id:
        raise WeightsError(
            f"weights spec {spec!r}: version {version.version} of {ref.name!r} was not "
            f"logged from a run, so it has no {CHECKPOINT_ARTIFACT}"
        )
    return version.run_id


def parse_run_ref(spec: str) -> tuple[str, str]:
    """``runs:/RUN_ID[/ARTIFACT_PATH]`` -> (run id, artifact path)."""
    run_id, _, artifact = spec.removeprefix(RUNS_SCHEME).strip("/").partition("/")
    if not run_id:
        raise WeightsError(f"weights spec {spec!r}: expected runs:/RUN_ID[/ARTIFACT_PATH]")
    return run_id, artifact or CHECKPOINT_ARTIFACT


def download_run_artifact(
    spec: str, run_id: str, artifact: str, download_dir: Path, tracking_uri: str
) -> Path:
    target = download_dir / run_id
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=str(target), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as err:
        raise WeightsError(
            f"weights spec {spec!r}: cannot download artifact {artifact!r} of run {run_id} "
            f"from {tracking_uri} ({err})"
        ) from None
    path = Path(local)
    if not path.is_file():
        raise WeightsError(
            f"weights spec {spec!r}: artifact {artifact!r} of run {run_id} is a folder"
        )
    return path


def resolve_weights(
    spec: str, download_dir: str | Path, tracking_uri: str | None = None
) -> ResolvedWeights:
    """A local checkpoint file for ``spec``; MLflow artifacts are downloaded to ``download_dir``.

    ``tracking_uri`` is the MLflow store holding runs and registered models (default: the
    one in force, see :mod:`wearssl.infra.tracking`).
    """
    spec = spec.strip()
    uri = tracking_uri or mlflow.get_tracking_uri()
    download_dir = Path(download_dir)
    if spec.startswith(MODELS_SCHEME):
        run_id = model_version_run_id(spec, mlflow.MlflowClient(tracking_uri=uri))
        path = download_run_artifact(spec, run_id, CHECKPOINT_ARTIFACT, download_dir, uri)
        return ResolvedWeights(spec, path, run_id)
    if spec.startswith(RUNS_SCHEME):
        run_id, artifact = parse_run_ref(spec)
        return ResolvedWeights(
            spec, download_run_artifact(spec, run_id, artifact, download_dir, uri), run_id
        )
    if "://" in spec:
        raise WeightsError(
            f"weights spec {spec!r}: unsupported scheme; use models:/, runs:/ or a local file"
        )
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights spec {spec!r}: no such file {path.resolve()}")
    return ResolvedWeights(spec, path.resolve())
