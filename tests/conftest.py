"""Shared fixtures: one local Ray for the whole session, the real data folder, tmp stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# tests start their own Ray, never join a `ray start --head` cluster left on the machine
os.environ.setdefault("RAY_ADDRESS", "local")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
# the cluster's storage root, as cluster.yaml exports it: the shipped paper configs name
# s3://your-bucket/... paths, which wearssl.config.roots refuses unless a root holds them
os.environ.setdefault("WEARSSL_STORAGE", "s3://your-bucket")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LOCAL_RAY_CPUS = 2


def pseudonym_key_set_to(key: str):
    """Generator for a fixture: the pseudonymisation key is ``key`` while it is active."""
    saved = os.environ.get("WEARSSL_PSEUDONYM_KEY")
    os.environ["WEARSSL_PSEUDONYM_KEY"] = key
    yield
    if saved is None:
        del os.environ["WEARSSL_PSEUDONYM_KEY"]
    else:
        os.environ["WEARSSL_PSEUDONYM_KEY"] = saved


@pytest.fixture
def ray_local() -> None:
    """A local 2-CPU Ray, started once and shared; restarted if a multi-node test shut it down."""
    if not ray.is_initialized():
        ray.init(num_cpus=LOCAL_RAY_CPUS, include_dashboard=False, log_to_driver=False)
    yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data folder {SHARED_DATA} is absent (only present in development and CI)"
        )
    return SHARED_DATA


@pytest.fixture
def sqlite_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An isolated MLflow store (SQLite + artifact folder) for one test."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """6 synthetic subjects x 1 day (seed 0 puts subject 5 in the test split)."""
    from wearssl.data.synthetic import write_synthetic_corpus

    out = tmp_path_factory.mktemp("corpus") / "synthetic"
    write_synthetic_corpus(str(out), n_subjects=6, n_days=1, seed=0, progress=False)
    return str(out)


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow server on 127.0.0.1 (SQLite backend, proxied artifacts), one per session."""
    from mlflow_server import start_tracking_server

    with start_tracking_server(tmp_path_factory.mktemp("mlflow-server"), timeout_s=180) as server:
        yield server


def actigraph_set_up_in_new_york(original: Path, folder: Path) -> Path:
    """A copy of the ActiGraph file ``original`` whose ``info.txt`` says the device was set up
    at UTC-05:00 (the real file says +02:00), written into ``folder``."""
    import zipfile

    path = folder / "new_york.gt3x"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(path, "w") as copy:
        for member in source.namelist():
            content = source.read(member)
            if member == "info.txt":
                content = content.replace(b"TimeZone: 02:00:00", b"TimeZone: -05:00:00")
            copy.writestr(member, content)
    return path
