"""Config values pointing outside the data and storage roots are refused, naming the key."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from wearssl.config.roots import (
    ROOTS_ENV,
    STORAGE_ENV,
    check_within_roots,
    default_roots,
    split_roots,
    within_roots,
)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True)
    return data


def refused(key: str, value: str, roots: list[str]) -> str:
    with pytest.raises(ValueError) as info:
        check_within_roots(key, value, roots)
    message = str(info.value)
    assert key in message and value in message
    return message


@pytest.mark.parametrize("inside", ["corpus", "corpus/part-0.parquet", "new/not/yet/made", "."])
def test_paths_inside_the_root_are_accepted(root: Path, inside: str) -> None:
    check_within_roots("corpus", str(root / inside), [str(root)])


def test_relative_paths_resolve_against_the_working_directory(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    check_within_roots("corpus", "corpus", [str(root)])
    refused("corpus", "../elsewhere", [str(root)])


@pytest.mark.parametrize("escape", ["../outside", "corpus/../../outside", "corpus/../.."])
def test_dotdot_escapes_are_refused(root: Path, escape: str) -> None:
    refused("corpus", str(root / escape), [str(root)])


@pytest.mark.parametrize("outside", ["/etc/passwd", "/", "/usr/lib"])
def test_absolute_paths_outside_are_refused(root: Path, outside: str) -> None:
    refused("runtime.storage_path", outside, [str(root)])


def test_a_sibling_sharing_the_root_prefix_is_outside(root: Path) -> None:
    sibling = root.parent / (root.name + "-private")
    sibling.mkdir()
    refused("corpus", str(sibling), [str(root)])


def test_a_symlink_leading_out_of_the_root_is_refused(root: Path) -> None:
    secret = root.parent / "secret"
    secret.mkdir()
    (root / "link").symlink_to(secret, target_is_directory=True)
    refused("corpus", str(root / "link"), [str(root)])
    refused("corpus", str(root / "link" / "file.parquet"), [str(root)])


def test_a_symlink_staying_inside_the_root_is_accepted(root: Path) -> None:
    (root / "alias").symlink_to(root / "corpus", target_is_directory=True)
    check_within_roots("corpus", str(root / "alias" / "x.parquet"), [str(root)])


def test_a_symlink_loop_is_refused_clearly(root: Path) -> None:
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    message = refused("corpus", str(root / "a"), [str(root)])
    assert "corpus" in message


def test_home_relative_paths_are_expanded_before_the_check(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(root.parent / "home"))
    monkeypatch.chdir(root)
    refused("corpus", "~/raw", [str(root)])


def test_file_uris_are_checked_as_local_paths(root: Path) -> None:
    check_within_roots("corpus", (root / "corpus").as_uri(), [str(root)])
    refused("corpus", "file:///etc", [str(root)])


S3_ROOTS = ["s3://lab-bucket/wearssl", "gs://lab-runs"]


@pytest.mark.parametrize(
    "uri",
    [
        "s3://lab-bucket/wearssl",
        "s3://lab-bucket/wearssl/corpus/part-0.parquet",
        "S3://lab-bucket/wearssl/runs",
        "gs://lab-runs/pretrain/ckpt",
    ],
)
def test_uris_under_a_configured_prefix_are_accepted(uri: str) -> None:
    check_within_roots("runtime.storage_path", uri, S3_ROOTS)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://lab-bucket/other",
        "s3://lab-bucket/wearssl-private/x",
        "s3://lab-bucket/wearssl/../secrets",
        "s3://other-bucket/wearssl",
        "gs://lab-bucket/wearssl",
        "gs://lab-runs-evil/x",
        "hdfs://namenode/wearssl",
    ],
)
def test_uris_outside_the_configured_prefixes_are_refused(uri: str) -> None:
    refused("runtime.storage_path", uri, S3_ROOTS)


def test_uris_are_refused_when_only_local_roots_are_configured(root: Path) -> None:
    refused("corpus", "s3://lab-bucket/wearssl", [str(root)])


def test_local_paths_do_not_match_uri_roots(root: Path) -> None:
    assert not within_roots(str(root), S3_ROOTS)


@pytest.mark.parametrize("bad", ["", "   ", "a\0b"])
def test_unusable_values_are_refused_naming_the_key(root: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="'corpus'"):
        check_within_roots("corpus", bad, [str(root)])


def test_split_roots_keeps_uris_whole() -> None:
    sep = os.pathsep
    text = f"s3://bucket/a{sep}/data/raw{sep}{sep}gs://b{sep} /mnt/x "
    assert split_roots(text) == ["s3://bucket/a", "/data/raw", "gs://b", "/mnt/x"]


def test_default_roots_hold_cwd_tmp_storage_and_configured_roots(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    env = {STORAGE_ENV: "s3://lab-bucket/wearssl", ROOTS_ENV: f"/data/ukb{os.pathsep}gs://lab-runs"}
    roots = default_roots(env)
    assert roots == [
        str(root),
        tempfile.gettempdir(),
        "s3://lab-bucket/wearssl",
        "/data/ukb",
        "gs://lab-runs",
    ]
    check_within_roots("corpus", "s3://lab-bucket/wearssl/corpus", roots)
    refused("corpus", "s3://lab-bucket/elsewhere", roots)


def test_default_roots_have_no_object_store_prefix_unless_configured(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    roots = default_roots({})
    check_within_roots("corpus", str(root / "corpus"), roots)
    check_within_roots("corpus", os.path.join(tempfile.gettempdir(), "wearssl-test"), roots)
    refused("corpus", "s3://any-bucket/x", roots)
