"""The Serve deployment options are declared once, in skinray.serving: DEPLOYMENT (what the
decorator applies) and GPU_DEPLOYMENT (the GPU replicas of cluster/k8s/rayservice.yaml). The two
Serve configs carry only what differs, and run with exactly those options under Ray 2.60's rule
(serve/_private/application_state.py, override_deployment_info): each key of a config's
`deployments:` entry replaces the code's whole value, an absent key keeps the code's. Each
application's args load into AppArgs. Nothing here starts Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import DeploymentSchema, ServeDeploySchema

from skinray.serving import DEPLOYMENT, GPU_DEPLOYMENT, AppArgs, EnhanceService

REPO = Path(__file__).resolve().parents[1]
RAYSERVICE = REPO / "cluster" / "k8s" / "rayservice.yaml"
# config file -> the options its replicas must run with
EXPECTED = {"serve/config.yaml": DEPLOYMENT, "cluster/k8s/rayservice.yaml": GPU_DEPLOYMENT}


def _rayservice() -> dict:
    (doc,) = [d for d in yaml.safe_load_all(RAYSERVICE.read_text()) if d["kind"] == "RayService"]
    return doc


def _serve_config(name: str) -> dict:
    if name == "cluster/k8s/rayservice.yaml":
        return yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    return yaml.safe_load((REPO / name).read_text())


def _effective(app: dict) -> dict:
    """The options Serve runs EnhanceService with under this application's config."""
    entries = app.get("deployments", [])
    names = [entry["name"] for entry in entries]
    assert names in ([], ["EnhanceService"]), f"deployments {names}: the application has EnhanceService only"
    overrides = {key: value for entry in entries for key, value in entry.items() if key != "name"}
    unknown = set(overrides) - set(DeploymentSchema.model_fields)
    assert not unknown, f"{sorted(unknown)}: not Serve deployment options (Ray ignores them silently)"
    return {**DEPLOYMENT, **overrides}


@pytest.mark.parametrize("name", EXPECTED)
def test_config_runs_the_options_declared_in_code(name):
    cfg = _serve_config(name)
    ServeDeploySchema.model_validate(cfg)  # Ray's own schema of a Serve config
    for app in cfg["applications"]:
        assert _effective(app) == EXPECTED[name], f"{name}: see DEPLOYMENT in skinray/serving.py"


@pytest.mark.parametrize("name", EXPECTED)
def test_config_args_load_into_the_app_arguments(name):
    """The import path is the repository's builder, the args are AppArgs, and the options suit
    them: requests finish before a replica is stopped, and a batch can fill."""
    for app in _serve_config(name)["applications"]:
        module, _, attr = app["import_path"].partition(":")
        assert (REPO / (module.replace(".", "/") + ".py")).is_file() and attr == "build"
        args = AppArgs.model_validate(app["args"])
        options = _effective(app)
        assert options["graceful_shutdown_timeout_s"] >= args.request_timeout_s
        assert (args.max_batch_size or 8) <= options["max_ongoing_requests"]
        # Slots for bodies still arriving (issue 23): the replica's own admission (working and
        # waiting places) takes a small share of Serve's slots, and 200 slow clients fit beside it.
        admitted = args.max_working_requests + args.max_waiting_requests
        assert admitted + 200 <= options["max_ongoing_requests"], (admitted, options["max_ongoing_requests"])
        autoscaling = options["autoscaling_config"]
        assert autoscaling["min_replicas"] <= autoscaling["max_replicas"]


def test_local_config_listens_on_loopback():
    assert _serve_config("serve/config.yaml")["http_options"]["host"] == "127.0.0.1"


def test_gpu_replicas_fit_the_gpu_worker_group():
    """Every replica GPU_DEPLOYMENT may start has a pod of the RayService's GPU group to run on."""
    (group,) = [g for g in _rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
                if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    pod_gpus, pod_cpus = int(limits["nvidia.com/gpu"]), float(limits["cpu"])
    actor = GPU_DEPLOYMENT["ray_actor_options"]
    per_pod = min(pod_gpus // actor["num_gpus"], pod_cpus // actor["num_cpus"])
    assert per_pod >= 1, f"a replica ({actor}) does not fit a pod ({limits})"
    assert GPU_DEPLOYMENT["autoscaling_config"]["max_replicas"] <= per_pod * group["maxReplicas"]


def test_the_decorator_applies_DEPLOYMENT():
    config = EnhanceService._deployment_config
    for key, value in DEPLOYMENT.items():
        if key == "ray_actor_options":
            assert EnhanceService.ray_actor_options == value
        elif isinstance(value, dict):
            assert getattr(config, key).model_dump(include=set(value)) == value, key
        else:
            assert getattr(config, key) == value, key
