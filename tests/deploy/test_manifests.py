"""deploy/: the rendered manifests are valid Kubernetes objects and keep the gateway's invariants.

Renders with the real `kubectl kustomize`, validates against the Kubernetes 1.32 schemas
offline (kubernetes-validate, strict), and runs the real `l7proxy check-config` on the
ConfigMap's gateway.yaml with the files it references made by trustme.
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import trustme
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl"
KUBERNETES_VERSION = "1.32"
TARGETS = ["deploy", "deploy/base", "deploy/overlays/eks"]

Objects = list[dict[str, Any]]


def render(target: str) -> Objects:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / target)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: Objects, kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def gateway_container(objects: Objects) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    return dict(containers[0])


def gateway_yaml(objects: Objects) -> str:
    return str(one(objects, "ConfigMap")["data"]["gateway.yaml"])


@pytest.fixture(params=TARGETS)
def objects(request: pytest.FixtureRequest) -> Objects:
    return render(request.param)


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(objects: Objects) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "PodDisruptionBudget", "Service", "ServiceAccount", "ConfigMap"} <= kinds
    assert "NetworkPolicy" in kinds
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_schema_validation_rejects_a_misspelt_field() -> None:
    deployment = one(render("deploy/overlays/eks"), "Deployment")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_deployment_runs_at_least_two_replicas_spread_over_zones_and_nodes(
    objects: Objects,
) -> None:
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    spread = pod["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert all(selects(c["labelSelector"]["matchLabels"], labels) for c in spread)


def test_pod_disruption_budget_selects_the_pods_and_leaves_one_to_evict(objects: Objects) -> None:
    deployment = one(objects, "Deployment")
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert selects(
        budget["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert 0 < budget["minAvailable"] < deployment["spec"]["replicas"]


def listen_port(objects: Objects) -> int:
    config = yaml.safe_load(gateway_yaml(objects))
    return int(config["listen"]["address"].rsplit(":", 1)[1])


def test_probes_ask_the_gateway_for_healthz_and_readyz_over_https_on_its_port(
    objects: Objects,
) -> None:
    container = gateway_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["scheme"]) == (path, "HTTPS")
        assert ports.get(get["port"], get["port"]) == listen_port(objects)


def test_service_selects_the_pods_and_targets_the_gateway_port(objects: Objects) -> None:
    service = one(objects, "Service")["spec"]
    pod = one(objects, "Deployment")["spec"]["template"]
    assert selects(service["selector"], pod["metadata"]["labels"])
    ports = {p["name"]: p["containerPort"] for p in gateway_container(objects)["ports"]}
    [port] = service["ports"]
    assert ports.get(port["targetPort"], port["targetPort"]) == listen_port(objects)


def test_network_policy_admits_the_gateway_port_and_allows_dns_and_443_out(
    objects: Objects,
) -> None:
    policy = one(objects, "NetworkPolicy")["spec"]
    pod = one(objects, "Deployment")["spec"]["template"]
    assert selects(policy["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [
        listen_port(objects)
    ]
    out = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= out


def test_pods_run_non_root_with_a_read_only_root_and_no_capabilities(objects: Objects) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(objects)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}


def test_gateway_reads_the_generated_config_map_and_writes_only_to_empty_dirs(
    objects: Objects,
) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    config_file = Path(container["args"][container["args"].index("--config") + 1])
    config_mount = mounts[str(config_file.parent)]
    assert config_mount.get("readOnly") is True
    assert (
        volumes[config_mount["name"]]["configMap"]["name"]
        == one(objects, "ConfigMap")["metadata"]["name"]
    )
    assert config_file.name in one(objects, "ConfigMap")["data"]
    config = yaml.safe_load(gateway_yaml(objects))
    recordings = mounts[config["audit"]["recordings_dir"]]
    assert "emptyDir" in volumes[recordings["name"]]
    writable = [m for m in mounts.values() if not m.get("readOnly")]
    assert all("emptyDir" in volumes[m["name"]] for m in writable)
    tls = mounts[str(Path(config["listen"]["tls"]["cert_file"]).parent)]
    assert "secret" in volumes[tls["name"]]


def test_drain_grace_outlasts_the_gateways_shutdown_grace(objects: Objects) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    limits = yaml.safe_load(gateway_yaml(objects)).get("limits") or {}
    assert pod["terminationGracePeriodSeconds"] > limits.get("shutdown_grace", 30)


def test_eks_overlay_binds_the_service_account_to_an_iam_role_and_fronts_it_with_an_nlb() -> None:
    objects = render("deploy/overlays/eks")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    account = one(objects, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    service = one(objects, "Service")
    annotations = service["metadata"]["annotations"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    scheme = annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"]
    assert scheme in {"internet-facing", "internal"}
    config = yaml.safe_load(gateway_yaml(objects))
    assert [c["type"] for c in config["connections"]] == ["eks"]


def test_base_has_no_aws_specifics() -> None:
    objects = render("deploy/base")
    assert "annotations" not in one(objects, "ServiceAccount")["metadata"]
    assert one(objects, "Service")["spec"]["type"] == "ClusterIP"


def relocate(text: str, tmp_path: Path) -> str:
    """Point the config's absolute in-pod paths at files made under tmp_path."""
    ca = trustme.CA()
    cert = ca.issue_cert("l7proxy.l7proxy.svc", "*.k8s.example.com")
    tls = tmp_path / "tls"
    account = tmp_path / "serviceaccount"
    for folder in (tls, account, tmp_path / "recordings"):
        folder.mkdir()
    cert.cert_chain_pems[0].write_to_path(str(tls / "tls.crt"))
    cert.private_key_pem.write_to_path(str(tls / "tls.key"))
    ca.cert_pem.write_to_path(str(account / "ca.crt"))
    (account / "token").write_text("not-a-real-token\n")
    moves = {
        "/etc/l7proxy/tls/": f"{tls}/",
        "/var/run/secrets/kubernetes.io/serviceaccount/": f"{account}/",
        "/var/lib/l7proxy/recordings": str(tmp_path / "recordings"),
    }
    for old, new in moves.items():
        text = text.replace(old, new)
    assert "/etc/l7proxy" not in text and "/var/" not in text, "a path the test does not provide"
    return text


def check_config(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gateway.yaml"
    config.write_text(relocate(text, tmp_path))
    cli = Path(sys.executable).with_name("l7proxy")
    return subprocess.run(
        [str(cli), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("target", ["deploy/base", "deploy/overlays/eks"])
def test_config_map_gateway_yaml_passes_check_config(target: str, tmp_path: Path) -> None:
    result = check_config(gateway_yaml(render(target)), tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_config_refuses_a_config_map_with_an_unknown_connection(tmp_path: Path) -> None:
    text = gateway_yaml(render("deploy/overlays/eks")).replace(
        "connection: prod", "connection: nope"
    )
    result = check_config(text, tmp_path)
    assert result.returncode == 1
    assert "unknown connection 'nope'" in result.stderr


def test_containerfile_builds_the_wheel_apart_and_runs_it_as_a_numeric_non_root_user() -> None:
    text = (ROOT / "Containerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert re.search(r"python -m build --wheel|pip wheel", build)
    assert final.startswith("docker.io/library/python:") and "-slim" in final.splitlines()[0]
    assert "COPY --from=build" in final
    assert re.search(r"pip install [^\n]*\.whl", final)
    for tool in ("gcc", "build-essential", "pip install --no-cache-dir build"):
        assert tool not in final
    assert "COPY l7proxy" not in final
    [user] = re.findall(r"(?m)^USER (\S+)$", final)
    assert all(part.isdigit() and int(part) > 0 for part in user.split(":"))
    assert '\nENTRYPOINT ["l7proxy"]\n' in final
    assert '\nCMD ["serve", "--config", "/etc/l7proxy/gateway.yaml"]\n' in final


def test_the_image_preloads_jemalloc_its_one_system_package() -> None:
    """The soak's memory stays flat under jemalloc, not under glibc's malloc (README, Soak)."""
    final = re.split(r"(?m)^FROM ", (ROOT / "Containerfile").read_text())[-1]
    assert re.findall(r"apt-get install ([^\n\\&]*)", final) == [
        "-y --no-install-recommends libjemalloc2 "
    ]
    assert "rm -rf /var/lib/apt/lists/*" in final
    [link] = re.findall(r"ln -s .* (/\S+)\n", final)
    assert f"\nENV LD_PRELOAD={link}\n" in final
    assert final.index("LD_PRELOAD") < final.index("\nUSER ")
