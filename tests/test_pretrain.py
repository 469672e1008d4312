"""Pre-training: schedule, epoch plans, resource plan, and a real run on Ray Train + MLflow."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import pickle
import re
import uuid
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest
import ray
import torch
from mlflow import MlflowClient

from wearssl.config import ConfigError, load_config
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.infra import mlflow_runs, tracking
from wearssl.infra.ray_runtime import ResourcePlan, ResourcePlanError, plan_resources
from wearssl.models.harnet import TASK_HEADS, harnet, load_checkpoint
from wearssl.pretrain import mlflow_run
from wearssl.pretrain.curves import curves_figure
from wearssl.pretrain.progress import ProgressBoard, ProgressPrinter, WorkerProgress
from wearssl.pretrain.spec import PretrainWorkerSpec, scaled_peak_lr, worker_spec
from wearssl.pretrain.step import lr_at
from wearssl.pretrain.train import run_pretraining
from wearssl.pretrain.worker import batch_rows, stage_metric_name

CREDENTIALS = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
)


def test_warmup_reaches_peak_and_never_grows_beyond():
    lrs = [lr_at(step, 1e-3, 1e-2, warmup_steps=100) for step in range(0, 1000, 10)]
    assert lrs[0] == pytest.approx(1e-3)
    assert all(b >= a for a, b in zip(lrs, lrs[1:], strict=False))
    assert max(lrs) == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(1e-2)


def test_paper_batch_scales_lr_linearly():
    cfg = load_config(PretrainConfig, "configs/pretrain/paper.yaml")
    assert cfg.global_batch == 6000
    assert scaled_peak_lr(cfg) == pytest.approx(1e-3 * 6000 / 512)
    small = load_config(PretrainConfig, None, ["sampling.windows_per_subject=32"])
    assert scaled_peak_lr(small) == pytest.approx(small.optim.lr)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(PretrainConfig, None, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match="unknown key 'sampling.weigthed'"):
        load_config(PretrainConfig, None, ["sampling.weigthed=false"])
    with pytest.raises(ConfigError, match="tasks"):
        load_config(PretrainConfig, None, ["tasks=[aot, reverse]"])
    with pytest.raises(ConfigError, match="window_seconds"):
        load_config(PretrainConfig, None, ["window_seconds=7"])


def test_epoch_plan_visits_every_subject_once_and_is_seeded(synthetic_corpus):
    days = epochs.subject_days(corpus.read_manifest(synthetic_corpus), "train")
    first = epochs.epoch_plan(days, seed=1, epoch=0)
    files = [item["file"] for item in first]
    subjects = [f.split("/")[1] for f in files]
    assert sorted(subjects) == sorted(days)
    assert first == epochs.epoch_plan(days, seed=1, epoch=0)
    assert first != epochs.epoch_plan(days, seed=1, epoch=1)


def test_drawn_windows_follow_the_wear_flag_and_count(synthetic_corpus):
    manifest = corpus.read_manifest(synthetic_corpus)
    days = epochs.subject_days(manifest, "train")
    item = epochs.epoch_plan(days, seed=0, epoch=0)[0]
    windows = epochs.draw_windows(synthetic_corpus, item, 200, weighted=True)
    assert windows.shape == (200, 3, corpus.WINDOW_SAMPLES)
    table = corpus.read_day(synthetic_corpus, item)
    stored = corpus.decode_windows(table)
    worn = stored[table["wear"].to_numpy(zero_copy_only=False)]
    worn_keys = {w.tobytes() for w in worn.astype(np.float16)}
    assert all(w.tobytes() in worn_keys for w in windows)
    assert len({w.tobytes() for w in windows}) == 200


def test_resource_plan_refuses_workers_that_starve_ray_data():
    with pytest.raises(ResourcePlanError, match="runtime.num_workers=2"):
        plan_resources(2, 1.0, 1.0, False, {"CPU": 2.0})
    plan = plan_resources(2, 0.5, 1.0, False, {"CPU": 2.0})
    assert plan.training_cpus + plan.data_cpus <= 2.0
    with pytest.raises(ResourcePlanError, match="GPU"):
        plan_resources(1, 1.0, 1.0, True, {"CPU": 8.0})


@pytest.mark.parametrize(("cpus_per_worker", "threads"), [(0.5, 1), (1.0, 1), (1.5, 2), (4.0, 4)])
def test_a_worker_gets_its_cpu_share_rounded_up_as_torch_threads(cpus_per_worker, threads):
    plan = plan_resources(1, cpus_per_worker, 0.5, False, {"CPU": 8.0})
    assert plan.torch_threads == threads


def test_the_worker_spec_is_frozen_and_holds_mlflow_settings_but_no_credentials(tmp_path):
    """Only the worker settings of the environment given pass (an explicit one: earlier
    jobs in this process may have set MLflow's retry defaults in ``os.environ``), in one
    frozen spec that is the trainer config's only entry."""
    planted = uuid.uuid4().hex
    environ = {name: f"{name.lower()}-{planted}" for name in CREDENTIALS}
    environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
    cfg = load_config(PretrainConfig, None, [f"runtime.storage_path={tmp_path}"])
    plan = ResourcePlan(num_workers=2, cpus_per_worker=1.0, data_cpus=1.0, use_gpu=False)
    uri = "http://127.0.0.1:5000"
    spec = worker_spec(cfg, plan, str(tmp_path), {}, None, "run", uri, str(tmp_path), environ)
    config = spec.as_loop_config()
    assert list(config.values()) == [spec]
    assert planted.encode() not in pickle.dumps(config)
    assert spec.mlflow_env == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    assert spec.tracking_uri == uri
    assert spec.tasks == tuple(cfg.tasks) and spec.torch_threads == plan.torch_threads
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.run_id = "another"  # type: ignore[misc]
    assert isinstance(pickle.loads(pickle.dumps(spec)), PretrainWorkerSpec)


@pytest.mark.parametrize(
    "uri",
    [
        "http://alice:" + "{secret}@mlflow.internal:5000",
        "https://" + "{secret}@mlflow.internal",
        "postgresql://mlflow:" + "{secret}@db.internal/mlflow",
    ],
)
def test_a_tracking_uri_holding_credentials_is_refused_without_showing_them(uri):
    planted = uuid.uuid4().hex
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_PASSWORD") as refused:
        tracking.refuse_credentials(uri.format(secret=planted))
    assert planted not in str(refused.value)
    assert "mlflow.internal" in str(refused.value) or "db.internal" in str(refused.value)
    with pytest.raises(ConfigError, match="holds credentials"):
        tracking.configure(uri.format(secret=planted))


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:5000", "sqlite:///mlruns/mlflow.db", "file:///tmp/a@b", "databricks"]
)
def test_a_tracking_uri_without_credentials_passes(uri):
    assert tracking.refuse_credentials(uri) == uri


@pytest.mark.slow
def test_two_worker_run_logs_every_epoch_once_and_registers_the_model(
    ray_local, synthetic_corpus, sqlite_tracking, tmp_path
):
    epochs_wanted = 2
    cfg = load_config(
        PretrainConfig,
        None,
        [
            "name=e2e",
            f"corpus={synthetic_corpus}",
            f"runtime.storage_path={tmp_path / 'runs'}",
            "runtime.num_workers=2",
            "runtime.cpus_per_worker=0.5",
            "runtime.data_cpus=1",
            f"optim.epochs={epochs_wanted}",
            "optim.max_steps_per_epoch=2",
            "optim.warmup_epochs=1",
            "sampling.windows_per_subject=16",
            "sampling.subjects_per_batch=2",
            "sampling.shuffle_buffer=32",
            "eval.windows_per_subject=16",
            "tracking.registered_model=e2e-model",
        ],
    )
    result = run_pretraining(cfg)
    client = MlflowClient(tracking_uri=sqlite_tracking)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["corpus_manifest_hash"] == corpus.manifest_hash(
        corpus.read_manifest(synthetic_corpus)
    )
    assert run.data.tags["workers"] == "2"
    assert run.data.params["sampling.windows_per_subject"] == "16"
    for key in ("train/loss", "val/loss", "val/aot_acc", "val/permute_acc", "train/lr"):
        steps = [m.step for m in client.get_metric_history(result.run_id, key)]
        assert sorted(steps) == list(range(epochs_wanted)), key
    assert all(key.startswith(("train/", "val/", "time/")) for key in run.data.metrics)
    for stamp in ("started_at", "finished_at"):
        assert stamp not in run.data.metrics
        assert datetime.fromisoformat(run.data.tags[stamp]).utcoffset() == timedelta(0)
    assert "'e2e'" in run.data.tags["mlflow.note.content"]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == run.data.tags["corpus_manifest_hash"]
    assert json.loads(dataset.dataset.source)["uri"] == synthetic_corpus
    assert {(t.key, t.value) for t in dataset.tags} == {("mlflow.data.context", "training")}
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "curves.png", "checkpoint"} <= artifacts
    assert all(math.isfinite(v) for v in result.metrics.values())
    versions = client.search_model_versions("name='e2e-model'")
    assert [v.run_id for v in versions] == [result.run_id]
    assert "by config 'e2e'" in versions[0].description
    signature = mlflow.models.get_model_info(f"models:/e2e-model/{versions[0].version}").signature
    assert [spec.name for spec in signature.outputs.inputs] == list(TASK_HEADS)
    assert signature.inputs.inputs[0].shape == (-1, 3, 300)
    state = load_checkpoint(result.checkpoint_path.rstrip("/") + "/harnet.pt")
    loaded = harnet(10, pretrained=result.checkpoint_path.rstrip("/") + "/harnet.pt")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state["state_dict"][key]), key


def test_five_second_model_sees_each_row_as_two_consecutive_windows():
    from wearssl.pretrain.step import model_windows

    rows = torch.arange(2 * 3 * 300, dtype=torch.float32).reshape(2, 3, 300)
    halves = model_windows(rows, 5)
    assert halves.shape == (4, 3, 150)
    assert torch.equal(halves[0], rows[0, :, :150])
    assert torch.equal(halves[1], rows[0, :, 150:])
    assert torch.equal(halves[3], rows[1, :, 150:])
    assert model_windows(rows, 10) is rows


def test_subsets_are_nested_and_ratio_shortens_days(synthetic_corpus):
    days = epochs.subject_days(corpus.read_manifest(synthetic_corpus), "train")
    small = epochs.subset(days, 2, 1.0, seed=7)
    large = epochs.subset(days, 4, 1.0, seed=7)
    assert len(small) == 2 and len(large) == 4
    assert set(small) <= set(large)
    assert epochs.subset(days, 2, 1.0, seed=8) != small or len(days) <= 2
    quarter = epochs.subset(days, None, 0.25, seed=7)
    for subject, subject_days in quarter.items():
        for part, whole in zip(subject_days, days[subject], strict=True):
            assert part.row_start == whole.row_start
            assert part.row_end - part.row_start == round((whole.row_end - whole.row_start) / 4)


def test_a_recorded_run_that_was_deleted_is_started_anew_with_a_warning(
    tmp_path, sqlite_tracking, caplog
):
    cfg = load_config(PretrainConfig, None, [f"runtime.storage_path={tmp_path / 'runs'}"])
    tags = {"corpus_manifest_hash": "abc"}
    first = mlflow_run.mlflow_run_for(cfg, sqlite_tracking, tags, None, [])
    record = mlflow_run.read_run_record(cfg)
    assert record["run_id"] == first
    client = MlflowClient(sqlite_tracking)
    client.delete_run(first)
    with caplog.at_level(logging.WARNING):
        second = mlflow_run.mlflow_run_for(cfg, sqlite_tracking, tags, record, [])
    assert second != first
    assert f"recorded MLflow run {first} is gone" in caplog.text
    assert mlflow_run.read_run_record(cfg)["run_id"] == second
    assert client.get_run(second).info.status == "RUNNING"
    assert "started_at" in client.get_run(second).data.tags


def test_a_recorded_run_that_still_exists_is_resumed(tmp_path, sqlite_tracking):
    client = MlflowClient(sqlite_tracking)
    run_id = client.create_run(tracking.experiment_id("pretrain", sqlite_tracking)).info.run_id
    client.set_terminated(run_id, "KILLED")
    record = {"run_id": run_id, "tracking_uri": sqlite_tracking}
    assert mlflow_runs.resume_run(client, record, sqlite_tracking) == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    assert mlflow_runs.resume_run(client, record, "sqlite:///elsewhere.db") is None
    assert mlflow_runs.resume_run(client, None, sqlite_tracking) is None


def test_read_only_batches_reach_the_model_without_a_numpy_warning():
    window = np.ones((2, 3, 300), dtype=np.float16)
    window.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = batch_rows({"window": window}, torch.device("cpu"))
    assert rows.dtype == torch.float32 and torch.equal(rows, torch.ones(2, 3, 300))


def test_old_metric_names_of_a_checkpoint_map_to_stage_groups():
    assert stage_metric_name("train_loss") == "train/loss"
    assert stage_metric_name("val_acc_time_warp") == "val/time_warp_acc"
    assert stage_metric_name("train_acc_aot") == "train/aot_acc"
    assert stage_metric_name("epoch_seconds") == "time/epoch_s"
    assert stage_metric_name("val/loss") == "val/loss"


def test_the_curves_figure_has_a_loss_and_an_accuracy_panel():
    history = {
        "train/loss": [(0, 0.9), (1, 0.8)],
        "val/loss": [(1, 0.85), (0, 0.95)],
        "val/aot_acc": [(0, 0.5), (1, 0.6)],
    }
    loss, accuracy = curves_figure(history).axes
    assert [line.get_label() for line in loss.lines] == ["train/loss", "val/loss"]
    assert list(loss.lines[1].get_xdata()) == [1, 2]  # sorted by step, epochs from 1
    assert "aot" in [line.get_label() for line in accuracy.lines]


def test_the_driver_prints_each_line_rank_0_posts_once(ray_local):
    board = ProgressBoard.remote()
    rank0 = WorkerProgress(board, windows_per_step=128)
    rank0.step(0, 1)
    rank0.say("epoch 1/2: train/loss=0.7")
    rank0.say("epoch 2/2: train/loss=0.6")
    out = io.StringIO()
    with ProgressPrinter(board, epochs=2, windows_per_epoch=256, stream=out):
        pass
    assert out.getvalue().splitlines() == ["epoch 1/2: train/loss=0.7", "epoch 2/2: train/loss=0.6"]
    ray.kill(board)


def test_a_gone_progress_board_never_stops_training():
    class Gone:
        def __getattr__(self, name):
            raise RuntimeError("the actor is dead")

    rank0 = WorkerProgress(Gone(), windows_per_step=1)
    rank0.step(0, 1)
    rank0.say("epoch 1/1")


def test_registered_model_names_follow_network_stage_config():
    assert load_config(PretrainConfig, None, []).tracking.registered_model == (
        "harnet10-ssl-quickstart"
    )
    five = load_config(PretrainConfig, None, ["window_seconds=5", "name=wrist"])
    assert five.tracking.registered_model == "harnet5-ssl-wrist"
    unregistered = load_config(PretrainConfig, None, ["tracking.registered_model=null"])
    assert unregistered.tracking.registered_model is None
    for path in sorted(Path("configs/pretrain").glob("*.yaml")):
        cfg = load_config(PretrainConfig, str(path))
        assert re.fullmatch(r"harnet(5|10)-ssl(-[a-z0-9-]+)?", cfg.tracking.registered_model)
