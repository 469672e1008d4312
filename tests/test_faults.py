"""Fault injection on tiny data: bad corpus files and values, dead or flaky tracking, resource
values that cannot be scheduled, batches that cannot be filled, reruns with another config.

Each case shows a promise of ``docs/reliability.md``: nothing is silently wrong, nothing
hangs, nothing is counted twice. Faults are injected by the tests (corrupted copies of a
synthetic corpus, a port nobody listens on, a run record of another config), never by
switches in the job code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from wearssl.cli import EXIT_USAGE, run_job
from wearssl.config import ConfigError, load_config
from wearssl.config.pretrain import PretrainConfig
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.infra import tracking
from wearssl.infra.ray_runtime import ResourcePlanError, connect, require_task_fits
from wearssl.pretrain import faults, mlflow_run
from wearssl.pretrain.train import PretrainingFault, run_pretraining

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "optim.max_steps_per_epoch=1",
    "optim.epochs=1",
    "sampling.windows_per_subject=16",
    "sampling.subjects_per_batch=2",
    "eval.windows_per_subject=16",
    "tracking.registered_model=harnet-faults",
]


# ---------------------------------------------------------------- helpers


@pytest.fixture
def corpus_copy(synthetic_corpus: str, tmp_path: Path) -> Path:
    """A private copy of the session's synthetic corpus, for a test to corrupt."""
    copy = tmp_path / "corpus"
    shutil.copytree(synthetic_corpus, copy)
    return copy


def _day(root: Path, split: str) -> dict:
    """The first subject-day of ``split`` in the manifest (one day per subject here)."""
    manifest = corpus.read_manifest(str(root))
    return next(row for row in manifest.to_pylist() if row["split"] == split)


def _rewrite_windows(root: Path, day: dict, change) -> None:
    """Rewrite a day file with ``change(windows)`` stored as float32, keeping its std column.

    The bytes are laid out by hand: the corpus writer refuses non-finite windows, and this
    stands for a file that a bug, a disk or another tool corrupted after it was written."""
    path = root / day["file"]
    table = pq.read_table(path)
    windows = np.ascontiguousarray(change(corpus.decode_windows(table)), dtype=np.float32)
    field = corpus.window_field(corpus.WindowFormat.FLOAT32)
    column = pa.FixedSizeBinaryArray.from_buffers(
        field.type, len(windows), [None, pa.py_buffer(windows)]
    )
    index = table.schema.get_field_index("window")
    pq.write_table(table.set_column(index, field, column), path)


def _config(root: Path | str | None, tmp_path: Path, uri: str, *extra: str) -> PretrainConfig:
    overrides = [
        "name=faults",
        f"runtime.storage_path={tmp_path / 'runs'}",
        f"tracking.tracking_uri={uri}",
        *TINY,
        *extra,
    ]
    if root is not None:
        overrides.append(f"corpus={root}")
    return load_config(PretrainConfig, None, overrides)


def _only_run(uri: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("wearssl-pretrain")
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _draw_item(day: dict) -> dict:
    return {**day, "seed": 7}


# ---------------------------------------------------------------- 1. non-finite data and loss


def test_sampler_skips_non_finite_windows_with_a_named_warning(corpus_copy):
    day = _day(corpus_copy, "train")
    worn = np.flatnonzero(pq.read_table(corpus_copy / day["file"])["wear"].to_numpy())

    def poison(windows: np.ndarray) -> np.ndarray:
        windows[worn[::2], 0, 5] = np.nan
        windows[worn[1::4], 2, 9] = np.inf
        return windows

    _rewrite_windows(corpus_copy, day, poison)
    with pytest.warns(epochs.NonFiniteWindowsWarning, match=day["file"]) as caught:
        drawn = epochs.draw_windows(str(corpus_copy), _draw_item(day), 64, True)
    assert len(drawn) == 64
    assert np.isfinite(drawn).all()
    assert day["subject"] in str(caught[0].message)


def test_non_finite_std_names_the_file_and_subject(corpus_copy):
    day = _day(corpus_copy, "train")
    path = corpus_copy / day["file"]
    table = pq.read_table(path)
    std = table["std"].to_numpy().copy()
    std[3] = np.nan
    index = table.schema.get_field_index("std")
    pq.write_table(table.set_column(index, "std", pa.array(std, pa.float32())), path)
    with pytest.raises(corpus.CorpusError, match=day["file"]) as raised:
        epochs.draw_windows(str(corpus_copy), _draw_item(day), 16, True)
    assert day["subject"] in str(raised.value)


@pytest.mark.slow
def test_non_finite_loss_fails_the_run_and_registers_nothing(
    ray_local, corpus_copy, tmp_path, sqlite_tracking
):
    """Finite but extreme samples (float32's largest values) overflow the model: the loss
    is NaN, the run stops FAILED, no checkpoint or model of it is kept."""
    for row in corpus.read_manifest(str(corpus_copy)).to_pylist():
        if row["split"] == "train":
            _rewrite_windows(corpus_copy, row, lambda w: np.where(w >= 0, 3e38, -3e38))
    cfg = _config(corpus_copy, tmp_path, sqlite_tracking)
    with pytest.raises(PretrainingFault, match="not finite"):
        run_pretraining(cfg)
    run = _only_run(sqlite_tracking)
    assert run.info.status == "FAILED"
    assert not MlflowClient(sqlite_tracking).search_registered_models("name='harnet-faults'")
    assert not list((tmp_path / "runs" / "faults").glob("checkpoint_*"))


# ---------------------------------------------------------------- 7. unreadable files, run status


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_day_file_is_a_corpus_error_naming_it(corpus_copy):
    day = _day(corpus_copy, "train")
    _truncate(corpus_copy / day["file"])
    with pytest.raises(corpus.CorpusError, match=day["file"]):
        epochs.draw_windows(str(corpus_copy), _draw_item(day), 16, True)


@pytest.mark.slow
def test_truncated_training_file_stops_the_run_at_once_and_fails_it(
    ray_local, corpus_copy, tmp_path, sqlite_tracking
):
    for row in corpus.read_manifest(str(corpus_copy)).to_pylist():
        if row["split"] == "train":
            _truncate(corpus_copy / row["file"])
    cfg = _config(corpus_copy, tmp_path, sqlite_tracking, "runtime.max_failures=2")
    started = time.monotonic()
    with pytest.raises(PretrainingFault, match=r"days/.*\.parquet.*cannot be read"):
        run_pretraining(cfg)
    assert time.monotonic() - started < 120  # one attempt, no Ray Train retries
    assert _only_run(sqlite_tracking).info.status == "FAILED"


@pytest.mark.slow
def test_terminated_job_ends_its_run_killed(synthetic_corpus, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "name=terminated",
        f"corpus={synthetic_corpus}",
        f"runtime.storage_path={tmp_path / 'runs'}",
        f"tracking.tracking_uri={uri}",
        *TINY,
        "optim.epochs=50",
        "optim.patience=50",
    ]
    log = tmp_path / "job.log"
    with log.open("w") as out:
        job = subprocess.Popen(
            [sys.executable, str(REPO / "jobs" / "pretrain.py"), *overrides],
            cwd=REPO,
            env={**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while "epoch 1/" not in log.read_text() and time.monotonic() < deadline:
            assert job.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    assert job.returncode != 0, log.read_text()[-3000:]
    assert _only_run(uri).info.status == "KILLED", log.read_text()[-3000:]


# ---------------------------------------------------------------- 3. tracking server down


def test_dead_tracking_server_fails_in_seconds_with_one_line(
    synthetic_corpus, tmp_path, capsys, monkeypatch
):
    for key in tracking.HTTP_LIMITS:
        monkeypatch.delenv(key, raising=False)
    dead = f"http://127.0.0.1:{_free_port()}"
    overrides = ["name=dead", f"corpus={synthetic_corpus}", f"tracking.tracking_uri={dead}"]
    started = time.monotonic()
    status = run_job(PretrainConfig, None, [*overrides, *TINY], run_pretraining)
    assert time.monotonic() - started < 15
    assert status == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and dead in err and "does not answer" in err
    # and every HTTP call of the run is bounded, where the environment sets no bounds
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        == tracking.HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    )
    assert int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 15


# ---------------------------------------------------------------- 2. nothing logged twice


def test_values_kept_in_an_outage_are_not_logged_twice_on_recovery(tmp_path, sqlite_tracking):
    """A rerun after an outage replays its checkpointed epochs (the store lacks them) and
    the driver retries the values the workers kept: each (metric, step) lands once."""
    client = MlflowClient(sqlite_tracking)
    run_id = client.create_run(tracking.experiment_id("faults", sqlite_tracking)).info.run_id
    kept = [(key, 0.5, step) for step in (1, 2, 3) for key in ("val/loss", "train/loss")]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / faults.UNLOGGED_FILE).write_text(json.dumps(kept))
    replay = tracking.ResilientLogger(run_id, sqlite_tracking)
    for step in (1, 2, 3):
        replay.log_metrics({"val/loss": 0.5, "train/loss": 0.5}, step)
    assert faults.retry_unlogged(str(run_dir), run_id, sqlite_tracking) == ""
    for key in ("val/loss", "train/loss"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == [1, 2, 3], (key, steps)
    assert not (run_dir / faults.UNLOGGED_FILE).exists()


# ---------------------------------------------------------------- 4. resources that never fit


def test_read_cpus_beyond_the_plan_are_refused_naming_the_key(
    ray_local, synthetic_corpus, tmp_path, sqlite_tracking
):
    cfg = _config(synthetic_corpus, tmp_path, sqlite_tracking, "sampling.read_cpus=100")
    with pytest.raises(ResourcePlanError, match="sampling.read_cpus=100"):
        run_pretraining(cfg)
    # 1 CPU of 2 held by the training worker leaves 1: 1.5 per read task would never start
    cfg = _config(synthetic_corpus, tmp_path, sqlite_tracking, "sampling.read_cpus=1.5")
    with pytest.raises(ResourcePlanError, match="sampling.read_cpus=1.5"):
        run_pretraining(cfg)


def test_task_cpus_beyond_any_node_are_refused_naming_the_key(ray_local):
    cluster = connect()
    with pytest.raises(ResourcePlanError, match="resources.cpus_per_task=100"):
        require_task_fits("resources.cpus_per_task", 100, cluster)
    require_task_fits("resources.cpus_per_task", 1, cluster)


def test_local_ray_without_cpus_is_refused_naming_the_option(tmp_path):
    job = subprocess.run(
        [
            sys.executable,
            str(REPO / "jobs" / "ingest.py"),
            str(tmp_path),
            "--out",
            str(tmp_path / "corpus"),
            "--num-cpus",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert job.returncode == EXIT_USAGE, job.stderr[-2000:]
    assert "--num-cpus=0" in job.stderr and "Traceback" not in job.stderr


# ---------------------------------------------------------------- 5. batches that cannot fill


def test_batch_larger_than_the_corpus_is_refused_with_the_counts(
    ray_local, synthetic_corpus, tmp_path, sqlite_tracking
):
    """5 training subjects of one day (8,640 windows) cannot fill 5 x 9,000 windows."""
    cfg = _config(
        synthetic_corpus,
        tmp_path,
        sqlite_tracking,
        "sampling.windows_per_subject=9000",
        "sampling.subjects_per_batch=5",
    )
    with pytest.raises(ConfigError, match=r"one batch needs .* = 45000 windows") as raised:
        run_pretraining(cfg)
    assert "worn windows" in str(raised.value)
    assert not list((tmp_path / "runs").glob("*/checkpoint_*"))


def test_corpus_without_worn_training_windows_is_refused_with_the_counts(
    ray_local, corpus_copy, tmp_path, sqlite_tracking
):
    manifest = corpus.read_manifest(str(corpus_copy))
    is_train = pa.compute.equal(manifest["split"], "train")
    no_wear = pa.compute.if_else(is_train, 0, manifest["n_wear"])
    index = manifest.schema.get_field_index("n_wear")
    corpus.write_manifest(str(corpus_copy), manifest.set_column(index, "n_wear", no_wear))
    with pytest.raises(ConfigError, match=r"= 32 windows, .* at most 0: its 0 training subjects"):
        run_pretraining(_config(corpus_copy, tmp_path, sqlite_tracking))


# ---------------------------------------------------------------- 6. reruns with another config


def test_rerun_with_another_config_is_refused_listing_the_keys(
    ray_local, synthetic_corpus, corpus_copy, tmp_path, sqlite_tracking
):
    first = _config(synthetic_corpus, tmp_path, sqlite_tracking, "optim.epochs=2")
    digest = corpus.manifest_hash(corpus.read_manifest(synthetic_corpus))
    run_id = mlflow_run.mlflow_run_for(
        first, sqlite_tracking, {"corpus_manifest_hash": digest}, None, []
    )

    changed = _config(corpus_copy, tmp_path, sqlite_tracking, "optim.epochs=1", "optim.lr=0.01")
    with pytest.raises(ConfigError) as raised:
        run_pretraining(changed)
    message = str(raised.value)
    for key in ("corpus:", "optim.epochs: 2 -> 1", "optim.lr:"):
        assert key in message

    record = mlflow_run.read_run_record(first)
    extended = _config(synthetic_corpus, tmp_path, sqlite_tracking, "optim.epochs=5")
    assert mlflow_run.config_changes(extended, record, digest) == []
    allowed = _config(corpus_copy, tmp_path, sqlite_tracking, "resume_with_changes=true")
    changes = mlflow_run.require_same_config(allowed, record, digest)
    assert (
        mlflow_run.mlflow_run_for(
            allowed, sqlite_tracking, {"corpus_manifest_hash": digest}, record, changes
        )
        == run_id
    )
    tag = MlflowClient(sqlite_tracking).get_run(run_id).data.tags[mlflow_run.RESUME_CHANGES_TAG]
    assert "corpus:" in tag


# ---------------------------------------------------------------- 8. one line, never a traceback


def test_seed_beyond_the_generators_range_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.seed"):
        load_config(PretrainConfig, None, [f"optim.seed={10**30}"])


def test_newer_corpus_version_is_one_line(
    ray_local, corpus_copy, tmp_path, capsys, sqlite_tracking
):
    info = corpus_copy / corpus.INFO_NAME
    info.write_text(json.dumps({**json.loads(info.read_text()), "version": 99}))
    overrides = [f"corpus={corpus_copy}", f"runtime.storage_path={tmp_path / 'runs'}", *TINY]
    assert run_job(PretrainConfig, None, overrides, run_pretraining) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "version 99" in err and "Traceback" not in err


def test_credentialled_uri_is_refused_before_any_work(tmp_path, capsys):
    synthetic = tmp_path / "synthetic"
    overrides = [
        # built by concatenation, so that no tracked file holds a credentialled URL
        "tracking.tracking_uri=https://user:" + "secret@mlflow.example.org",
        f"synthetic.out={synthetic}",
        f"runtime.storage_path={tmp_path / 'runs'}",
    ]
    assert run_job(PretrainConfig, None, overrides, run_pretraining) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "holds credentials" in err and "secret" not in err
    assert not synthetic.exists()


def _ingest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "ingest.py"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "RAY_ADDRESS": ""},
    )


@pytest.mark.parametrize("case", ["missing subject map", "out is a file", "empty folder"])
def test_ingest_usage_errors_are_one_line(tmp_path, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    args, expected = {
        "missing subject map": (
            [str(empty), "--out", str(tmp_path / "c"), "--subject-map", str(tmp_path / "no.csv")],
            "--subject-map",
        ),
        "out is a file": ([str(empty), "--out", str(a_file)], "existing file"),
        "empty folder": ([str(empty), "--out", str(tmp_path / "c"), "--num-cpus", "1"], "no rec"),
    }[case]
    job = _ingest(*args)
    assert job.returncode == EXIT_USAGE, job.stdout[-2000:] + job.stderr[-2000:]
    assert expected in job.stderr and "Traceback" not in job.stderr


@pytest.mark.parametrize("case", ["out is a file", "empty folder"])
def test_predict_usage_errors_are_one_line(tmp_path, capsys, case):
    from wearssl.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    out = a_file if case == "out is a file" else tmp_path / "predictions"
    status = main(["predict", str(empty), "--model", "models:/none/1", "--out", str(out)])
    assert status == EXIT_USAGE
    err = capsys.readouterr().err
    assert ("existing file" if case == "out is a file" else "no recordings found") in err


def test_an_evaluation_trial_that_fails_ends_its_run_failed(sqlite_tracking, tmp_path):
    """A trial's child run, opened when the trial starts, is FAILED when the trial breaks,
    never left RUNNING; a second execution continues the same run."""
    import mlflow

    from wearssl.config.evaluate import Finetune, Protocol
    from wearssl.downstream.datasets import DatasetPlan
    from wearssl.downstream.evaluate import EXPERIMENT
    from wearssl.downstream.evaluate_trials import evaluation_trial
    from wearssl.downstream.tracked_runs import TrialRuns
    from wearssl.downstream.trial import TrialSettings, TrialSpec
    from wearssl.infra import tracking
    from wearssl.infra.tracking import DESCRIPTION_TAG, STARTED_AT_TAG

    client = mlflow.MlflowClient(tracking_uri=sqlite_tracking)
    experiment = tracking.experiment_id(EXPERIMENT, sqlite_tracking)
    parent = client.create_run(experiment).info.run_id
    source = {"mlflow.source.name": "wearssl evaluate", "mlflow.source.type": "JOB"}
    runs = TrialRuns(
        sqlite_tracking, experiment, {"d": parent}, str(tmp_path / "runs"), "cfg", source
    )
    settings = TrialSettings(Protocol(), Finetune(), n_estimators=10)
    spec = TrialSpec(DatasetPlan("d", str(tmp_path / "d")), "forest", "f0", 0, 0, settings)

    def broken(spec):
        raise RuntimeError("the trial breaks")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="the trial breaks"):
            evaluation_trial(spec, str(tmp_path / "out"), broken, runs)
    (run,) = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert run.info.status == "FAILED"
    assert run.info.run_name == "d-forest-f0-s0"
    assert "arm forest" in run.data.tags[DESCRIPTION_TAG] and STARTED_AT_TAG in run.data.tags
    assert source.items() <= run.data.tags.items()
