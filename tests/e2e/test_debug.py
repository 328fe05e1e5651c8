"""`kubectl debug` through the gateway: an ephemeral container added through
pods/ephemeralcontainers (then attached to with `-i`), and `--copy-to`'s copy pod (created
with a protobuf body); the Python clients add ephemeral containers through the same
subresource."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_asyncio
import trio
from lightkube.models.core_v1 import EphemeralContainer, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import PodEphemeralcontainers

from tests.e2e import python_clients
from tests.e2e.stack import Stack, kubectl

ADMIN = ("platform-admins",)


async def _pod(kc: Path, name: str) -> Any:
    result = await kubectl(kc, "get", "pod", name, "-o", "json", check=True)
    return json.loads(result.stdout)


def _ephemeral(pod: Any) -> list[tuple[str, str]]:
    return [(c["name"], c["image"]) for c in pod["spec"].get("ephemeralContainers", [])]


def _running(pod: Any) -> dict[str, bool]:
    statuses = pod["status"].get("ephemeralContainerStatuses", [])
    return {s["name"]: "running" in s["state"] for s in statuses}


async def test_kubectl_debug_adds_an_ephemeral_container_targeting_the_app(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    debug = ("debug", "web-1", "--image=busybox:1.36", "--target=app", "--container=dbg")
    result = await kubectl(kc, *debug, "--", "sh", "-c", "echo hi")
    assert result.returncode == 0, result.stderr
    assert b"panic" not in result.stderr
    pod = await _pod(kc, "web-1")
    [container] = pod["spec"]["ephemeralContainers"]
    assert (container["name"], container["image"]) == ("dbg", "busybox:1.36")
    assert (container["targetContainerName"], container["command"]) == (
        "app",
        ["sh", "-c", "echo hi"],
    )
    assert _running(pod) == {"dbg": True}
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]


async def test_kubectl_debug_interactive_attaches_to_the_ephemeral_container(
    stack: Stack,
) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    debug = ("debug", "-i", "web-2", "--image=busybox:1.36", "--target=app", "--container=sh")
    result = await kubectl(kc, *debug, stdin=b"echo from-$HOSTNAME; exit\n")
    assert result.returncode == 0, result.stderr
    assert b"from-web-2\n" in result.stdout
    assert _ephemeral(await _pod(kc, "web-2")) == [("sh", "busybox:1.36")]


async def test_kubectl_debug_copy_to_makes_a_copy_pod_with_the_debug_container(
    stack: Stack,
) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    copy = ("debug", "web-1", "--copy-to=web-1-debug", "--image=busybox:1.36")
    result = await kubectl(kc, *copy, "--container=dbg", "--share-processes", "--", "sleep", "1d")
    assert result.returncode == 0, result.stderr
    pod = await _pod(kc, "web-1-debug")
    containers = [(c["name"], c["image"]) for c in pod["spec"]["containers"]]
    assert containers == [("app", "nginx:1.27"), ("dbg", "busybox:1.36")]
    assert pod["spec"]["containers"][1]["command"] == ["sleep", "1d"]
    assert pod["spec"]["shareProcessNamespace"] is True
    assert pod["status"]["phase"] == "Running"
    assert _ephemeral(await _pod(kc, "web-1")) == []  # the original is left alone


async def test_python_clients_add_ephemeral_containers(stack: Stack) -> None:
    token = stack.token("a", ADMIN)
    core = kubernetes.client.CoreV1Api(python_clients.official(stack, token))

    def official() -> Any:
        body = {"spec": {"ephemeralContainers": [{"name": "py", "image": "busybox:1.36"}]}}
        return core.patch_namespaced_pod_ephemeralcontainers("web-1", "default", body)

    def lightkube() -> Any:
        client = python_clients.lightkube_client(stack, token)
        containers = [
            EphemeralContainer(name="py", image="busybox:1.36"),
            EphemeralContainer(name="lk", image="busybox:1.36"),
        ]
        patched = client.replace(
            PodEphemeralcontainers(
                metadata=ObjectMeta(name="web-1"),
                spec=PodSpec(containers=[], ephemeralContainers=containers),
            )
        )
        client.close()
        return patched

    async def aio() -> Any:
        async with python_clients.asyncio_client(stack, token) as api:
            pod = await kubernetes_asyncio.client.CoreV1Api(
                api
            ).read_namespaced_pod_ephemeralcontainers("web-1", "default")
            return pod

    try:
        patched = await trio.to_thread.run_sync(official)
    finally:
        python_clients.close_official(core.api_client)
    assert [c.name for c in patched.spec.ephemeral_containers] == ["py"]
    replaced = await trio.to_thread.run_sync(lightkube)
    assert replaced.spec is not None and replaced.spec.ephemeralContainers is not None
    assert [c.name for c in replaced.spec.ephemeralContainers] == ["py", "lk"]
    read = await trio.to_thread.run_sync(python_clients.run_asyncio, aio())
    assert [s.name for s in read.status.ephemeral_container_statuses] == ["py", "lk"]
