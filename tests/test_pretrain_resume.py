"""A pre-training job killed mid-run and started again continues where it stopped, and its
console shows each epoch once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4


def _job(name: str, corpus: str, runs: Path, uri: str) -> subprocess.Popen:
    overrides = [
        f"name={name}",
        f"corpus={corpus}",
        f"runtime.storage_path={runs}",
        f"tracking.tracking_uri={uri}",
        "tracking.registered_model=null",
        f"optim.epochs={EPOCHS}",
        "optim.max_steps_per_epoch=2",
        "optim.warmup_epochs=1",
        "sampling.windows_per_subject=16",
        "sampling.subjects_per_batch=2",
        "eval.windows_per_subject=16",
    ]
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / "pretrain.py"), *overrides],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("checkpoint_*")) if run_dir.is_dir() else []


def _logged_epochs(uri: str) -> int:
    """Epochs the pre-training run has logged so far (0 before its run exists)."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("wearssl-pretrain")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return len(client.get_metric_history(runs[0].info.run_id, "train/loss")) if runs else 0


@pytest.mark.slow
def test_killed_run_resumes_at_next_epoch_and_logs_each_epoch_once(synthetic_corpus, tmp_path):
    runs = tmp_path / "runs"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _job("resume", synthetic_corpus, runs, uri)
    deadline = time.monotonic() + 600
    # kill as soon as rank 0 has logged the epoch it checkpointed, not after a fixed sleep:
    # on a quiet machine the remaining epochs take only a few seconds
    while not (_checkpoints(runs / "resume") and _logged_epochs(uri)):
        assert time.monotonic() < deadline, "no epoch checkpointed and logged in 600 s"
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = len(_checkpoints(runs / "resume"))
    assert 1 <= killed_at < EPOCHS

    second = _job("resume", synthetic_corpus, runs, uri)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output[-3000:]
    resumed = re.search(r"^resuming after epoch (\d+) ", output, re.MULTILINE)
    assert resumed, output[-3000:]
    lines = output.splitlines()
    for epoch in range(int(resumed.group(1)) + 1, EPOCHS + 1):
        shown = [line for line in lines if f"epoch {epoch}/{EPOCHS}: " in line]
        assert len(shown) == 1 and shown[0].startswith("epoch "), shown  # once, by the driver
    assert f"final metrics (epoch {EPOCHS})" in output

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(client.get_experiment_by_name("wearssl-pretrain").experiment_id)
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "val/loss", "val/aot_acc", "train/windows_per_s"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(EPOCHS)), (key, steps)
