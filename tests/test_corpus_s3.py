"""The corpus and the streaming sampler on S3: a real S3-compatible HTTP server (moto) on
127.0.0.1, reached through pyarrow's S3 filesystem from plain ``s3://`` URIs.

pyarrow takes the endpoint from ``AWS_ENDPOINT_URL`` and the credentials and region from
the usual AWS variables, as on a cluster. Ray workers see environment variables only
from when Ray starts, so the Ray Data test starts its own Ray with them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pyarrow.fs as pafs
import pytest
import ray
from moto.server import ThreadedMotoServer

from conftest import LOCAL_RAY_CPUS
from wearssl.data import corpus
from wearssl.data import sampler as epochs
from wearssl.data.synthetic import write_synthetic_corpus

BUCKET = "wearssl-test"
S3_ROOT = f"s3://{BUCKET}/corpus"
WINDOWS_PER_SUBJECT = 4


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free port holding an empty bucket; the AWS variables that point
    pyarrow at it are set while this module runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}?allow_bucket_creation=true")
        fs.create_dir(BUCKET)
        yield env
    server.stop()


@pytest.fixture(scope="module")
def s3_corpus(s3_env: dict[str, str], synthetic_corpus: str) -> str:
    """The session's local synthetic corpus, written to S3 by the corpus module's writers;
    the manifest is built from the entries ``write_day`` returns."""
    entries = [
        corpus.write_day(S3_ROOT, corpus.read_day(synthetic_corpus, entry), entry["recording"])
        for entry in corpus.read_manifest(synthetic_corpus).to_pylist()
    ]
    corpus.write_manifest(S3_ROOT, corpus.manifest_table(entries))
    corpus.write_info(S3_ROOT, corpus.read_info(synthetic_corpus))
    return S3_ROOT


def test_manifest_info_and_days_read_back_from_s3(s3_corpus: str, synthetic_corpus: str) -> None:
    fs, root = corpus.resolve(s3_corpus)
    assert isinstance(fs, pafs.S3FileSystem)
    local = corpus.read_manifest(synthetic_corpus)
    assert corpus.read_manifest(s3_corpus).equals(local)
    assert corpus.read_info(s3_corpus) == corpus.read_info(synthetic_corpus)
    for entry in local.to_pylist():
        assert corpus.read_day(s3_corpus, entry).equals(corpus.read_day(synthetic_corpus, entry))
    # every object is in the bucket, and the atomic writes left no temporary one behind
    stored = {
        info.path.removeprefix(f"{root}/")
        for info in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if info.type == pafs.FileType.File
    }
    assert stored == {corpus.MANIFEST_NAME, corpus.INFO_NAME, *local["file"].to_pylist()}


def test_draw_windows_from_s3_equal_the_local_draw(s3_corpus: str, synthetic_corpus: str) -> None:
    days = epochs.subject_days(corpus.read_manifest(s3_corpus), "train")
    assert len(days) >= 2
    for item in epochs.epoch_plan(days, seed=3, epoch=1):
        drawn = epochs.draw_windows(s3_corpus, item, WINDOWS_PER_SUBJECT, weighted=True)
        assert drawn.shape == (WINDOWS_PER_SUBJECT, corpus.CHANNELS, corpus.WINDOW_SAMPLES)
        local = epochs.draw_windows(synthetic_corpus, item, WINDOWS_PER_SUBJECT, weighted=True)
        np.testing.assert_array_equal(drawn, local, strict=True)
    test_days = epochs.subject_days(corpus.read_manifest(s3_corpus), "test")
    heldout = epochs.heldout_windows(s3_corpus, test_days, 10, WINDOWS_PER_SUBJECT, seed=3)
    assert len(heldout) == WINDOWS_PER_SUBJECT * len(test_days) > 0
    np.testing.assert_array_equal(
        heldout,
        epochs.heldout_windows(synthetic_corpus, test_days, 10, WINDOWS_PER_SUBJECT, seed=3),
        strict=True,
    )


@pytest.fixture
def ray_s3(s3_env: dict[str, str]) -> Iterator[None]:
    """A local Ray whose workers see the S3 endpoint. A Ray already started by an earlier
    test never saw it, so it is shut down first; later tests' ``ray_local`` starts a plain
    one again (as after the multi-node tests)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=LOCAL_RAY_CPUS,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": s3_env},
    )
    yield
    ray.shutdown()


@pytest.mark.slow
def test_epoch_dataset_over_s3_yields_the_local_windows(
    ray_s3: None, s3_corpus: str, synthetic_corpus: str
) -> None:
    plan = epochs.epoch_plan(
        epochs.subject_days(corpus.read_manifest(synthetic_corpus), "train"), seed=3, epoch=0
    )

    def windows(root: str) -> list[bytes]:
        dataset = epochs.epoch_dataset(root, plan, WINDOWS_PER_SUBJECT, weighted=True)
        return sorted(row["window"].tobytes() for row in dataset.take_all())

    from_s3 = windows(s3_corpus)
    assert len(from_s3) == WINDOWS_PER_SUBJECT * len(plan) > 0
    assert from_s3 == windows(synthetic_corpus)


def test_write_synthetic_corpus_to_an_s3_uri(
    s3_env: dict[str, str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a day file written locally by mistake would land here
    uri = f"s3://{BUCKET}/synthetic"
    manifest = write_synthetic_corpus(uri, 2, 1, seed=0, workers=1, progress=False)
    for entry in manifest.to_pylist():
        assert corpus.read_day(uri, entry).num_rows == entry["n_windows"]
