"""A real MLflow tracking server: runs logged over HTTP, artifacts proxied, loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from mlflow_server import (
    TrackingServer,
    TrackingServerError,
    free_port,
    is_healthy,
    start_tracking_server,
)
from wearssl.infra import tracking

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "mlflow-server.sh"
LISTEN_STATE = "0A"
LOOPBACK_HEX = "0100007F"


def listening_addresses(port: int) -> list[str]:
    """Local addresses (kernel hex form) of TCP sockets listening on ``port``, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == LISTEN_STATE and int(port_hex, 16) == port:
                found.append(address)
    return found


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_run_logged_over_http_reads_back_and_its_artifact_is_proxied(
    tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.chdir(client_dir)
    uri = tracking_server.uri
    kind = f"server-test-{uuid.uuid4().hex[:8]}"
    experiment = tracking.experiment_id(kind, uri)
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(experiment, run_name="over-http").info.run_id
    params = {"optim.lr": "0.001", "sampling.weighted": "True"}
    losses = [0.69, 0.52, 0.41]
    client.log_batch(
        run_id,
        params=[Param(key, value) for key, value in params.items()],
        metrics=[Metric("train_loss", loss, 0, step) for step, loss in enumerate(losses)],
    )
    table = client_dir / "results.csv"
    table.write_text("fold,f1\n0,0.71\n")
    client.log_artifact(run_id, str(table), artifact_path="tables")
    client.set_terminated(run_id, "FINISHED")

    reader = MlflowClient(tracking_uri=uri)
    run = reader.get_run(run_id)
    assert run.data.params == params
    assert run.info.status == "FINISHED"
    history = sorted(reader.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == list(enumerate(losses))
    assert [a.path for a in reader.list_artifacts(run_id, "tables")] == ["tables/results.csv"]
    downloaded = reader.download_artifacts(run_id, "tables/results.csv", str(tmp_path))
    assert Path(downloaded).read_text() == table.read_text()

    assert reader.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")
    stored = list(tracking_server.artifacts_destination.rglob("results.csv"))
    assert len(stored) == 1 and run_id in stored[0].parts
    assert stored[0].read_text() == table.read_text()
    assert sorted(p.name for p in client_dir.iterdir()) == ["results.csv"]


def test_the_server_listens_on_loopback_only(tracking_server: TrackingServer) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to list listening sockets")
    addresses = listening_addresses(tracking_server.port)
    assert addresses, f"nothing listens on port {tracking_server.port}"
    assert set(addresses) == {LOOPBACK_HEX}


def test_the_server_stores_runs_in_its_database(tracking_server: TrackingServer) -> None:
    assert tracking_server.backend_store_uri.startswith("sqlite:///")
    assert (tracking_server.directory / "mlflow.db").is_file()
    assert is_healthy(tracking_server.uri)


def test_a_server_that_does_not_come_up_is_stopped_and_reported(tmp_path: Path) -> None:
    directory = tmp_path / "never-up"
    with pytest.raises(TrackingServerError) as info:
        start_tracking_server(directory, timeout_s=0.5)
    message = str(info.value)
    assert "did not answer /health within 0.5 s" in message
    assert str(directory / "mlflow.log") in message
    assert processes_mentioning(str(directory)) == []


def test_a_taken_port_is_not_picked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert free_port() != taken.getsockname()[1]


@pytest.mark.slow
def test_the_script_starts_a_healthy_loopback_server_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    directory = tmp_path / "mlflow"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    started = subprocess.run(
        ["bash", str(SCRIPT), str(port), str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert started.returncode == 0, started.stderr
        pid = int((directory / "mlflow.pid").read_text())
        assert f"http://127.0.0.1:{port}" in started.stdout and f"pid {pid}" in started.stdout
        assert is_healthy(f"http://127.0.0.1:{port}")
        assert set(listening_addresses(port)) == {LOOPBACK_HEX}
        command = ["bash", str(SCRIPT), str(port), str(directory)]
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already runs" in again.stderr
    finally:
        stopped = subprocess.run(
            ["bash", str(SCRIPT), "stop", str(directory)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert not is_healthy(f"http://127.0.0.1:{port}")
    assert processes_mentioning(str(directory)) == []
    assert (directory / "mlflow.db").is_file()


def test_the_script_refuses_a_port_that_is_not_a_number(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "http", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "PORT must be a number" in result.stderr
