"""Writes with the real kubectl (whose typed `create` commands send protobuf) through the
gateway to the sandbox: create with and without `-n`, apply (repeated), strategic merge
patching a sidecar in, scale, replace and delete, asserting on the objects the cluster then
holds; and the HTTP/1.1 status line's reason phrase."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import kubernetes_asyncio
import pytest
import trio
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from tests.e2e import python_clients
from tests.e2e.stack import Stack, kubectl

ADMIN = ("platform-admins",)
READER = ("ai-agents-readonly",)

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
      - {name: app, image: "shop:1"}
"""


async def _get(kc: Path, *args: str) -> Any:
    result = await kubectl(kc, "get", *args, "-o", "json", check=True)
    return json.loads(result.stdout)


async def test_kubectl_creates_with_and_without_a_namespace(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "create", "namespace", "team", check=True)
    await kubectl(kc, "create", "deployment", "api", "--image=api:1", check=True)
    await kubectl(kc, "create", "configmap", "cfg", "-n", "team", "--from-literal=a=b", check=True)
    secret = ("create", "secret", "generic", "pw", "--from-literal=p=s")
    await kubectl(kc, *secret, check=True)
    await kubectl(kc, "create", "service", "clusterip", "api", "--tcp=80:8080", check=True)
    service = await _get(kc, "service", "api")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 8080)]
    deployment = await _get(kc, "deployment", "api")
    assert deployment["metadata"]["namespace"] == "default"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "api:1"
    assert (await _get(kc, "configmap", "cfg", "-n", "team"))["data"] == {"a": "b"}
    assert (await _get(kc, "secret", "pw"))["data"] == {"p": "cw=="}


async def test_kubectl_apply_twice_patch_a_sidecar_scale_and_delete(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    for _ in range(2):
        await kubectl(kc, "apply", "-f", "-", stdin=DEPLOYMENT.encode(), check=True)
    sidecar = {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}]}}}}
    await kubectl(kc, "patch", "deployment", "shop", "-p", json.dumps(sidecar), check=True)
    await kubectl(kc, "scale", "deployment", "shop", "--replicas=3", check=True)
    shop = await _get(kc, "deployment", "shop")
    containers = shop["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "shop:1"), ("side", "s:1")]
    assert shop["spec"]["replicas"] == 3
    assert "$" not in json.dumps(shop)
    result = await kubectl(kc, "delete", "deployment", "shop", check=True)
    assert result.stdout == b'deployment.apps "shop" deleted\n'
    assert (await kubectl(kc, "get", "deployment", "shop")).returncode != 0


async def test_kubectl_server_side_apply_creates_and_updates(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "apply", "--server-side", "-f", "-", stdin=DEPLOYMENT.encode(), check=True)
    scaled = DEPLOYMENT.replace("replicas: 1", "replicas: 2").encode()
    await kubectl(kc, "apply", "--server-side", "-f", "-", stdin=scaled, check=True)
    shop = await _get(kc, "deployment", "shop", "--show-managed-fields")
    assert shop["spec"]["replicas"] == 2
    assert shop["metadata"]["managedFields"][0]["manager"] == "kubectl"


async def test_kubectl_replace_swaps_the_object(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "create", "configmap", "cfg", "--from-literal=a=1", check=True)
    current = await _get(kc, "configmap", "cfg")
    current["data"] = {"b": "2"}
    await kubectl(kc, "replace", "-f", "-", stdin=json.dumps(current).encode(), check=True)
    assert (await _get(kc, "configmap", "cfg"))["data"] == {"b": "2"}


async def test_http1_status_lines_carry_the_reason_phrase(stack: Stack) -> None:
    url = urlsplit(stack.gateway_url)
    context = ssl.create_default_context(cafile=str(stack.tmp / "ca.pem"))
    context.set_alpn_protocols(["http/1.1"])
    token = stack.token("agent-7", READER)
    request = (
        f"DELETE /k8s/dev/api/v1/namespaces/default/pods/web-1 HTTP/1.1\r\nhost: {url.netloc}\r\n"
        f"authorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    ).encode()
    with trio.fail_after(20):
        tcp = await trio.open_tcp_stream(url.hostname or "", url.port or 443)
        stream = trio.SSLStream(tcp, context, server_hostname=url.hostname)
        await stream.send_all(request)
        received = b""
        while b"\r\n" not in received and (data := await stream.receive_some()):
            received += data
        await stream.aclose()
    assert received.startswith(b"HTTP/1.1 403 Forbidden\r\n")


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed (make bench)")
async def test_h2load_h1_counts_every_gateway_response_as_a_success(stack: Stack) -> None:
    # h2load's HTTP/1.1 parser takes a response's status only from a non-empty reason phrase.
    url = f"{stack.gateway_url}/k8s/dev/api/v1/namespaces/default/pods"
    auth = f"authorization: Bearer {stack.token('agent-7', READER)}"
    command = ["h2load", "--h1", "-n", "10", "-c", "1", "-H", auth, url]
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, check=True)
    assert b"10 succeeded, 0 failed" in done.stdout
    assert b"status codes: 10 2xx" in done.stdout


async def test_the_official_python_client_creates_patches_and_deletes(stack: Stack) -> None:
    core = kubernetes.client.CoreV1Api(python_clients.official(stack, stack.token("a", ADMIN)))

    def run() -> tuple[Any, Any, Any]:
        created = core.create_namespaced_config_map(
            "default", {"metadata": {"name": "py"}, "data": {"a": "1"}}
        )
        patched = core.patch_namespaced_config_map("py", "default", {"data": {"b": "2"}})
        return created, patched, core.delete_namespaced_config_map("py", "default")

    created, patched, status = await trio.to_thread.run_sync(run)
    assert (created.metadata.namespace, created.data) == ("default", {"a": "1"})
    assert patched.data == {"a": "1", "b": "2"}
    status = kubernetes.client.ApiClient().sanitize_for_serialization(status)
    assert (status["status"], status["details"]["name"]) == ("Success", "py")


async def test_lightkube_creates_patches_and_deletes(stack: Stack) -> None:
    client = python_clients.lightkube_client(stack, stack.token("a", ADMIN))

    def run() -> tuple[ConfigMap, ConfigMap, list[str]]:
        created = client.create(ConfigMap(metadata=ObjectMeta(name="lk"), data={"a": "1"}))
        patched = client.patch(ConfigMap, "lk", {"data": {"b": "2"}})
        client.delete(ConfigMap, "lk")
        left = [c.metadata.name or "" for c in client.list(ConfigMap) if c.metadata]
        client.close()
        return created, patched, left

    created, patched, left = await trio.to_thread.run_sync(run)
    assert created.metadata is not None and created.metadata.namespace == "default"
    assert patched.data == {"a": "1", "b": "2"}
    assert "lk" not in left


async def test_kubernetes_asyncio_creates_and_deletes(stack: Stack) -> None:
    token = stack.token("a", ADMIN)

    async def run() -> tuple[Any, Any]:
        async with python_clients.asyncio_client(stack, token) as api:
            core = kubernetes_asyncio.client.CoreV1Api(api)
            body = {"metadata": {"name": "aio"}, "data": {"a": "1"}}
            created = await core.create_namespaced_config_map("default", body)
            status = await core.delete_namespaced_config_map("aio", "default")
            return created, api.sanitize_for_serialization(status)

    created, status = await trio.to_thread.run_sync(asyncio.run, run())
    assert (created.metadata.namespace, created.data) == ("default", {"a": "1"})
    assert (status["status"], status["details"]["name"]) == ("Success", "aio")
