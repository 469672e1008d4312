"""The MLflow run of a pre-training: resume-or-create, what it records, and its end.

The run folder keeps a record (``mlflow_run.json``) of the run's id, tracking store, config
and corpus, so a rerun of the same ``name`` continues the same MLflow run (through
:func:`wearssl.infra.mlflow_runs.resume_run`, shared with the other jobs) and is refused if
its config changed, unless ``resume_with_changes`` is set; raising ``optim.epochs`` extends
a run. The run carries the corpus as a dataset input (digest: the manifest hash),
``started_at`` / ``finished_at`` tags, a description, and at its end the config, the
learning curves, the checkpoint and the model.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID
from ray.train import Checkpoint

from wearssl.config import ConfigError, flatten
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.infra import mlflow_runs, tracking
from wearssl.models.export import PRETRAINED_FILE as MODEL_FILE
from wearssl.models.harnet import TASK_HEADS, harnet
from wearssl.pretrain.curves import log_curves
from wearssl.pretrain.spec import run_dir

RUN_RECORD = mlflow_runs.RUN_RECORD
# Keys a rerun may change without changing what is trained: where and how it runs, where
# it logs, and the flag that allows the other changes.
RERUN_FREE_KEYS = ("runtime.", "tracking.", "sampling.read_cpus", "resume_with_changes")
RESUME_CHANGES_TAG = "resumed_with_changes"
MANIFEST_HASH_TAG = "corpus_manifest_hash"
CORPUS_DATASET = "corpus"
TRAINING_CONTEXT = "training"


def description(cfg: PretrainConfig, root: str, n_subjects: int) -> str:
    """The run's description (tag ``mlflow.note.content``)."""
    return (
        f"Self-supervised pre-training (jobs/pretrain.py) with config '{cfg.name}' on corpus "
        f"{root} ({n_subjects} training subjects), {cfg.optim.epochs} epochs."
    )


def _record_path(cfg: PretrainConfig) -> tuple[Any, str]:
    fs, folder = corpus.resolve(run_dir(cfg))
    return fs, corpus.join(folder, RUN_RECORD)


def read_run_record(cfg: PretrainConfig) -> dict | None:
    """What an earlier attempt of this run recorded (MLflow run, config, corpus), if any."""
    fs, record = _record_path(cfg)
    if not corpus.exists(fs, record):
        return None
    with fs.open_input_stream(record) as f:
        return json.loads(f.read())


def config_changes(cfg: PretrainConfig, record: dict, manifest_digest: str) -> list[str]:
    """``key: old -> new`` for each key (and the corpus content) that differs from the
    recorded run's; keys of :data:`RERUN_FREE_KEYS` and a raised ``optim.epochs`` are free.
    A record from before configs were recorded has nothing to compare."""
    if "config" not in record:
        return []
    old, new = record["config"], tracking.params_for_mlflow(flatten(cfg))
    changes = []
    for key in sorted(set(old) | set(new)):
        if key.startswith(RERUN_FREE_KEYS) or old.get(key) == new.get(key):
            continue
        if key == "optim.epochs" and int(new[key]) >= int(old.get(key, 0)):
            continue
        changes.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    if record.get("corpus_manifest_hash", manifest_digest) != manifest_digest:
        changes.append(
            f"corpus content (manifest hash): {record['corpus_manifest_hash']} -> {manifest_digest}"
        )
    return changes


def require_same_config(
    cfg: PretrainConfig, record: dict | None, manifest_digest: str
) -> list[str]:
    """The config changes of a rerun (see :func:`config_changes`); a ConfigError listing them
    unless ``resume_with_changes`` allows them."""
    changes = config_changes(cfg, record, manifest_digest) if record else []
    if changes and not cfg.resume_with_changes:
        raise ConfigError(
            f"run '{cfg.name}' in {run_dir(cfg)} was started with another config "
            f"({'; '.join(changes)}); give another name to start a new run, or set "
            "resume_with_changes=true to continue it with this config (recorded in its run)"
        )
    return changes


def _note_changes(client: mlflow.MlflowClient, run_id: str, changes: list[str]) -> None:
    """Add the config ``changes`` a resume allowed to the run's :data:`RESUME_CHANGES_TAG`."""
    earlier = client.get_run(run_id).data.tags.get(RESUME_CHANGES_TAG)
    noted = "\n".join(filter(None, [earlier, "; ".join(changes)]))
    client.set_tag(run_id, RESUME_CHANGES_TAG, noted[-tracking.MAX_TAG_LENGTH :])


def mlflow_run_for(
    cfg: PretrainConfig,
    uri: str,
    tags: dict[str, str],
    record: dict | None,
    changes: list[str],
) -> str:
    """The MLflow run of this pre-training: the one a previous attempt recorded (if it still
    exists), or a new one tagged ``tags`` and ``started_at``. Config ``changes`` allowed on
    a resume are added to its tag :data:`RESUME_CHANGES_TAG`. The record is rewritten with
    this attempt's config."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = mlflow_runs.resume_run(client, record, uri)
    if run_id is not None and changes:
        _note_changes(client, run_id, changes)
    if run_id is None:
        tags = {**tags, tracking.STARTED_AT_TAG: tracking.utc_timestamp()}
        if cfg.tracking.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = cfg.tracking.parent_run_id
        experiment = tracking.experiment_id(cfg.tracking.experiment, uri)
        run_id = client.create_run(experiment, run_name=cfg.name, tags=tags).info.run_id
        mlflow_runs.log_params(client, run_id, flatten(cfg))
    fs, path = _record_path(cfg)
    params = tracking.params_for_mlflow(flatten(cfg))
    corpus.atomic_write_bytes(
        fs,
        path,
        json.dumps(
            {
                "run_id": run_id,
                "tracking_uri": uri,
                "config": params,
                "corpus_manifest_hash": tags[MANIFEST_HASH_TAG],
            }
        ).encode(),
    )
    return run_id


def corpus_dataset(root: str, manifest_digest: str) -> MetaDataset:
    """The corpus as an MLflow dataset: its root as the source, its manifest hash as digest."""
    with warnings.catch_warnings():
        # a local path matches MLflow's local-artifact source, registered twice by MLflow
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        source = resolve_dataset_source(root)
    return MetaDataset(source, name=CORPUS_DATASET, digest=manifest_digest)


def log_corpus_input(client: mlflow.MlflowClient, run_id: str, root: str, digest: str) -> None:
    """Log the corpus as the run's training dataset input, unless the run holds it already
    (a resumed run); what ``mlflow.log_input(dataset, context="training")`` logs, without
    making the run the process's active run (ending that would mark the run finished)."""
    held = client.get_run(run_id).inputs.dataset_inputs
    if any(item.dataset.digest == digest for item in held):
        return
    dataset = mlflow.entities.Dataset(**corpus_dataset(root, digest).to_dict())
    context = InputTag(key=MLFLOW_DATASET_CONTEXT, value=TRAINING_CONTEXT)
    client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset, tags=[context])])


def describe_run(client: mlflow.MlflowClient, run_id: str, note: str) -> None:
    client.set_tag(run_id, tracking.DESCRIPTION_TAG, note)


def log_pretrained_model(cfg: PretrainConfig, run_id: str, uri: str, weights: str) -> str | None:
    """Log the network in ``weights`` to the run, with its pretext heads' logits as the
    signature's outputs, registered under ``tracking.registered_model`` when one is named;
    the registered version or None."""
    model = harnet(cfg.window_seconds, pretrained=weights).eval()
    heads = {task: getattr(model, head).linear1.out_features for task, head in TASK_HEADS.items()}
    name = cfg.tracking.registered_model
    registered = (
        mlflow_runs.RegisteredVersion(
            name,
            f"harnet feature extractor for {cfg.window_seconds}-s windows at "
            f"{corpus.SAMPLE_RATE_HZ} Hz, pre-trained self-supervised (arrow of time, "
            f"permutation, time warp) by config '{cfg.name}' on corpus {cfg.corpus}. "
            "Evaluate or fine-tune it by naming it as an evaluation's `pretrained`.",
        )
        if name
        else None
    )
    samples = corpus.window_samples(cfg.window_seconds)
    return mlflow_runs.log_model(run_id, model, uri, samples, heads, registered)


def finish_run(
    cfg: PretrainConfig, run_id: str, uri: str, checkpoint: Checkpoint | None
) -> tuple[str, str | None]:
    """Log the config, the learning curves, the final checkpoint and the model; register it;
    tag ``finished_at``. Returns (checkpoint path, registered version)."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    mlflow_runs.log_config(client, run_id, cfg)
    log_curves(client, run_id)
    path, version = "", None
    if checkpoint is not None:
        path = checkpoint.path
        local = f"{checkpoint.to_directory()}/{MODEL_FILE}"
        client.log_artifact(run_id, local, artifact_path="checkpoint")
        if cfg.tracking.log_model:
            version = log_pretrained_model(cfg, run_id, uri, local)
    client.set_tag(run_id, tracking.FINISHED_AT_TAG, tracking.utc_timestamp())
    return path, version
