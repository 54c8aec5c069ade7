"""The deployment files, checked without Docker or a cluster: linters, schemas and the facts
that tie them together (ports, probe paths, labels, limits, drain times)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NGINX = ROOT / "deploy" / "nginx"
DEFAULTS = Settings()


def venv_tool(name: str) -> str:
    """A console script of the test environment (installed by `scripts/setup test`)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing next to {sys.executable}: run scripts/setup test"
    return str(path)


def run_tool(*args: str) -> None:
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def assert_setting_exists(key: str) -> None:
    """``LOSS_SERVICE_ENGINE__DEVICE`` names Settings().engine.device, and so on."""
    assert key.startswith("LOSS_SERVICE_"), key
    model = Settings
    for part in key.removeprefix("LOSS_SERVICE_").lower().split("__"):
        assert part in getattr(model, "model_fields", {}), f"{key}: no setting '{part}'"
        model = model.model_fields[part].annotation
    assert model is not None


def durations(text: str) -> float:
    """'70s', '1m10s' -> seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint():
    run_tool(venv_tool("hadolint"), "Dockerfile")


def test_dockerfile_hadolint_ignores_are_justified():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: an ignored hadolint rule needs a comment above it that says why"
            )


def test_dockerfile_runtime_facts():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(stages) >= 2, "multi-stage: a builder and a runtime"
    runtime = text[text.rindex("\nFROM ") :]
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert re.search(r"^USER\s+(?!0\b|root\b)\S+", runtime, re.M), "the runtime runs as a non-root user"
    assert "LOSS_SERVICE_HOST=0.0.0.0" in runtime
    assert re.search(r'^ENTRYPOINT \["python", "-m", "service"\]$', runtime, re.M)
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", runtime, re.M | re.S)
    assert healthcheck and "/readyz" in healthcheck.group(1) and "urllib" in healthcheck.group(1)
    assert "ARG TORCH_VARIANT=cpu" in text
    assert "https://download.pytorch.org/whl/cpu" in text


def test_dockerignore_keeps_only_the_build_inputs():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M))
    needed = {name.rstrip("/") for group in copied for name in group.split()}
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert needed <= allowed, f"COPY needs {needed - allowed}, which .dockerignore leaves out"


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(ROOT / "docker-compose.yml")


def test_compose_matches_the_compose_spec():
    run_tool(venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")


def test_compose_replicas_and_drain(compose):
    svc = compose["services"]["loss-service"]
    assert svc["deploy"]["replicas"] == 3
    assert "ports" not in svc and "container_name" not in svc, "scalable: nothing that must be unique"
    assert svc["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert durations(svc["stop_grace_period"]) > DEFAULTS.engine.request_timeout_s
    for key in svc["environment"]:
        if key.startswith("LOSS_SERVICE_"):
            assert_setting_exists(key)


def test_compose_gpu_profile(compose):
    gpu = compose["services"]["loss-service-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cuda"
    assert gpu["environment"]["LOSS_SERVICE_ENGINE__DEVICE"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_compose_nginx_uses_the_shared_files(compose):
    nginx = compose["services"]["nginx"]
    assert nginx["depends_on"]["loss-service"]["condition"] == "service_healthy"
    assert "8080:8080" in nginx["ports"]
    mounts = {m.split(":")[0] for m in nginx["volumes"]}
    assert mounts == {"./deploy/nginx/loss-service.conf", "./deploy/nginx/upstream.compose.conf"}
    (server,) = [compose["configs"][c["source"]]["content"] for c in nginx["configs"]]
    assert re.search(r"^\s*listen 8080;", server, re.M)
    assert "include /etc/nginx/loss-service.conf;" in server


def test_compose_monitoring_profile(compose):
    prom = compose["services"]["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    config = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "loss-service"]
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A" and sd["names"] == ["loss-service"] and sd["port"] == DEFAULTS.port
    assert job.get("metrics_path", "/metrics") == "/metrics"


# --------------------------------------------------------------------------- nginx


def nginx_directives(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_nginx_server_config():
    lines = nginx_directives((NGINX / "loss-service.conf").read_text())
    assert not any(line.startswith(("listen", "server {", "upstream", "http")) for line in lines), (
        "loss-service.conf holds a server's directives only: the includer provides listen and upstream"
    )
    assert f"client_max_body_size {DEFAULTS.limits.max_body_bytes // 2**20}m;" in lines
    assert "proxy_pass http://loss_service;" in lines
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in lines
    tries = [line for line in lines if line.startswith("proxy_next_upstream_tries ")]
    assert tries and 1 < int(tries[0].split()[1].rstrip(";")) <= 5
    assert "location = /nginx-health {" in lines
    assert any(line.startswith("proxy_set_header X-Request-ID ") for line in lines)


def test_nginx_compose_upstream():
    text = " ".join(nginx_directives((NGINX / "upstream.compose.conf").read_text()))
    assert text.startswith("upstream loss_service {")
    assert re.search(rf"server loss-service:{DEFAULTS.port}\b[^;]*max_fails=1", text)
    assert "keepalive" in text


# --------------------------------------------------------------------------- kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        (doc,) = list(yaml.safe_load_all(path.read_text()))
        docs[path.stem] = doc
    return docs


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict) -> dict:
    (c,) = pod_spec(deployment)["containers"]
    return c


def test_k8s_every_manifest_parses_and_is_namespace_less(k8s):
    assert set(k8s) == {
        "configmap", "secret.example", "deployment", "deployment-gpu", "service", "hpa", "pdb", "kustomization",
    }  # fmt: skip
    for name, doc in k8s.items():
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert "namespace" not in doc.get("metadata", {}), f"{name}: namespace-less"


def test_k8s_kustomization_lists_existing_files(k8s):
    resources = k8s["kustomization"]["resources"]
    assert all((K8S / r).is_file() for r in resources)
    assert "secret.example.yaml" not in resources, "placeholder keys must never be applied"


def test_k8s_configmap_holds_real_settings(k8s, monkeypatch):
    data = k8s["configmap"]["data"]
    for key, value in data.items():
        assert_setting_exists(key)
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.limits.max_body_bytes == DEFAULTS.limits.max_body_bytes
    assert_setting_exists(*k8s["secret.example"]["stringData"])


@pytest.mark.parametrize("name", ["deployment", "deployment-gpu"])
def test_k8s_deployment_probes_ports_and_drain(k8s, name, monkeypatch):
    dep = k8s[name]
    c = container(dep)
    for key, value in k8s["configmap"]["data"].items():
        monkeypatch.setenv(key, value)
    for item in c.get("env", []):
        assert_setting_exists(item["name"])
        monkeypatch.setenv(item["name"], item["value"])
    settings = Settings()

    (port,) = c["ports"]
    assert port["containerPort"] == settings.port
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])

    refs = {next(iter(r)): r[next(iter(r))]["name"] for r in c["envFrom"]}
    assert refs == {
        "configMapRef": k8s["configmap"]["metadata"]["name"],
        "secretRef": k8s["secret.example"]["metadata"]["name"],
    }

    assert c["resources"]["requests"] and c["resources"]["limits"]
    spec = pod_spec(dep)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False

    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(sleep[1]) + settings.engine.request_timeout_s

    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_gpu_deployment(k8s):
    c = container(k8s["deployment-gpu"])
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "LOSS_SERVICE_ENGINE__DEVICE", "value": "cuda"} in c["env"]
    assert c["image"].endswith("-cuda")
    cpu, gpu = (k8s[n]["spec"]["selector"]["matchLabels"] for n in ("deployment", "deployment-gpu"))
    assert cpu != gpu, "two Deployments must not select each other's pods"


def test_k8s_service_hpa_pdb_select_the_deployment(k8s):
    dep = k8s["deployment"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = k8s["service"]["spec"]
    for name in ("deployment", "deployment-gpu"):
        assert svc["selector"].items() <= k8s[name]["spec"]["template"]["metadata"]["labels"].items()
    (port,) = svc["ports"]
    assert port["targetPort"] in (container(dep)["ports"][0]["name"], container(dep)["ports"][0]["containerPort"])

    target = k8s["hpa"]["spec"]["scaleTargetRef"]
    assert k8s["hpa"]["apiVersion"] == "autoscaling/v2"
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    (metric,) = k8s["hpa"]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"

    pdb = k8s["pdb"]["spec"]["selector"]["matchLabels"]
    assert pdb == dep["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= pod_labels.items()
