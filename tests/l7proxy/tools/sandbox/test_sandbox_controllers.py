"""The controllers: a Deployment's ReplicaSet and pods follow its replicas and template,
each step leaves the Event kube's controller writes, and deleting an owner deletes what it
owns."""

from __future__ import annotations

from typing import Any

from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
REPLICA_SETS = "/apis/apps/v1/namespaces/default/replicasets"
PODS = "/api/v1/namespaces/default/pods"
EVENTS = "/api/v1/namespaces/default/events"


def deployment(replicas: int, image: str = "shop:1") -> dict[str, Any]:
    return {
        "metadata": {"name": "shop"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


async def items(call: Call, path: str, query: str = "") -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await call("GET", f"{path}?{query}")).json()["items"]
    return listed


async def events_about(call: Call, kind: str, name: str) -> list[tuple[str, str]]:
    selector = f"fieldSelector=involvedObject.kind={kind},involvedObject.name={name}"
    return [(e["reason"], e["message"]) for e in await items(call, EVENTS, selector)]


async def test_a_deployment_owns_a_replica_set_whose_pods_match_its_replicas(call: Call) -> None:
    await call("POST", DEPLOYMENTS, deployment(2))
    [rs] = await items(call, REPLICA_SETS)
    assert rs["metadata"]["name"].startswith("shop-")
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["spec"]["replicas"] == 2 and rs["status"]["readyReplicas"] == 2
    pods = await items(call, PODS, "labelSelector=app=shop")
    assert len(pods) == 2
    assert {p["metadata"]["ownerReferences"][0]["name"] for p in pods} == {rs["metadata"]["name"]}
    assert all(p["metadata"]["name"].startswith(rs["metadata"]["name"] + "-") for p in pods)
    assert all(p["status"]["phase"] == "Running" for p in pods)
    scaled = f"Scaled up replica set {rs['metadata']['name']} from 0 to 2"
    assert await events_about(call, "Deployment", "shop") == [("ScalingReplicaSet", scaled)]


async def test_scaling_moves_the_replica_set_and_its_pods_with_events(call: Call) -> None:
    await call("POST", DEPLOYMENTS, deployment(3))
    patch = {"spec": {"replicas": 1}}
    await call(
        "PATCH", f"{DEPLOYMENTS}/shop/scale", patch, content_type="application/merge-patch+json"
    )
    [rs] = await items(call, REPLICA_SETS)
    name = rs["metadata"]["name"]
    assert (rs["spec"]["replicas"], rs["status"]["replicas"]) == (1, 1)
    assert len(await items(call, PODS, "labelSelector=app=shop")) == 1
    assert (await events_about(call, "Deployment", "shop"))[-1] == (
        "ScalingReplicaSet",
        f"Scaled down replica set {name} from 3 to 1",
    )
    reasons = [reason for reason, _ in await events_about(call, "ReplicaSet", name)]
    assert reasons == ["SuccessfulCreate"] * 3 + ["SuccessfulDelete"] * 2
    shop = (await call("GET", f"{DEPLOYMENTS}/shop")).json()
    assert shop["status"]["replicas"] == shop["status"]["availableReplicas"] == 1


async def test_a_new_template_gets_a_new_replica_set_and_the_old_one_goes_to_zero(
    call: Call,
) -> None:
    await call("POST", DEPLOYMENTS, deployment(1))
    current = (await call("GET", f"{DEPLOYMENTS}/shop")).json()
    current["spec"]["template"]["spec"]["containers"][0]["image"] = "shop:2"
    await call("PUT", f"{DEPLOYMENTS}/shop", current)
    replicas = {
        r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"]
        for r in await items(call, REPLICA_SETS)
    }
    assert replicas == {"shop:1": 0, "shop:2": 1}
    [pod] = await items(call, PODS, "labelSelector=app=shop")
    assert pod["spec"]["containers"][0]["image"] == "shop:2"


async def test_deleting_a_deployment_deletes_its_replica_sets_and_pods(call: Call) -> None:
    await call("POST", DEPLOYMENTS, deployment(2))
    assert (await call("DELETE", f"{DEPLOYMENTS}/shop")).status == 200
    assert await items(call, REPLICA_SETS) == []
    assert await items(call, PODS, "labelSelector=app=shop") == []


async def test_a_started_pod_has_the_scheduler_and_kubelet_events(call: Call) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    await call("POST", PODS, pod)
    assert await events_about(call, "Pod", "p") == [
        ("Scheduled", "Successfully assigned default/p to sandbox-node-1"),
        ("Pulled", 'Container image "i:1" already present on machine'),
        ("Created", "Created container c"),
        ("Started", "Started container c"),
    ]


async def test_a_template_kube_would_reject_leaves_a_failed_create_event(call: Call) -> None:
    body = {"metadata": {"name": "bad"}, "spec": {"replicas": 1, "template": {"spec": {}}}}
    assert (await call("POST", DEPLOYMENTS, body)).status == 201
    [rs] = await items(call, REPLICA_SETS)
    events = await events_about(call, "ReplicaSet", rs["metadata"]["name"])
    assert {reason for reason, _ in events} == {"FailedCreate"}  # once per sync, as kube's
    assert "spec.containers: Required value" in events[0][1]


async def test_a_dry_run_create_starts_no_controller(call: Call) -> None:
    before = await items(call, EVENTS)
    assert (await call("POST", f"{DEPLOYMENTS}?dryRun=All", deployment(2))).status == 201
    assert await items(call, REPLICA_SETS) == []
    assert await items(call, EVENTS) == before
    assert (await call("GET", f"{DEPLOYMENTS}/shop")).status == 404


async def test_more_replicas_than_the_sandbox_runs_are_refused_and_nothing_changes(
    call: Call,
) -> None:
    await call("POST", DEPLOYMENTS, deployment(2))
    patch = {"spec": {"replicas": 51}}
    refused = await call(
        "PATCH", f"{DEPLOYMENTS}/shop/scale", patch, content_type="application/merge-patch+json"
    )
    assert refused.status == 422
    assert refused.json()["details"]["causes"][0]["message"] == (
        "Invalid value: 51: the sandbox runs at most 50 replicas"
    )
    assert len(await items(call, PODS, "labelSelector=app=shop")) == 2
