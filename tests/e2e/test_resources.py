"""The resources people look at, read with the real kubectl through the gateway."""

from __future__ import annotations

import json

import pytest

from tests.e2e.stack import Stack, kubectl

ADMIN = ("platform-admins",)


@pytest.mark.parametrize(
    ("args", "header", "first"),
    [
        (("get", "nodes"), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], "sandbox-node-1"),
        (
            ("get", "svc"),
            ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
            "kubernetes",
        ),
        (("get", "sa", "-n", "kube-system"), ["NAME", "SECRETS", "AGE"], "default"),
        (("get", "jobs"), ["NAME", "STATUS", "COMPLETIONS", "AGE"], "migrate"),
        (("get", "rs"), None, None),
    ],
)  # fmt: skip
async def test_kubectl_get_prints_each_seeded_kind_as_a_table(
    stack: Stack, args: tuple[str, ...], header: list[str] | None, first: str | None
) -> None:
    kc = stack.kubeconfig(stack.token("ops-1", ADMIN))
    result = await kubectl(kc, *args, check=True)
    if header is None:  # no replica sets are seeded: kubectl says so rather than failing
        assert b"No resources found in default namespace." in result.stderr
        return
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == header
    assert lines[1].split()[0] == first


async def test_kubectl_get_events_shows_the_pod_starts(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("ops-1", ADMIN))
    table = (await kubectl(kc, "get", "events", check=True)).stdout.decode().splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert {tuple(line.split()[1:4]) for line in table[1:]} == {
        ("Normal", reason, f"pod/{pod}")
        for reason in ("Scheduled", "Pulled", "Created", "Started")
        for pod in ("web-1", "web-2")
    }
    raw = await kubectl(kc, "get", "events.v1.events.k8s.io", "-o", "json", check=True)
    assert json.loads(raw.stdout)["items"] == []


async def test_kubectl_get_node_as_json_is_the_seeded_node(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("ops-1", ADMIN))
    node = json.loads((await kubectl(kc, "get", "node", "sandbox-node-1", "-o", "json")).stdout)
    assert (node["kind"], node["apiVersion"]) == ("Node", "v1")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.0"
    assert "namespace" not in node["metadata"]


async def test_kubectl_api_resources_lists_kinds_with_short_names_and_scope(
    stack: Stack,
) -> None:
    kc = stack.kubeconfig(stack.token("ops-1", ADMIN))
    out = (await kubectl(kc, "api-resources", "-o", "wide", check=True)).stdout.decode()
    rows = {tuple(line.split()[:5]) for line in out.splitlines()[1:]}
    assert {
        ("nodes", "no", "v1", "false", "Node"),
        ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
        ("events", "ev", "v1", "true", "Event"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("events", "ev", "events.k8s.io/v1", "true", "Event"),
    } <= rows
    jobs = (await kubectl(kc, "api-resources", "--api-group", "batch", check=True)).stdout
    assert jobs.decode().splitlines()[1].split() == ["jobs", "batch/v1", "true", "Job"]


async def test_kubectl_explain_prints_kinds_and_field_paths_from_openapi_v3(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("ops-1", ADMIN))
    pods = (await kubectl(kc, "explain", "pods", check=True)).stdout.decode()
    assert pods.startswith("KIND:       Pod\nVERSION:    v1\n")
    assert "Pod is a collection of containers that can run on a host." in pods
    assert "  spec\t<PodSpec>\n" in pods
    deployments = (await kubectl(kc, "explain", "deployments", check=True)).stdout.decode()
    assert deployments.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
    assert "  spec\t<DeploymentSpec>\n" in deployments
    field = await kubectl(kc, "explain", "pods.spec.containers", check=True)
    containers = field.stdout.decode()
    assert "FIELD: containers <[]Container>\n" in containers
    assert "  image\t<string>\n" in containers
    recursive = await kubectl(kc, "explain", "deploy.spec.replicas", check=True)
    assert "FIELD: replicas <integer>" in recursive.stdout.decode()
    missing = await kubectl(kc, "explain", "pods.spec.nope")
    assert missing.returncode != 0
    assert b'field "nope" does not exist' in missing.stderr
