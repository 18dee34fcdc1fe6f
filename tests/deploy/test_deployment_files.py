"""The deployment files, checked offline: no Docker engine, no cluster, no network.

Kubernetes manifests against the Kubernetes schemas (kubernetes-validate bundles them),
compose files against the compose-spec schema (vendored by check-jsonschema), HAProxy's
configuration by ``haproxy -c``, and what the schemas cannot see: probes on the right
paths, one CUDA line, the README's install in the Dockerfile, the same balancer config
everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DOCKER = ROOT / "docker"
KUBERNETES_VERSION = "1.33.0"


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in yaml.safe_load_all(path.read_text())
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for _, d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _compose(*names: str) -> dict[str, Any]:
    """Compose files merged as ``docker compose -f a -f b`` does for the keys used here."""
    merged: dict[str, Any] = {}
    for name in names:
        _merge(merged, yaml.safe_load((DOCKER / name).read_text()))
    return merged


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.mark.parametrize(
    ("name", "document"),
    _manifests(),
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_kubernetes_manifest_is_valid(name: str, document: dict[str, Any]) -> None:
    # strict: unknown fields (a misspelt probe) fail too.
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_the_manifests() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    optional = {"vllm.yaml"}
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == present - optional
    assert all(d["metadata"].get("namespace", "rapport") == "rapport" for _, d in _manifests())


def test_deployment_probes_service_and_autoscaler_fit_together() -> None:
    deployment = _one("Deployment", "rapport")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The replicas never migrate: the Job does, once.
    assert "--no-migrate" in container["command"]
    job = _one("Job", "rapport-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["rapport", "db", "upgrade"]
    assert migrate["image"] == container["image"]
    labels = pod["metadata"]["labels"]
    for service in ("rapport", "rapport-replicas"):
        selector = _one("Service", service)["spec"]["selector"]
        assert selector.items() <= labels.items()
    assert _one("Service", "rapport-replicas")["spec"]["clusterIP"] == "None"
    target = _one("HorizontalPodAutoscaler", "rapport")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "rapport")
    sources = {
        ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
    }
    assert sources == {"rapport"}
    secret = _one("Secret", "rapport")["stringData"]
    assert {"RAPPORT_SECRET_KEY", "RAPPORT_ADMIN_KEY", "RAPPORT_DATABASE_URL"} <= secret.keys()
    # A placeholder left in the Secret stops rapport at start instead of serving with it.
    for name in ("RAPPORT_SECRET_KEY", "RAPPORT_ADMIN_KEY"):
        with pytest.raises(ValidationError, match=name):
            Settings(**{name.removeprefix("RAPPORT_").lower(): secret[name]})
    config = _one("ConfigMap", "rapport")["data"]
    # Secrets stay out of the ConfigMap.
    assert not any("SECRET" in key or "ADMIN_KEY" in key for key in config)
    assert config["RAPPORT_BLOB_STORE"].startswith("s3://")


def test_balancer_config_is_the_same_on_kubernetes_and_compose() -> None:
    shipped = (DOCKER / "haproxy.cfg").read_text()
    assert _one("ConfigMap", "haproxy")["data"]["haproxy.cfg"] == shipped
    (container,) = _one("Deployment", "haproxy")["spec"]["template"]["spec"]["containers"]
    host = {e["name"]: e["value"] for e in container["env"]}["REPLICAS_HOST"]
    assert host.startswith("rapport-replicas.")
    compose = _compose("compose.yaml")["services"]["haproxy"]
    assert compose["environment"]["REPLICAS_HOST"] == "rapport"


def test_balancer_config_hashes_the_user_and_checks_readiness() -> None:
    config = (DOCKER / "haproxy.cfg").read_text()
    assert "path,field(4,/)" in config  # /v1/users/<user_id>/...
    assert re.search(r"^\s*hash-type consistent\b", config, re.M)
    assert re.search(r"^\s*option httpchk GET /readyz$", config, re.M)
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed (.ci/run installs it)")
        pytest.skip("haproxy is not installed")
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(DOCKER / "haproxy.cfg")],
        env=os.environ | {"REPLICAS_HOST": "rapport"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    vendored = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu.yaml"])
def test_compose_file_is_valid(name: str, compose_schema: dict[str, Any]) -> None:
    document = yaml.safe_load((DOCKER / name).read_text())
    validator = jsonschema.validators.validator_for(compose_schema)(compose_schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [d for d in reservations.get("devices", []) if "gpu" in d.get("capabilities", [])]


def test_compose_runs_on_cpu_by_default_and_on_gpu_with_the_override() -> None:
    default = _compose("compose.yaml")["services"]
    wanted = {"postgres", "redis", "seaweedfs", "bucket", "migrate", "rapport", "haproxy", "vllm"}
    assert wanted <= default.keys()
    # Without a profile nothing asks for a GPU: vLLM only runs in its profile.
    needs_gpu = {name for name, s in default.items() if _gpu_devices(s)}
    assert needs_gpu == {"vllm"}
    assert default["vllm"]["profiles"] == ["vllm"]
    assert all("profiles" not in s for name, s in default.items() if name != "vllm")
    assert default["rapport"]["build"]["args"]["VARIANT"] == "cpu"
    gpu = _compose("compose.yaml", "compose.gpu.yaml")["services"]
    assert _gpu_devices(gpu["rapport"])
    assert gpu["rapport"]["build"]["args"]["VARIANT"] == "gpu"
    assert gpu["migrate"]["build"]["args"]["VARIANT"] == "gpu"


def test_compose_replicas_share_state_only_through_the_shared_services() -> None:
    services = _compose("compose.yaml")["services"]
    rapport = services["rapport"]
    env = rapport["environment"]
    assert env["RAPPORT_BLOB_STORE"].startswith("s3://")
    assert env["RAPPORT_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert env["RAPPORT_REDIS_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in env["RAPPORT_DATABASE_URL"]
    # The server secret has no default (every replica must share one, kept for good), and
    # no secret is an empty default: rapport refuses an empty key at start.
    assert env["RAPPORT_SECRET_KEY"].startswith("${RAPPORT_SECRET_KEY:?")
    assert not [name for name, value in env.items() if str(value).endswith(":-}")]
    assert rapport["env_file"] == [{"path": "rapport.env", "required": False}]
    assert env["RAPPORT_GENERATOR_BASE_URL"] == "http://vllm:8000/v1"
    # No photo folder shared between replicas, no host port past the balancer.
    assert not any(str(v).split(":")[1:2] == ["/data"] for v in rapport.get("volumes", []))
    assert "ports" not in rapport
    assert rapport["deploy"]["replicas"]
    assert "--no-migrate" in rapport["command"]
    assert services["migrate"]["command"] == ["rapport", "db", "upgrade"]
    after = rapport["depends_on"]
    assert after["migrate"]["condition"] == "service_completed_successfully"
    assert after["bucket"]["condition"] == "service_completed_successfully"
    assert "s3 mb s3://rapport" in " ".join(services["bucket"]["command"])
    assert env["RAPPORT_BLOB_STORE"].removeprefix("s3://").split("/")[0] == "rapport"


def test_dockerfile_installs_as_the_readme_says() -> None:
    readme = (ROOT / "README.md").read_text()
    (install,) = re.findall(r"^python3 -m venv \.venv && .*$", readme, re.M)
    dockerfile = (ROOT / "Dockerfile").read_text()
    (run,) = re.findall(r"^RUN (python3 -m venv .*?)(?: \\)?$", dockerfile, re.M)
    # The same command; only the torch wheel index of the image's CUDA line and the
    # extra (the build's variant) differ.
    run = re.sub(r"PIP_EXTRA_INDEX_URL=\S+ ", "", run).replace('".[${VARIANT}]"', "'.[cpu]'")
    assert run == install


def test_one_cuda_line_across_image_torch_and_faiss() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (image,) = re.findall(r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.\d+-", dockerfile, re.M)
    (torch,) = re.findall(r"download\.pytorch\.org/whl/cu(\d+)", dockerfile)
    assert torch == "".join(image)
    pyproject = (ROOT / "pyproject.toml").read_text()
    (faiss,) = re.findall(r'^gpu = \["faiss-gpu-cu(\d+)', pyproject, re.M)
    assert faiss == image[0]
    assert re.search(r"^FROM base-\$\{VARIANT\}$", dockerfile, re.M)
    assert re.findall(r"^ARG VARIANT=(\w+)$", dockerfile, re.M) == ["cpu"]


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "rapport-data", ".git", "**/__pycache__", ".pytest_cache"} <= ignored
