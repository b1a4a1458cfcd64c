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
    assert "--backend-store-uri \"postgresql://" in head
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
