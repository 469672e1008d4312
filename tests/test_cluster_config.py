"""cluster.yaml passes Ray's own cluster-config validation and keeps the security defaults."""

from __future__ import annotations

import copy
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster.yaml"
OWN_FILES = [CLUSTER, REPO / "docs" / "cluster.md", REPO / "scripts" / "mlflow-server.sh"]

GPUS_PER_INSTANCE = {
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    "g6.12xlarge": 4,
    "g6e.12xlarge": 4,
    "p4d.24xlarge": 8,
    "p5.48xlarge": 8,
}
ACCELERATED_FAMILIES = ("g", "p", "inf", "trn", "dl")

SECRET_PATTERNS = {
    "AWS access key id": r"\bA(?:KI|SI)A[0-9A-Z]{16}\b",
    "AWS credential setting": r"(?i)aws_(?:secret_access_key|access_key_id|session_token)",
    "credential assignment": r"(?i)\b(?:password|passwd|secret|api[_-]?key|token)\b\s*[:=]\s*\S+",
    "credentials inside a URI": r"://[^/\s:@]+:[^/\s@]+@",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "Ray token in the environment": r"RAY_AUTH_TOKEN\s*=",
    "long random-looking string": (
        r"(?=[A-Za-z0-9+/=]*[A-Z])(?=[A-Za-z0-9+/=]*[a-z])(?=[A-Za-z0-9+/=]*[0-9])"
        r"[A-Za-z0-9+/=]{32,}"
    ),
}


def load_cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` checks before it touches the cloud: defaults filled in, then validated."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def secrets_in(text: str) -> list[str]:
    return [
        f"{name}: {match.group(0)!r}"
        for name, pattern in SECRET_PATTERNS.items()
        for match in re.finditer(pattern, text)
    ]


def all_commands(config: dict[str, Any]) -> list[str]:
    keys = ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return [command for key in keys for command in config[key]]


def test_cluster_yaml_passes_rays_validation() -> None:
    prepared = ray_validate(load_cluster())
    assert prepared["head_node_type"] == "head"
    assert set(prepared["available_node_types"]) == {"head", "gpu_worker", "cpu_worker"}
    assert prepared["available_node_types"]["head"]["max_workers"] == 0


def test_an_unknown_top_level_key_fails_validation() -> None:
    broken = load_cluster()
    broken["worker_nodez"] = {"InstanceType": "m6i.large"}
    with pytest.raises(jsonschema.ValidationError, match="worker_nodez"):
        ray_validate(broken)


def test_a_missing_provider_fails_validation() -> None:
    broken = load_cluster()
    del broken["provider"]
    with pytest.raises(jsonschema.ValidationError, match="'provider' is a required property"):
        validate_config(broken)
    with pytest.raises(KeyError, match="provider"):
        ray_validate(broken)


def test_an_unknown_node_type_field_fails_validation() -> None:
    broken = load_cluster()
    broken["available_node_types"]["gpu_worker"]["gpus"] = 4
    with pytest.raises(jsonschema.ValidationError, match="gpus"):
        ray_validate(broken)


def test_a_head_type_that_is_not_a_node_type_fails_validation() -> None:
    broken = load_cluster()
    broken["head_node_type"] = "ray.head.default"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_validate(broken)


def test_min_workers_beyond_the_global_maximum_fail_validation() -> None:
    broken = load_cluster()
    for node_type in ("gpu_worker", "cpu_worker"):
        broken["available_node_types"][node_type]["min_workers"] = broken["max_workers"]
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(broken)


def instance_type(config: dict[str, Any], node_type: str) -> str:
    return config["available_node_types"][node_type]["node_config"]["InstanceType"]


def is_accelerated(instance: str) -> bool:
    """GPU / accelerator families: g5, p4d, inf2, trn1, dl1 (the letters before the generation)."""
    return re.match(r"[a-z]+", instance).group(0) in ACCELERATED_FAMILIES


def test_the_head_and_ingest_workers_are_cpu_nodes_and_training_workers_multi_gpu() -> None:
    config = load_cluster()
    assert not is_accelerated(instance_type(config, "head"))
    assert not is_accelerated(instance_type(config, "cpu_worker"))
    assert GPUS_PER_INSTANCE.get(instance_type(config, "gpu_worker"), 0) >= 4


@pytest.mark.parametrize("node_type", ["gpu_worker", "cpu_worker"])
def test_worker_types_autoscale_from_zero(node_type: str) -> None:
    spec = load_cluster()["available_node_types"][node_type]
    assert spec["min_workers"] == 0 < spec["max_workers"]


def test_every_node_runs_under_a_named_instance_profile() -> None:
    for name, spec in load_cluster()["available_node_types"].items():
        profile = spec["node_config"].get("IamInstanceProfile", {})
        assert set(profile) == {"Name"}, f"{name} must name its instance profile"


def test_every_node_starts_ray_with_token_auth() -> None:
    config = load_cluster()
    env_file = config["setup_commands"][0]
    assert "~/wearssl.env" in env_file and "'export RAY_AUTH_MODE=token'" in env_file
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert start.index("source ~/wearssl.env") < start.index("ray start")
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_MODE=disabled" not in CLUSTER.read_text()


def test_every_node_gets_the_pseudonymisation_key_from_outside_the_repo() -> None:
    mounts = load_cluster()["file_mounts"]
    assert mounts["/home/ubuntu/.config/wearssl/pseudonym.key"] == "~/.config/wearssl/pseudonym.key"


def test_the_dashboard_listens_on_loopback() -> None:
    config = load_cluster()
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in CLUSTER.read_text()


def test_the_head_runs_mlflow_with_a_database_and_artifacts_proxied_to_shared_storage() -> None:
    config = load_cluster()
    server = next(c for c in config["head_start_ray_commands"] if "mlflow-server.sh 5000" in c)
    assert "MLFLOW_ARTIFACTS_DESTINATION=$WEARSSL_STORAGE/" in server
    assert "MLFLOW_SERVER_ALLOWED_HOSTS=" in server
    assert "MLFLOW_BACKEND_STORE_URI" not in server, "the database URI holds a password"
    mounted = config["file_mounts"]["/home/ubuntu/wearssl/scripts"]
    assert (REPO / mounted / "mlflow-server.sh").is_file()
    worker_start = next(c for c in config["worker_start_ray_commands"] if "ray start" in c)
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in worker_start


def test_local_file_mounts_exist_in_the_repo() -> None:
    for local in load_cluster()["file_mounts"].values():
        if not local.startswith("~"):
            assert (REPO / local).exists(), local


def test_setup_pins_torch_first_then_ray_and_wearssl_at_the_repos_versions() -> None:
    commands = load_cluster()["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if "torch==" in c)
    wearssl_at = next(i for i, c in enumerate(commands) if "wearssl-" in c and ".whl" in c)
    assert torch_at < wearssl_at
    torch_pin = re.search(r"torch==([\w.]+)", commands[torch_at]).group(1)
    assert torch_pin == version("torch").split("+")[0]
    assert f"wearssl-{version('wearssl')}-py3-none-any.whl" in commands[wearssl_at]
    assert f"ray[default,data,train,tune]=={version('ray')}" in commands[wearssl_at]


def test_storage_is_an_object_store_uri_from_the_environment_file() -> None:
    env_file = load_cluster()["setup_commands"][0]
    storage = re.search(r"export WEARSSL_STORAGE=(\S+?)'", env_file).group(1)
    assert storage.startswith("s3://")
    assert all("$WEARSSL_STORAGE" in c for c in all_commands(load_cluster()) if "s3 cp" in c)


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: p.name)
def test_no_secret_values_in_the_cluster_files(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    assert secrets_in(path.read_text()) == []


@pytest.mark.parametrize(
    "line",
    [
        "aws_secret_access_key: wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
        "  - export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "password: hunter2",
        # split, so that the repository's own secret scan (test_no_leaks) sees no credential
        "MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:" + "s3cr3t@db.internal:5432/mlflow",
        "RAY_AUTH_TOKEN=4f9c2a1b",
        "token: abc",
        "-----BEGIN RSA PRIVATE KEY-----",
        "key: Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZmdo",
    ],
)
def test_the_secret_scan_finds_planted_secrets(line: str) -> None:
    clean = CLUSTER.read_text()
    assert len(secrets_in(clean + f"\n# {line}\n")) > len(secrets_in(clean))
