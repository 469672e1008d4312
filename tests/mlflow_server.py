"""A local MLflow tracking server: SQLite backend, proxied artifacts, loopback only.

The embedded default store (``wearssl.infra.tracking.default_store``) needs no server. This
module starts a real one, as on a cluster's head node, so that tests and local users can
log over HTTP the way cluster jobs do: runs and params in ``DIR/mlflow.db``, artifacts
uploaded through the server into ``DIR/artifacts`` (clients never write to that folder
themselves). ``scripts/mlflow-server.sh`` does the same from a shell.

MLflow 3's server also starts a pool of job-runner processes for its GenAI features;
wearssl does not use them, so they are switched off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
HEALTH_PATH = "/health"
LOG_NAME = "mlflow.log"
LOG_TAIL_LINES = 40
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class TrackingServerError(RuntimeError):
    """The tracking server did not come up; the message holds the end of its log."""


@dataclass
class TrackingServer:
    """A running ``mlflow server`` process; a context manager that stops it on exit."""

    directory: Path
    host: str
    port: int
    process: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def backend_store_uri(self) -> str:
        return backend_store_uri(self.directory)

    @property
    def artifacts_destination(self) -> Path:
        return artifacts_destination(self.directory)

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server and the processes it started (its own process group)."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)

    def __enter__(self) -> TrackingServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def backend_store_uri(directory: Path) -> str:
    return f"sqlite:///{directory.resolve() / 'mlflow.db'}"


def artifacts_destination(directory: Path) -> Path:
    return directory.resolve() / "artifacts"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def server_command(directory: Path, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        backend_store_uri(directory),
        "--artifacts-destination",
        str(artifacts_destination(directory)),
        "--serve-artifacts",
    ]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def is_healthy(uri: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(uri + HEALTH_PATH, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal the server's process group (it leads one: started with a new session)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def wait_until_healthy(server: TrackingServer, timeout_s: float) -> None:
    """Poll ``/health`` until it answers; else stop the server and raise with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise TrackingServerError(
                f"MLflow server in {server.directory} exited with code "
                f"{server.process.returncode} before answering; end of {server.log_path}:\n"
                f"{log_tail(server.log_path)}"
            )
        if is_healthy(server.uri):
            return
        time.sleep(0.25)
    server.stop()
    raise TrackingServerError(
        f"MLflow server at {server.uri} did not answer {HEALTH_PATH} within {timeout_s:g} s; "
        f"end of {server.log_path}:\n{log_tail(server.log_path)}"
    )


def start_tracking_server(
    directory: str | Path,
    port: int | None = None,
    host: str = LOOPBACK,
    workers: int = 1,
    timeout_s: float = 60.0,
) -> TrackingServer:
    """Start ``mlflow server`` on ``host:port`` (a free port if None) and wait until it is healthy.

    Runs and params go to ``directory/mlflow.db``, proxied artifacts to
    ``directory/artifacts``, the server's output to ``directory/mlflow.log``.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(host) if port is None else port
    with open(directory / LOG_NAME, "ab") as log:
        process = subprocess.Popen(
            server_command(directory, host, port, workers),
            cwd=directory,
            env={**os.environ, **SERVER_ENV},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = TrackingServer(directory=directory, host=host, port=port, process=process)
    wait_until_healthy(server, timeout_s)
    return server
