"""Pre-training on a real multi-node Ray cluster (ray.cluster_utils): placement, and
surviving a killed training worker and a removed node without losing or repeating an epoch."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
from mlflow import MlflowClient
from ray.cluster_utils import Cluster

from wearssl.config import load_config
from wearssl.config.pretrain import PretrainConfig
from wearssl.pretrain.train import PretrainResult, run_pretraining

pytestmark = pytest.mark.slow
EPOCHS = 3
WORKER_NODES = 3


@pytest.fixture
def cluster():
    """A head (1 CPU, for the driver and data) and 3 worker nodes of 2 CPUs each."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    for _ in range(WORKER_NODES):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _config(name: str, corpus: str, tmp_path: Path, uri: str) -> PretrainConfig:
    return load_config(
        PretrainConfig,
        None,
        [
            f"name={name}",
            f"corpus={corpus}",
            f"runtime.storage_path={tmp_path / 'runs'}",
            f"tracking.tracking_uri={uri}",
            "tracking.registered_model=null",
            "runtime.num_workers=2",
            "runtime.cpus_per_worker=1",
            "runtime.data_cpus=1",
            "runtime.placement_strategy=SPREAD",
            "runtime.max_failures=3",
            f"optim.epochs={EPOCHS}",
            "optim.max_steps_per_epoch=2",
            "optim.warmup_epochs=1",
            "sampling.windows_per_subject=16",
            "sampling.subjects_per_batch=4",
            "sampling.read_cpus=0.5",
            "eval.windows_per_subject=16",
        ],
    )


def _tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _metric_steps(uri: str, run_id: str, key: str) -> list[int]:
    client = MlflowClient(tracking_uri=uri)
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _train_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "RayTrainWorker" in cmdline:
            found.append(process)
    return found


def _run_with_fault(cfg: PretrainConfig, fault) -> tuple[PretrainResult, int]:
    """Run pre-training in a thread; inject ``fault`` once the first checkpoint exists."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = run_pretraining(cfg)
        except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    run_dir = Path(cfg.runtime.storage_path) / cfg.name
    deadline = time.monotonic() + 600
    while not list(run_dir.glob("checkpoint_*")) and time.monotonic() < deadline:
        assert thread.is_alive(), outcome.get("error")
        time.sleep(0.5)
    checkpoints_at_fault = len(list(run_dir.glob("checkpoint_*")))
    fault()
    thread.join(timeout=900)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], checkpoints_at_fault


def _assert_complete_and_logged_once(result: PretrainResult, uri: str) -> None:
    assert result.epochs_completed == EPOCHS
    for key in ("train/loss", "val/loss", "val/aot_acc", "train/windows_per_s"):
        assert _metric_steps(uri, result.run_id, key) == list(range(EPOCHS)), key


def test_workers_on_different_nodes_and_reads_on_several(cluster, synthetic_corpus, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_pretraining(_config("multinode", synthetic_corpus, tmp_path, uri))
    _assert_complete_and_logged_once(result, uri)
    client = MlflowClient(tracking_uri=uri)
    worker_nodes = [m.value for m in client.get_metric_history(result.run_id, "train/worker_nodes")]
    read_nodes = [m.value for m in client.get_metric_history(result.run_id, "train/read_nodes")]
    assert worker_nodes == [2.0] * EPOCHS
    assert max(read_nodes) >= 2


def test_killed_training_worker_resumes_from_last_checkpoint(cluster, synthetic_corpus, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = _tree_digest(synthetic_corpus)

    def kill_a_worker() -> None:
        workers = _train_workers()
        assert workers, "no training worker process found"
        workers[0].kill()

    result, at_fault = _run_with_fault(
        _config("kill-worker", synthetic_corpus, tmp_path, uri), kill_a_worker
    )
    assert 1 <= at_fault < EPOCHS
    _assert_complete_and_logged_once(result, uri)
    assert _tree_digest(synthetic_corpus) == before


def test_removed_node_resumes_from_last_checkpoint(cluster, synthetic_corpus, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = _tree_digest(synthetic_corpus)

    def remove_a_worker_node() -> None:
        worker_parents = {p.ppid() for p in _train_workers()}
        for node in cluster.worker_nodes:
            if node.all_processes["raylet"][0].process.pid in worker_parents:
                cluster.remove_node(node)
                return
        raise AssertionError("no node hosts a training worker")

    result, at_fault = _run_with_fault(
        _config("remove-node", synthetic_corpus, tmp_path, uri), remove_a_worker_node
    )
    assert 1 <= at_fault < EPOCHS
    _assert_complete_and_logged_once(result, uri)
    assert _tree_digest(synthetic_corpus) == before
