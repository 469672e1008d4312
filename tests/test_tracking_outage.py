"""Pre-training against a real MLflow server that goes away mid-run: training completes,
what could not be logged is reported at the end, and a rerun once the server is back
logs each epoch's metrics exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_server import start_tracking_server
from wearssl.config import load_config
from wearssl.config.pretrain import PretrainConfig
from wearssl.pretrain.train import run_pretraining

EPOCHS = 3


@pytest.mark.slow
def test_training_survives_an_unreachable_tracking_server_and_a_rerun_recovers_once(
    ray_local, synthetic_corpus, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with start_tracking_server(tmp_path / "server", timeout_s=180) as server:
        cfg = load_config(
            PretrainConfig,
            None,
            [
                "name=outage",
                f"corpus={synthetic_corpus}",
                f"runtime.storage_path={tmp_path / 'runs'}",
                f"tracking.tracking_uri={server.uri}",
                "tracking.registered_model=null",
                f"optim.epochs={EPOCHS}",
                "optim.max_steps_per_epoch=2",
                "sampling.windows_per_subject=16",
                "sampling.subjects_per_batch=2",
                "eval.windows_per_subject=16",
            ],
        )
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(result=run_pretraining(cfg)))
        thread.start()
        run_dir = Path(tmp_path / "runs" / "outage")
        deadline = time.monotonic() + 600
        while not list(run_dir.glob("checkpoint_*")) and time.monotonic() < deadline:
            assert thread.is_alive()
            time.sleep(0.5)
        time.sleep(2)
        run_id = next(
            iter(
                MlflowClient(server.uri).search_runs(
                    [
                        MlflowClient(server.uri)
                        .get_experiment_by_name("wearssl-pretrain")
                        .experiment_id
                    ]
                )
            )
        ).info.run_id
        server.stop()
        thread.join(timeout=900)
    result = outcome["result"]
    assert result.epochs_completed == EPOCHS
    assert result.run_id == run_id
    assert "could not be logged" in result.unlogged
    assert "val/loss" in result.unlogged

    with start_tracking_server(tmp_path / "server", port=server.port, timeout_s=180) as back:
        recovered = run_pretraining(cfg)
        client = MlflowClient(back.uri)
        assert recovered.run_id == run_id
        assert recovered.unlogged == ""
        for key in ("train/loss", "val/loss", "val/aot_acc"):
            steps = sorted(m.step for m in client.get_metric_history(run_id, key))
            assert steps == list(range(EPOCHS)), (key, steps)
        assert client.get_run(run_id).info.status == "FINISHED"
