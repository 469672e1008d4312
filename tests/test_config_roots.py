"""Every path-valued config key is held within the data and storage roots (wearssl.config.roots).

Each job schema's path keys are tried with values that escape by ``..``, absolute paths
elsewhere, a symlink leading out of a root and an object-store URI of another bucket: all
are refused with a ``ConfigError`` naming the key, the value and the roots; paths inside a
root are accepted. Most tests pass the roots explicitly (``load_config(..., roots=...)``),
so the checkout's location and the machine's temp directory do not matter; the last ones
check the defaults read from the environment and the shipped configs.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from wearssl.ablate.points import AblationTrial
from wearssl.ablate.pretraining import PretrainPlan, trial_pretrain_config
from wearssl.config import ConfigError, load_config
from wearssl.config.ablate import AblateConfig
from wearssl.config.evaluate import EvaluateConfig
from wearssl.config.explain import ExplainConfig
from wearssl.config.pretrain import PretrainConfig
from wearssl.config.roots import ROOTS_ENV, STORAGE_ENV

REPO = Path(__file__).resolve().parents[1]
BUCKET_ROOT = "s3://lab-bucket/wearssl"

MINIMAL: dict[type, dict[str, Any]] = {
    PretrainConfig: {},
    EvaluateConfig: {"datasets": [{"name": "toy", "synthetic": {}}], "arms": ["forest"]},
    AblateConfig: {
        "sweep": {"kind": "labelled_subjects", "values": [1]},
        "evaluation": {
            "datasets": [{"name": "toy", "synthetic": {}}],
            "arms": ["scratch", "finetune"],
            "pretrained": "models:/harnet/1",
        },
    },
    ExplainConfig: {"model": "runs:/0123abcd", "data": {"corpus": {"path": "data/corpus"}}},
}

# (schema, dotted key, document changes that make the key hold the value VALUE)
PATH_KEYS: list[tuple[type, str, dict[str, Any]]] = [
    (PretrainConfig, "corpus", {"corpus": "VALUE"}),
    (PretrainConfig, "synthetic.out", {"synthetic.out": "VALUE"}),
    (PretrainConfig, "runtime.storage_path", {"runtime.storage_path": "VALUE"}),
    (EvaluateConfig, "output_dir", {"output_dir": "VALUE"}),
    (EvaluateConfig, "datasets.0.path", {"datasets": [{"name": "toy", "path": "VALUE"}]}),
    (EvaluateConfig, "transfer_source.path", {"transfer_source": {"name": "s", "path": "VALUE"}}),
    (EvaluateConfig, "pretrained", {"pretrained": "VALUE"}),
    (EvaluateConfig, "resources.storage_path", {"resources.storage_path": "VALUE"}),
    (AblateConfig, "output_dir", {"output_dir": "VALUE"}),
    (AblateConfig, "pretrain.config", {"pretrain.config": "VALUE"}),
    (
        AblateConfig,
        "evaluation.datasets.0.path",
        {"evaluation.datasets": [{"name": "toy", "path": "VALUE"}]},
    ),
    (AblateConfig, "evaluation.pretrained", {"evaluation.pretrained": "VALUE"}),
    (AblateConfig, "resources.storage_path", {"resources.storage_path": "VALUE"}),
    (ExplainConfig, "output_dir", {"output_dir": "VALUE"}),
    (ExplainConfig, "model", {"model": "VALUE"}),
    (ExplainConfig, "data.corpus.path", {"data.corpus.path": "VALUE"}),
    (ExplainConfig, "data.labelled.path", {"data": {"labelled": {"path": "VALUE"}}}),
]
each_path_key = pytest.mark.parametrize(
    ("schema", "key", "changes"),
    PATH_KEYS,
    ids=[f"{schema.__name__}:{key}" for schema, key, _ in PATH_KEYS],
)
SCHEMAS = list(MINIMAL)
each_schema = pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)


def document(schema: type, changes: dict[str, Any], value: str) -> dict[str, Any]:
    """The schema's minimal document with ``changes`` applied, VALUE replaced by ``value``."""
    doc = json.loads(json.dumps(MINIMAL[schema]))
    filled = json.loads(json.dumps(changes).replace('"VALUE"', json.dumps(value)))
    for dotted, item in filled.items():
        node = doc
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = item
    return doc


def load(tmp_path: Path, schema: type, doc: dict[str, Any], roots: list[str] | None):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(schema, path, roots=roots)


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root with a folder inside, a sibling folder outside and a symlink leading there;
    the working directory, as when a job runs from the repo root."""
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    monkeypatch.chdir(root)
    return root


def assert_refused(
    tmp_path: Path, schema: type, key: str, doc: dict[str, Any], value: str, roots: list[str]
) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, schema, doc, roots)
    message = str(info.value)
    assert f"key '{key}'" in message, message
    assert value in message, message
    assert all(root in message for root in roots), message
    return message


@each_path_key
def test_paths_inside_a_root_are_accepted(
    tmp_path: Path, workspace: Path, schema: type, key: str, changes: dict[str, Any]
) -> None:
    roots = [str(workspace), BUCKET_ROOT]
    for value in (
        str(workspace / "inside" / "part.yaml"),
        str(workspace / "not" / "made" / "yet"),
        str(workspace / "inside" / ".." / "inside"),
        f"{BUCKET_ROOT}/corpus",
    ):
        load(tmp_path, schema, document(schema, changes, value), roots)


@each_path_key
def test_relative_paths_inside_the_working_directory_are_accepted(
    tmp_path: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    schema: type,
    key: str,
    changes: dict[str, Any],
) -> None:
    monkeypatch.chdir(workspace)
    load(tmp_path, schema, document(schema, changes, "inside/x"), [str(workspace)])


@each_path_key
@pytest.mark.parametrize("escape", ["inside/../../outside", "../outside", ".."])
def test_dotdot_escapes_are_refused_naming_the_key(
    tmp_path: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    schema: type,
    key: str,
    changes: dict[str, Any],
    escape: str,
) -> None:
    monkeypatch.chdir(workspace)
    roots = [str(workspace)]
    for value in (escape, str(workspace / escape)):
        assert_refused(tmp_path, schema, key, document(schema, changes, value), value, roots)


@each_path_key
@pytest.mark.parametrize("outside", ["/etc", "/", "~/raw", "file:///etc/passwd"])
def test_absolute_paths_outside_are_refused_naming_the_key(
    tmp_path: Path,
    workspace: Path,
    schema: type,
    key: str,
    changes: dict[str, Any],
    outside: str,
) -> None:
    roots = [str(workspace)]
    assert_refused(tmp_path, schema, key, document(schema, changes, outside), outside, roots)


@each_path_key
def test_a_symlink_leading_out_of_a_root_is_refused(
    tmp_path: Path, workspace: Path, schema: type, key: str, changes: dict[str, Any]
) -> None:
    roots = [str(workspace)]
    for value in (str(workspace / "link"), str(workspace / "link" / "x.parquet")):
        assert_refused(tmp_path, schema, key, document(schema, changes, value), value, roots)


@each_path_key
@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/wearssl/x",
        "s3://lab-bucket/elsewhere",
        "s3://lab-bucket/wearssl-private/x",
        "s3://lab-bucket/wearssl/../secrets",
        "gs://lab-bucket/wearssl/x",
    ],
)
def test_uris_of_another_bucket_or_prefix_are_refused(
    tmp_path: Path, workspace: Path, schema: type, key: str, changes: dict[str, Any], uri: str
) -> None:
    roots = [str(workspace), BUCKET_ROOT]
    assert_refused(tmp_path, schema, key, document(schema, changes, uri), uri, roots)


WEIGHTS_KEYS = [case for case in PATH_KEYS if case[1].endswith(("pretrained", "model"))]


@pytest.mark.parametrize(
    ("schema", "key", "changes"),
    WEIGHTS_KEYS,
    ids=[f"{s.__name__}:{k}" for s, k, _ in WEIGHTS_KEYS],
)
@pytest.mark.parametrize("spec", ["models:/harnet/3", "models:/harnet@champion", "runs:/abc123"])
def test_mlflow_references_are_not_paths(
    tmp_path: Path,
    workspace: Path,
    schema: type,
    key: str,
    changes: dict[str, Any],
    spec: str,
) -> None:
    load(tmp_path, schema, document(schema, changes, spec), [str(workspace)])


@each_schema
@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("http://127.0.0.1:5000", True),
        ("https://mlflow.example.org", True),
        ("databricks", True),
        ("sqlite:///:memory:", True),
        ("INSIDE/mlruns", True),
        ("sqlite:///INSIDE/mlflow.db", True),
        ("file://INSIDE/mlruns", True),
        ("sqlite:////etc/mlflow.db", False),
        ("sqlite:///../outside.db", False),
        ("file:///etc/mlruns", False),
        ("/etc/mlruns", False),
        ("LINK/mlflow.db", False),
        ("sqlite:///LINK/mlflow.db", False),
    ],
)
def test_local_tracking_stores_are_held_within_the_roots(
    tmp_path: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    schema: type,
    uri: str,
    allowed: bool,
) -> None:
    monkeypatch.chdir(workspace)
    uri = uri.replace("INSIDE", str(workspace / "inside")).replace("LINK", str(workspace / "link"))
    doc = document(schema, {"tracking.tracking_uri": "VALUE"}, uri)
    roots = [str(workspace)]
    if allowed:
        load(tmp_path, schema, doc, roots)
    else:
        assert_refused(tmp_path, schema, "tracking.tracking_uri", doc, uri, roots)


@each_schema
@pytest.mark.parametrize("name", [".", ".."])
def test_names_that_are_folder_escapes_are_refused(tmp_path: Path, schema: type, name: str) -> None:
    """A job's name is a folder under its output or storage folder: '..' would leave it."""
    with pytest.raises(ConfigError, match="key 'name'"):
        load(tmp_path, schema, {**MINIMAL[schema], "name": name}, None)
    load(tmp_path, schema, {**MINIMAL[schema], "name": "v1..2.final"}, None)


def test_dataset_names_that_are_folder_escapes_are_refused(tmp_path: Path) -> None:
    doc = {"datasets": [{"name": "..", "synthetic": {}}], "arms": ["forest"]}
    with pytest.raises(ConfigError, match=r"key 'datasets\.0\.name'"):
        load(tmp_path, EvaluateConfig, doc, None)


def test_overrides_are_checked_like_the_file(tmp_path: Path, workspace: Path) -> None:
    with pytest.raises(ConfigError, match="key 'runtime.storage_path'.*'/etc'"):
        load_config(PretrainConfig, None, ["runtime.storage_path=/etc"], roots=[str(workspace)])
    cfg = load_config(
        PretrainConfig, None, [f"corpus={workspace / 'inside'}"], roots=[str(workspace)]
    )
    assert cfg.corpus == str(workspace / "inside")


def test_assigning_a_path_outside_is_refused(workspace: Path) -> None:
    cfg = load_config(PretrainConfig, None)
    with pytest.raises(ValidationError, match="outside the allowed data and storage roots"):
        cfg.runtime.storage_path = "/etc"
    assert cfg.runtime.storage_path == "runs"


# ---------------------------------------------------------------- roots from the environment


def test_default_roots_are_the_working_and_temp_directories(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.chdir(workspace)
    cfg = load_config(PretrainConfig, None, ["corpus=inside", f"synthetic.out={tmp_path}/x"])
    assert cfg.corpus == "inside"
    with pytest.raises(ConfigError, match="key 'corpus'.*WEARSSL_DATA_ROOTS"):
        load_config(PretrainConfig, None, ["corpus=/etc"])
    with pytest.raises(ConfigError, match="key 'corpus'"):
        load_config(PretrainConfig, None, ["corpus=s3://your-bucket/corpus"])


def test_roots_are_added_by_the_environment(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace / "inside")
    monkeypatch.setenv(ROOTS_ENV, f"{workspace / 'link'}{os.pathsep}gs://lab-runs")
    monkeypatch.setenv(STORAGE_ENV, BUCKET_ROOT)
    load_config(
        PretrainConfig,
        None,
        [
            f"corpus={workspace / 'link' / 'corpus'}",
            f"runtime.storage_path={BUCKET_ROOT}/runs",
            "synthetic.out=gs://lab-runs/synthetic",
        ],
    )
    with pytest.raises(ConfigError, match="key 'runtime.storage_path'"):
        load_config(PretrainConfig, None, ["runtime.storage_path=s3://lab-bucket/other"])


CONFIG_SCHEMAS = {
    "pretrain": PretrainConfig,
    "evaluate": EvaluateConfig,
    "ablate": AblateConfig,
    "explain": ExplainConfig,
}
SHIPPED = sorted((REPO / "configs").glob("*/*.yaml"))


def test_every_shipped_config_folder_has_a_schema() -> None:
    assert {path.parent.name for path in SHIPPED} <= set(CONFIG_SCHEMAS)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_validate_with_the_clusters_storage_root(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the repo root, with WEARSSL_STORAGE as cluster.yaml exports it (conftest)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(STORAGE_ENV, "s3://your-bucket")
    load_config(CONFIG_SCHEMAS[path.parent.name], path)


def test_the_paper_config_needs_its_bucket_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    with pytest.raises(ConfigError, match="key 'corpus': .*'s3://your-bucket/ukb-corpus'"):
        load_config(PretrainConfig, REPO / "configs" / "pretrain" / "paper.yaml")
    monkeypatch.setenv(ROOTS_ENV, "s3://your-bucket")
    load_config(PretrainConfig, REPO / "configs" / "pretrain" / "paper.yaml")


def test_ablation_trials_check_against_the_drivers_roots(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial runs in Tune's trial folder, maybe on another node whose environment lacks
    the driver's roots: the roots the driver put in the trial context decide."""
    monkeypatch.chdir(workspace)
    base = load_config(PretrainConfig, None, ["corpus=inside/corpus"])
    trial_folder = tmp_path / "trial-folder"
    trial_folder.mkdir()
    monkeypatch.chdir(trial_folder)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    spec = AblationTrial(
        key="subjects=4",
        stem="s4",
        role="point",
        point={"unlabelled_subjects": 4},
        seed=0,
        arms=("finetune",),
        pretrain={"subset.subjects": 4},
        training_subjects=None,
    )
    plan = PretrainPlan(
        base,
        experiment="mini-0123456789",
        storage=f"{BUCKET_ROOT}/runs/pretrain",
        roots=(str(workspace), BUCKET_ROOT),
    )
    cfg = trial_pretrain_config(plan, spec)
    assert cfg.runtime.storage_path == f"{BUCKET_ROOT}/runs/pretrain"
    assert cfg.subset.subjects == 4
    for outside in ("/etc", "s3://other-bucket/runs"):
        with pytest.raises(ConfigError, match="trial subjects=4: key 'runtime.storage_path'"):
            trial_pretrain_config(replace(plan, storage=outside), spec)
