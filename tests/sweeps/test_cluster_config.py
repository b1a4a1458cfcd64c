"""`ray_cluster.yaml` validates against Ray's own autoscaler schema (offline, no cloud calls)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "ray_cluster.yaml"


def _validate(cfg: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(cfg))  # fills Ray's defaults; raw YAML alone fails validation
    validate_config(cfg)
    return cfg


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_validates(cluster):
    cfg = _validate(cluster)
    assert cfg["provider"]["type"] == "aws"
    assert cfg["head_node_type"] in cfg["available_node_types"]


def test_gpu_workers_and_head(cluster):
    nodes = cluster["available_node_types"]
    gpu = [n for n in nodes.values() if n["resources"].get("GPU", 0) > 0]
    assert gpu and all(n["max_workers"] >= n["min_workers"] >= 0 for n in gpu)
    assert nodes[cluster["head_node_type"]]["resources"].get("GPU", 0) == 0


def test_setup_installs_project_and_mlflow_server_on_head(cluster):
    setup = " ".join(cluster["setup_commands"])
    assert "pip install" in setup and "-e" in setup
    head = " ".join(cluster["head_setup_commands"] + cluster["head_start_ray_commands"])
    assert "mlflow server" in head
    assert "--backend-store-uri postgresql://mlflow@127.0.0.1:5432/mlflow" in head  # password: ~/.pgpass
    assert "--artifacts-destination ~/mlartifacts" in head  # proxied through the server to every node
    assert "ray start --head" in head
    assert cluster["file_mounts"]["~/htsweep"] == "."  # the checkout every node installs from
    assert "cd ~/htsweep" in setup


def test_launch_command_documented():
    text = CLUSTER_YAML.read_text()
    assert "htsweep run" in text and "--address auto" in text


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda c: c.__setitem__("head_node_type", "nope"), "head_node_type"),
    (lambda c: c["available_node_types"]["gpu_worker"].pop("resources"), "resources"),
    (lambda c: c.pop("provider"), "provider"),
])
def test_broken_configs_are_rejected(cluster, mutate, match):
    bad = copy.deepcopy(cluster)
    mutate(bad)
    with pytest.raises(Exception, match=match):
        _validate(bad)


def _commands(cluster: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for key in keys for c in cluster.get(key) or []]


def test_dashboard_only_on_localhost_and_mlflow_behind_a_login(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0 --autoscaling" not in head
    assert "--dashboard-host=0.0.0.0" not in " ".join(_commands(cluster))
    assert "mlflow server --app-name basic-auth" in head
    assert "MLFLOW_AUTH_CONFIG_PATH=" in head and "MLFLOW_AUTH_ADMIN_PASSWORD=" in head
    setup = " ".join(cluster["setup_commands"])
    assert "~/.mlflow/credentials" in setup and "mlflow_tracking_password" in setup  # what every trial logs in with
    assert '"mlflow[auth]"' in setup
    # The security group Ray creates admits SSH and the group's own members only: no public MLflow rule.
    group = cluster["provider"]["security_group"]
    assert group["GroupName"] and not group.get("IpPermissions")


def test_no_secret_is_ever_on_a_command_line(cluster):
    """Secrets come from files: only the environment or a shell builtin (printf) ever holds them."""
    import re

    uses = 0
    for command in _commands(cluster):
        for match in re.finditer(r"\$\(cat ~/\.htsweep-secrets/(\w+)\)", command):
            uses += 1
            before = command[:match.start()].rstrip().rstrip('"')
            # The shell command the substitution belongs to: after the last |, ||, &&, "; " or "(".
            current = re.split(r"\|\||&&|\||;\s|\(", before)[-1].split()
            assert before.endswith("=") or current[0] == "printf", (match.group(1), command)
    assert uses >= 5
    text = CLUSTER_YAML.read_text()
    assert "postgresql://mlflow:" not in text and "--dashboard-host=0.0.0.0" not in text


def test_workers_join_with_the_heads_ray_auth_token(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    worker = " ".join(cluster["worker_start_ray_commands"])
    token = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$HOME/.htsweep-secrets/ray_auth_token"
    assert f"{token} ray start --head" in head and f"{token} ray start --address" in worker
    assert cluster["file_mounts"]["~/.htsweep-secrets"] == "~/.htsweep-secrets"  # one token, on every node
    assert "export RAY_AUTH_MODE=token" in " ".join(cluster["setup_commands"])  # the driver too
