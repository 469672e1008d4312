"""Ingest on a simulated two-node Ray cluster: tasks run on both nodes and every
recording lands in the corpus (day files go to the output folder, not a node's disk)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from wearssl.data import corpus
from wearssl.data.devices import ReadOptions
from wearssl.data.ingest import EXIT_OK, IngestOptions, ingest_recordings
from wearssl.data.privacy import pseudonymise

RATE = 30
SECONDS = 2 * 3600
N_RECORDINGS = 6


@pytest.fixture(scope="module")
def cluster():
    saved = os.environ.get("WEARSSL_PSEUDONYM_KEY")
    os.environ["WEARSSL_PSEUDONYM_KEY"] = "test-multinode-key"
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # slow, shared CI machines
    if ray.is_initialized():  # the session's local Ray; later tests start it again
        ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False)
    yield nodes
    ray.shutdown()
    nodes.shutdown()
    if saved is None:
        del os.environ["WEARSSL_PSEUDONYM_KEY"]
    else:
        os.environ["WEARSSL_PSEUDONYM_KEY"] = saved


@pytest.mark.slow
def test_ingest_runs_on_every_node_and_the_corpus_is_complete(cluster, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(N_RECORDINGS):
        xyz = rng.normal(0, 0.2, (SECONDS * RATE, 3)).astype(np.float32)
        np.save(tmp_path / f"node-test-{i}.npy", xyz)
    out = tmp_path / "corpus"
    options = IngestOptions(
        read=ReadOptions(sample_rate_hz=RATE, start="2024-05-01T08:00:00"),
        progress=False,
        verbose=False,
    )
    report = ingest_recordings([str(tmp_path)], str(out), options)

    assert report.exit_status == EXIT_OK
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    used = {r["node"] for r in report.recordings}
    assert len(alive) == 2 and used == alive, "ingest tasks did not run on both nodes"

    manifest = corpus.read_manifest(out)
    expected_subjects = {pseudonymise(f"node-test-{i}") for i in range(N_RECORDINGS)}
    assert set(manifest["subject"].to_pylist()) == expected_subjects
    # 08:00:00 to 09:59:59.967: 720 windows of 10 s each
    assert manifest["n_windows"].to_pylist() == [SECONDS // 10] * N_RECORDINGS
    for entry in manifest.to_pylist():
        assert corpus.read_day(str(out), entry).num_rows == SECONDS // 10
