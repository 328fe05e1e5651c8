"""Refusals from the sandbox as kube-apiserver words them, through the gateway: NotFound,
AlreadyExists, Conflict and Invalid Statuses carry `details` (name, group, kind, and for
Invalid one cause per field), which kubectl and the Python clients show."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import kubernetes_asyncio
import lightkube
import pytest
import trio
from lightkube.resources.apps_v1 import Deployment

from tests.e2e import python_clients
from tests.e2e.stack import Stack, kubectl
from tests.e2e.test_writes import ADMIN, DEPLOYMENT


async def test_kubectl_prints_the_causes_of_an_invalid_object(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    bad = DEPLOYMENT.replace("replicas: 1", "replicas: -1").encode()
    result = await kubectl(kc, "create", "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert result.stderr == (
        b'The Deployment "shop" is invalid: spec.replicas: Invalid value: -1: '
        b"must be greater than or equal to 0\n"
    )
    missing = await kubectl(kc, "get", "deployment", "nope")
    assert missing.stderr == b'Error from server (NotFound): deployments.apps "nope" not found\n'


def _official_errors(stack: Stack, token: str) -> list[dict[str, Any]]:
    apps = kubernetes.client.AppsV1Api(python_clients.official(stack, token))
    body = {
        "metadata": {"name": "shop"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "app", "image": "shop:1"}]},
            },
        },
    }
    stale = {**body, "metadata": {"name": "shop", "resourceVersion": "1"}}
    calls = [
        lambda: apps.read_namespaced_deployment("nope", "default"),
        lambda: apps.create_namespaced_deployment("default", body),
        lambda: apps.replace_namespaced_deployment("shop", "default", stale),
        lambda: apps.patch_namespaced_deployment("shop", "default", {"spec": {"replicas": -2}}),
    ]
    statuses = []
    try:
        apps.create_namespaced_deployment("default", body)
        for call in calls:
            with pytest.raises(kubernetes.client.ApiException) as err:
                call()
            statuses.append(json.loads(err.value.body))
    finally:
        python_clients.close_official(apps.api_client)
    return statuses


async def test_the_official_client_gets_details_for_each_refusal(stack: Stack) -> None:
    token = stack.token("a", ADMIN)
    statuses = await trio.to_thread.run_sync(_official_errors, stack, token)
    assert [(s["code"], s["reason"]) for s in statuses] == [
        (404, "NotFound"),
        (409, "AlreadyExists"),
        (409, "Conflict"),
        (422, "Invalid"),
    ]
    resource = {"group": "apps", "kind": "deployments"}
    assert statuses[0]["details"] == {"name": "nope", **resource}
    assert statuses[1]["details"] == statuses[2]["details"] == {"name": "shop", **resource}
    invalid = statuses[3]["details"]
    assert (invalid["kind"], invalid["group"], invalid["name"]) == ("Deployment", "apps", "shop")
    assert invalid["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: -2: must be greater than or equal to 0",
            "field": "spec.replicas",
        }
    ]


async def test_lightkube_and_kubernetes_asyncio_see_the_not_found_details(stack: Stack) -> None:
    token = stack.token("a", ADMIN)

    def light() -> Any:
        client = python_clients.lightkube_client(stack, token)
        try:
            with pytest.raises(lightkube.ApiError) as err:
                client.get(Deployment, "nope")
        finally:
            client.close()
        return err.value.status

    async def aio() -> Any:
        async with python_clients.asyncio_client(stack, token) as api:
            with pytest.raises(kubernetes_asyncio.client.ApiException) as err:
                await kubernetes_asyncio.client.AppsV1Api(api).read_namespaced_deployment(
                    "nope", "default"
                )
            return json.loads(err.value.body)

    status = await trio.to_thread.run_sync(light)
    assert (status.code, status.reason, status.details.name, status.details.kind) == (
        404,
        "NotFound",
        "nope",
        "deployments",
    )
    body = await trio.to_thread.run_sync(python_clients.run_asyncio, aio())
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
