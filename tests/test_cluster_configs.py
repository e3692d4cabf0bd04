"""Every shipped YAML parses and points at things that exist: job configs load into the config
classes, Kubernetes manifests are well formed and run entrypoints that are in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from skinray.config import load_config

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted(p for d in ("cluster", "jobs/configs", "serve") for p in (REPO / d).rglob("*.yaml"))
K8S = sorted((REPO / "cluster" / "k8s").glob("*.yaml"))
RAY_VERSION = re.search(r'"ray\[[^\]]*\]==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"


def _check_entrypoint(entrypoint: str) -> None:
    args = shlex.split(entrypoint)
    assert args[0] == "python" and (REPO / args[1]).is_file(), f"{args[1]} is not in the repository"
    if "--config" in args:
        load_config(REPO / args[args.index("--config") + 1])


def _containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(node.get("containers", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(doc)
    return found


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_manifests(path):
    for doc in yaml.safe_load_all(path.read_text()):
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"].get("name")
        if doc["kind"] in ("RayCluster", "RayJob", "RayService"):
            spec = doc["spec"].get("rayClusterSpec", doc["spec"]) if doc["kind"] != "RayService" \
                else doc["spec"]["rayClusterConfig"]
            assert spec["rayVersion"] == RAY_VERSION
            containers = _containers(doc)
            assert containers and all(c.get("image") for c in containers)
            for c in containers:
                assert c["resources"]["limits"] and c["resources"]["requests"]
                assert {"name": "RAY_AUTH_MODE", "value": "token"} in c["env"], "token auth stays on"
                assert any(ref.get("secretRef") for ref in c.get("envFrom", [])), "credentials from a Secret"
            gpu_groups = [g for g in spec["workerGroupSpecs"]
                          if "nvidia.com/gpu" in _containers(g)[0]["resources"]["limits"]]
            assert gpu_groups, "a GPU worker group"
            head = spec["headGroupSpec"]
            if head["rayStartParams"].get("dashboard-host") != "127.0.0.1":  # then only in-cluster
                assert head.get("serviceType") == "ClusterIP", "the job server is never exposed publicly"
        if doc["kind"] == "RayJob":
            _check_entrypoint(doc["spec"]["entrypoint"])
        # A RayService's serveConfigV2: tests/test_deployment_options.py (with serve/config.yaml).


def test_aws_cluster_config():
    cfg = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    assert cfg["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert cfg["idle_timeout_minutes"] > 0
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"], "GPU workers scale with the work"
    for node in cfg["available_node_types"].values():
        assert "instance-profile" in node["node_config"]["IamInstanceProfile"]["Arn"]
    assert any("pip install" in c and "skinray" in c for c in cfg["setup_commands"])
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head


def test_dockerfile_uses_the_pinned_ray():
    assert f"FROM rayproject/ray:{RAY_VERSION}-py311-gpu" in (REPO / "cluster" / "Dockerfile").read_text()
