"""The exported prediction model: one checkpoint file that says what it predicts, how its
input was made and how its predictions are smoothed.

It is one of our checkpoints (:func:`wearssl.models.harnet.save_checkpoint`) of a harnet
classifier with

* ``labels``: the class names, one per output of the head;
* ``preprocessing``: the rate (Hz), units and window length (s, samples) of its input;
* ``hmm`` (optional): the smoothing HMM's parameters (:mod:`wearssl.models.hmm`);
* anything else the exporter records (dataset, arm, trial, scores).

:func:`save_prediction_model` writes it in one go; :func:`load_prediction_model` resolves
a file, ``models:/`` or ``runs:/`` spec, refuses a checkpoint that breaks the contract
(:func:`check_prediction_checkpoint`) and returns it with its HMM; :func:`load_classifier`
builds the network of any of our checkpoints with all its heads.

File names, one per kind of artefact: :data:`PRETRAINED_FILE` is a pre-trained model in a
training checkpoint and in MLflow (``checkpoint/harnet.pt``); :data:`CLASSIFIER_FILE` is a
downstream trial's classifier in its Tune checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from torch import nn

from wearssl.data.corpus import SAMPLE_RATE_HZ, window_samples
from wearssl.infra import tracking
from wearssl.models.harnet import (
    CheckpointError,
    HarNet,
    harnet,
    load_checkpoint,
    save_checkpoint,
)
from wearssl.models.hmm import HMM_KEY, HmmParams, checkpoint_hmm
from wearssl.models.resolve import (
    CHECKPOINT_ARTIFACT,
    MODELS_SCHEME,
    RUNS_SCHEME,
    parse_model_ref,
    resolve_weights,
)

PRETRAINED_FILE = PurePosixPath(CHECKPOINT_ARTIFACT).name
CLASSIFIER_FILE = "model.pt"
PREPROCESSING_KEY = "preprocessing"
UNITS = "g"


def preprocessing(window_seconds: int) -> dict[str, Any]:
    """The ``preprocessing`` entry of a model taking ``window_seconds``-s windows."""
    return {
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "units": UNITS,
        "window_seconds": window_seconds,
        "window_samples": window_samples(window_seconds),
    }


def save_prediction_model(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    window_seconds: int,
    labels: list[str],
    hmm: HmmParams | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` as an exported prediction model (see the module docstring).

    The HMM's states must be the model's classes.
    """
    if hmm is not None and hmm.n_classes != len(labels):
        raise CheckpointError(
            f"{path}: the model has {len(labels)} classes, the HMM {hmm.n_classes} states"
        )
    extra = {**(metadata or {}), PREPROCESSING_KEY: preprocessing(window_seconds)}
    if hmm is not None:
        extra[HMM_KEY] = hmm.to_plain()
    save_checkpoint(path, model, window_seconds=window_seconds, labels=labels, extra=extra)


def check_prediction_checkpoint(path: str | Path, content: dict[str, Any]) -> None:
    """Refuse a checkpoint that does not say what it predicts or how its input was made.

    It needs class labels matching its head, and a ``preprocessing`` entry whose window
    length and rate are those of the model, in g.
    """
    labels = content.get("labels")
    n_classes = content.get("n_classes")
    if not labels:
        raise CheckpointError(
            f"{path}: has no class labels ('labels'); prediction needs a classifier exported "
            f"with its label names (save_prediction_model(..., labels=[...]))"
        )
    if n_classes is None or len(labels) != n_classes:
        raise CheckpointError(
            f"{path}: {len(labels)} labels for a model with n_classes={n_classes!r}"
        )
    if len(set(labels)) != len(labels):
        raise CheckpointError(f"{path}: label names repeat: {labels}")
    entry = content.get(PREPROCESSING_KEY)
    if not isinstance(entry, dict):
        raise CheckpointError(
            f"{path}: has no {PREPROCESSING_KEY!r} entry (sample_rate_hz, units, "
            f"window_seconds); prediction cannot know how the model's input was made"
        )
    missing = [k for k in ("sample_rate_hz", "units", "window_seconds") if k not in entry]
    if missing:
        raise CheckpointError(f"{path}: {PREPROCESSING_KEY!r} lacks {missing}")
    window_seconds = content["window_seconds"]
    if entry["window_seconds"] != window_seconds:
        raise CheckpointError(
            f"{path}: window length mismatch: the model is a {window_seconds}-s harnet, its "
            f"preprocessing says {entry['window_seconds']!r}-s windows"
        )
    if entry["sample_rate_hz"] != SAMPLE_RATE_HZ or entry["units"] != UNITS:
        raise CheckpointError(
            f"{path}: preprocessing {entry['sample_rate_hz']!r} Hz in "
            f"{entry['units']!r}; harnet takes {SAMPLE_RATE_HZ} Hz in {UNITS!r}"
        )
    expected = window_samples(window_seconds)
    samples = entry.get("window_samples", expected)
    if samples != expected:
        raise CheckpointError(
            f"{path}: preprocessing says {samples!r} samples a window; a {window_seconds}-s "
            f"harnet takes {expected}"
        )


@dataclass(frozen=True)
class PredictionModel:
    """A validated classifier checkpoint and what the outputs say about it."""

    content: dict[str, Any]  # the checkpoint as loaded (state dict and metadata)
    labels: list[str]
    window_seconds: int
    hmm: HmmParams | None
    identity: dict[str, Any]  # spec, file, sha256, run id, registered name/version, ...

    @property
    def n_classes(self) -> int:
        return len(self.labels)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _registered_version(spec: str, uri: str) -> tuple[str, str]:
    """(name, version number) of the registered model version ``spec`` names; an alias or
    ``latest`` is looked up (:func:`wearssl.models.resolve.resolve_weights` gives only the run)."""
    import mlflow

    ref = parse_model_ref(spec)
    if ref.version is not None and ref.version != "latest":
        return ref.name, ref.version
    client = mlflow.MlflowClient(tracking_uri=uri)
    if ref.alias is not None:
        return ref.name, str(client.get_model_version_by_alias(ref.name, ref.alias).version)
    versions = client.search_model_versions(f"name = '{ref.name}'")
    return ref.name, str(max(int(v.version) for v in versions))


def load_prediction_model(spec: str, tracking_uri: str | None = None) -> PredictionModel:
    """Resolve ``spec`` (a file, ``models:/...`` or ``runs:/...``, see
    :mod:`wearssl.models.resolve`) and load it as a prediction model (refusals: see
    :func:`check_prediction_checkpoint`)."""
    from_mlflow = spec.strip().startswith((MODELS_SCHEME, RUNS_SCHEME))
    uri = tracking.tracking_uri(tracking_uri) if from_mlflow else None
    with tempfile.TemporaryDirectory(prefix="wearssl-model-") as download:
        resolved = resolve_weights(spec, download, uri)
        content = load_checkpoint(resolved.path)
        check_prediction_checkpoint(resolved.path, content)
        hmm = checkpoint_hmm(content, str(resolved.path))
        identity: dict[str, Any] = {
            "spec": spec,
            "file": resolved.path.name,
            "sha256": _sha256(resolved.path),
            "run_id": resolved.run_id,
            "name": resolved.path.stem,
            "version": None,
            "dataset": content.get("dataset"),
            "arm": content.get("arm"),
        }
    if spec.strip().startswith(MODELS_SCHEME) and uri:
        identity["name"], identity["version"] = _registered_version(spec.strip(), uri)
    return PredictionModel(
        content, list(content["labels"]), int(content["window_seconds"]), hmm, identity
    )


def load_classifier(path: str | os.PathLike) -> tuple[HarNet, dict[str, Any]]:
    """The network of one of our checkpoints with every head it has, and the checkpoint."""
    content = load_checkpoint(path)
    model = harnet(content["window_seconds"], content["n_classes"], pretrained=path)
    return model, content
