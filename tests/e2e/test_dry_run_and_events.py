"""`kubectl diff` (a server-side dry run) and `dryRun=All` with every client, and the events
the sandbox's controllers write for pod starts and deployment scaling, read with kubectl and
every client, through the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_asyncio
import trio
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event

from tests.e2e import python_clients
from tests.e2e.stack import Stack, kubectl
from tests.e2e.test_writes import ADMIN, DEPLOYMENT


async def _get(kc: Path, *args: str) -> Any:
    return json.loads((await kubectl(kc, "get", *args, "-o", "json", check=True)).stdout)


def _changed_lines(diff: bytes) -> list[str]:
    lines = diff.decode().splitlines()
    return [line for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))]


async def test_kubectl_diff_shows_nothing_for_the_applied_manifest_and_only_a_change(
    stack: Stack,
) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "apply", "-f", "-", stdin=DEPLOYMENT.encode(), check=True)
    before = await _get(kc, "deployment", "shop")
    same = await kubectl(kc, "diff", "-f", "-", stdin=DEPLOYMENT.encode())
    assert (same.returncode, same.stdout, same.stderr) == (0, b"", b"")
    scaled = DEPLOYMENT.replace("replicas: 1", "replicas: 5").encode()
    changed = await kubectl(kc, "diff", "-f", "-", stdin=scaled)
    assert changed.returncode == 1, changed.stderr
    # kube-apiserver's dry run bumps the generation with the spec, as here.
    assert sorted(_changed_lines(changed.stdout)) == [
        "+  generation: 2",
        "+  replicas: 5",
        "-  generation: 1",
        "-  replicas: 1",
    ]
    after = await _get(kc, "deployment", "shop")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["replicas"] == 1


async def test_kubectl_server_side_diff_and_dry_run_delete_change_nothing(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "apply", "--server-side", "-f", "-", stdin=DEPLOYMENT.encode(), check=True)
    same = await kubectl(kc, "diff", "--server-side", "-f", "-", stdin=DEPLOYMENT.encode())
    assert (same.returncode, same.stdout) == (0, b""), same.stderr
    deleted = await kubectl(kc, "delete", "deployment", "shop", "--dry-run=server", check=True)
    assert deleted.stdout == b'deployment.apps "shop" deleted (server dry run)\n'
    assert (await _get(kc, "deployment", "shop"))["spec"]["replicas"] == 1


async def test_the_official_client_dry_runs_create_patch_and_delete(stack: Stack) -> None:
    core = kubernetes.client.CoreV1Api(python_clients.official(stack, stack.token("a", ADMIN)))

    def run() -> tuple[Any, Any, Any, list[str]]:
        body = {"metadata": {"name": "dry"}, "data": {"a": "1"}}
        created = core.create_namespaced_config_map("default", body, dry_run="All")
        names = [c.metadata.name for c in core.list_namespaced_config_map("default").items]
        core.create_namespaced_config_map("default", body)
        patched = core.patch_namespaced_config_map(
            "dry", "default", {"data": {"a": "2"}}, dry_run="All"
        )
        core.delete_namespaced_config_map("dry", "default", dry_run="All")
        return created, patched, core.read_namespaced_config_map("dry", "default"), names

    try:
        created, patched, stored, names = await trio.to_thread.run_sync(run)
    finally:
        python_clients.close_official(core.api_client)
    assert created.data == {"a": "1"} and "dry" not in names
    assert patched.data == {"a": "2"}
    assert stored.data == {"a": "1"}


async def test_lightkube_dry_runs_a_create(stack: Stack) -> None:
    client = python_clients.lightkube_client(stack, stack.token("a", ADMIN))

    def run() -> tuple[ConfigMap, list[str]]:
        obj = ConfigMap(metadata=ObjectMeta(name="lk-dry"), data={"a": "1"})
        created = client.create(obj, dry_run=True)
        left = [c.metadata.name or "" for c in client.list(ConfigMap) if c.metadata]
        client.close()
        return created, left

    created, left = await trio.to_thread.run_sync(run)
    assert created.data == {"a": "1"}
    assert "lk-dry" not in left


async def test_kubernetes_asyncio_dry_runs_a_create_and_a_delete(stack: Stack) -> None:
    token = stack.token("a", ADMIN)

    async def run() -> tuple[Any, list[str], Any]:
        async with python_clients.asyncio_client(stack, token) as api:
            core = kubernetes_asyncio.client.CoreV1Api(api)
            body = {"metadata": {"name": "aio-dry"}, "data": {"a": "1"}}
            created = await core.create_namespaced_config_map("default", body, dry_run="All")
            listed = await core.list_namespaced_config_map("default")
            await core.delete_namespaced_pod("web-1", "default", dry_run="All")
            kept = await core.read_namespaced_pod("web-1", "default")
            return created, [c.metadata.name for c in listed.items], kept

    created, names, kept = await trio.to_thread.run_sync(python_clients.run_asyncio, run())
    assert created.data == {"a": "1"} and "aio-dry" not in names
    assert kept.metadata.name == "web-1"


async def test_kubectl_scale_moves_replica_set_and_pods_with_events(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "apply", "-f", "-", stdin=DEPLOYMENT.encode(), check=True)
    await kubectl(kc, "scale", "deployment", "shop", "--replicas=3", check=True)
    [rs] = (await _get(kc, "replicasets", "-l", "app=shop"))["items"]
    name = rs["metadata"]["name"]
    assert (rs["spec"]["replicas"], rs["status"]["readyReplicas"]) == (3, 3)
    pods = (await _get(kc, "pods", "-l", "app=shop"))["items"]
    assert sorted(p["metadata"]["ownerReferences"][0]["name"] for p in pods) == [name] * 3
    described = (await kubectl(kc, "describe", "deployment", "shop", check=True)).stdout
    assert f"Scaled up replica set {name} from 0 to 1".encode() in described
    assert f"Scaled up replica set {name} from 1 to 3".encode() in described
    assert f"NewReplicaSet:   {name} (3/3 replicas created)".encode() in described
    listed = (await kubectl(kc, "get", "events", check=True)).stdout.decode()
    pod = pods[0]["metadata"]["name"]
    assert any(
        line.split()[1:4] == ["Normal", "Started", f"pod/{pod}"] for line in listed.splitlines()
    )


async def test_python_clients_read_the_events_of_a_started_pod(stack: Stack) -> None:
    token = stack.token("a", ADMIN)
    selector = "involvedObject.kind=Pod,involvedObject.name=web-1"
    core = kubernetes.client.CoreV1Api(python_clients.official(stack, token))

    def official() -> list[str]:
        events = core.list_namespaced_event("default", field_selector=selector).items
        return [e.reason for e in events]

    async def aio() -> list[str]:
        async with python_clients.asyncio_client(stack, token) as api:
            events = await kubernetes_asyncio.client.CoreV1Api(api).list_namespaced_event(
                "default", field_selector=selector
            )
            return [e.reason for e in events.items]

    def light() -> list[str]:
        client = python_clients.lightkube_client(stack, token)
        fields = {"involvedObject.kind": "Pod", "involvedObject.name": "web-1"}
        reasons = [e.reason or "" for e in client.list(Event, fields=fields)]
        client.close()
        return reasons

    expected = ["Scheduled", "Pulled", "Created", "Started"]
    try:
        assert await trio.to_thread.run_sync(official) == expected
    finally:
        python_clients.close_official(core.api_client)
    assert await trio.to_thread.run_sync(python_clients.run_asyncio, aio()) == expected
    assert await trio.to_thread.run_sync(light) == expected
