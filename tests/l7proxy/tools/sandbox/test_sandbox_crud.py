"""Create, read, update, patch and delete, with kube's errors."""

from __future__ import annotations

from typing import Any

from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


async def test_seeded_cluster_has_namespaces_running_web_pods_and_a_configmap(call: Call) -> None:
    namespaces = (await call("GET", "/api/v1/namespaces")).json()
    assert [n["metadata"]["name"] for n in namespaces["items"]] == ["default", "kube-system"]
    pods = (await call("GET", PODS)).json()
    assert pods["kind"] == "PodList"
    assert [p["metadata"]["name"] for p in pods["items"]] == ["web-1", "web-2"]
    for item in pods["items"]:
        assert item["status"]["phase"] == "Running"
        assert item["spec"]["containers"] == [
            {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
        ]
    assert len((await call("GET", CONFIGMAPS)).json()["items"]) == 1


async def test_create_sets_uid_resource_version_timestamp_and_namespace(call: Call) -> None:
    response = await call("POST", PODS, pod("new"))
    assert response.status == 201
    meta = response.json()["metadata"]
    assert meta["namespace"] == "default"
    assert meta["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert len(meta["uid"]) == 36
    assert meta["resourceVersion"].isdigit()
    fetched = (await call("GET", f"{PODS}/new")).json()
    assert fetched == response.json()


async def test_create_with_generate_name_picks_a_fresh_name(call: Call) -> None:
    body = {"metadata": {"generateName": "job-"}, "data": {}}
    name = (await call("POST", CONFIGMAPS, body)).json()["metadata"]["name"]
    assert name.startswith("job-") and len(name) == len("job-") + 5


async def test_create_with_existing_name_is_409_already_exists(call: Call) -> None:
    response = await call("POST", PODS, pod("web-1"))
    assert response.status == 409
    status = response.json()
    assert (status["reason"], status["message"]) == ("AlreadyExists", 'pods "web-1" already exists')


async def test_create_with_invalid_name_is_422_invalid(call: Call) -> None:
    response = await call("POST", PODS, pod("Not_Valid"))
    assert (response.status, response.json()["reason"]) == (422, "Invalid")


async def test_malformed_objects_are_422_invalid_not_a_crash(call: Call) -> None:
    bad_labels = {"metadata": {"name": "a", "labels": {"n": 1}}, "data": {}}
    assert (await call("POST", CONFIGMAPS, bad_labels)).status == 422
    assert (await call("POST", CONFIGMAPS, {"metadata": {"name": "a"}, "data": [1]})).status == 422
    no_containers = {"metadata": {"name": "p"}, "spec": {}}
    assert (await call("POST", PODS, no_containers)).status == 422
    scale = {"metadata": {"name": "d"}, "spec": {"replicas": "three"}}
    assert (await call("POST", DEPLOYMENTS, scale)).status == 422


async def test_create_in_missing_namespace_is_404_for_the_namespace(call: Call) -> None:
    response = await call("POST", "/api/v1/namespaces/nowhere/pods", pod("x"))
    assert response.status == 404
    assert response.json()["message"] == 'namespaces "nowhere" not found'


async def test_get_missing_object_is_404_status_with_details(call: Call) -> None:
    response = await call("GET", f"{PODS}/x")
    assert response.status == 404
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"},
        "code": 404,
    }
    missing = (await call("GET", f"{DEPLOYMENTS}/x")).json()
    assert missing["message"] == 'deployments.apps "x" not found'
    assert missing["details"] == {"name": "x", "kind": "deployments", "group": "apps"}


async def test_one_resource_version_counter_spans_all_kinds(call: Call) -> None:
    namespace = {"metadata": {"name": "a"}}  # a kind no controller writes after
    first = (await call("POST", "/api/v1/namespaces", namespace)).json()["metadata"][
        "resourceVersion"
    ]
    second = (await call("POST", CONFIGMAPS, {"metadata": {"name": "b"}})).json()
    assert int(second["metadata"]["resourceVersion"]) == int(first) + 1
    listed = (await call("GET", "/apis/apps/v1/deployments")).json()
    assert listed["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]


async def test_update_replaces_spec_keeps_status_and_bumps_resource_version(call: Call) -> None:
    current = (await call("GET", f"{PODS}/web-1")).json()
    changed = {**current, "spec": {**current["spec"], "activeDeadlineSeconds": 30}}
    changed["status"] = {"phase": "Failed"}
    response = await call("PUT", f"{PODS}/web-1", changed)
    assert response.status == 200
    updated = response.json()
    assert updated["spec"]["activeDeadlineSeconds"] == 30
    assert updated["status"]["phase"] == "Running"  # status belongs to pods/status
    assert int(updated["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])
    assert updated["metadata"]["uid"] == current["metadata"]["uid"]


async def test_update_with_stale_resource_version_is_409_conflict(call: Call) -> None:
    current = (await call("GET", f"{CONFIGMAPS}/web-config")).json()
    await call("PUT", f"{CONFIGMAPS}/web-config", {**current, "data": {"a": "1"}})
    response = await call("PUT", f"{CONFIGMAPS}/web-config", {**current, "data": {"a": "2"}})
    assert (response.status, response.json()["reason"]) == (409, "Conflict")


async def test_update_that_changes_nothing_keeps_the_resource_version(call: Call) -> None:
    current = (await call("GET", f"{CONFIGMAPS}/web-config")).json()
    again = (await call("PUT", f"{CONFIGMAPS}/web-config", current)).json()
    assert again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]


async def test_update_of_missing_object_is_404(call: Call) -> None:
    response = await call("PUT", f"{CONFIGMAPS}/nope", {"metadata": {"name": "nope"}})
    assert response.status == 404


async def test_status_subresource_writes_only_status(call: Call) -> None:
    current = (await call("GET", f"{PODS}/web-1/status")).json()
    body = {**current, "spec": {"containers": []}, "status": {"phase": "Succeeded"}}
    updated = (await call("PUT", f"{PODS}/web-1/status", body)).json()
    assert updated["status"] == {"phase": "Succeeded"}
    assert updated["spec"]["containers"][0]["name"] == "app"


async def test_merge_patch_merges_maps_and_null_deletes_keys(call: Call) -> None:
    patch = {"metadata": {"labels": {"tier": "front", "app": None}}}
    response = await call(
        "PATCH", f"{PODS}/web-1", patch, content_type="application/merge-patch+json"
    )
    assert response.status == 200
    assert response.json()["metadata"]["labels"] == {"tier": "front"}


async def test_strategic_merge_patch_is_applied_as_a_merge_patch(call: Call) -> None:
    patch = {"data": {"extra": "1"}}
    response = await call(
        "PATCH",
        f"{CONFIGMAPS}/web-config",
        patch,
        content_type="application/strategic-merge-patch+json",
    )
    assert response.json()["data"] == {"greeting": "hello from the sandbox", "extra": "1"}


async def test_json_patch_adds_replaces_and_removes(call: Call) -> None:
    ops = [
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "1"}},
        {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "side", "image": "x"}},
        {"op": "remove", "path": "/spec/containers/0"},
    ]
    response = await call("PATCH", f"{PODS}/web-1", ops, content_type="application/json-patch+json")
    obj = response.json()
    assert obj["metadata"]["annotations"] == {"a/b": "2"}
    assert [c["name"] for c in obj["spec"]["containers"]] == ["side"]


async def test_json_patch_on_missing_path_is_422_and_changes_nothing(call: Call) -> None:
    ops = [
        {"op": "add", "path": "/metadata/labels/x", "value": "1"},
        {"op": "replace", "path": "/spec/nothing", "value": 1},
    ]
    response = await call("PATCH", f"{PODS}/web-1", ops, content_type="application/json-patch+json")
    assert (response.status, response.json()["reason"]) == (422, "Invalid")
    assert "x" not in (await call("GET", f"{PODS}/web-1")).json()["metadata"]["labels"]


async def test_patch_with_unknown_content_type_is_415(call: Call) -> None:
    response = await call("PATCH", f"{PODS}/web-1", {"a": 1}, content_type="text/plain")
    assert response.status == 415


async def test_server_side_apply_creates_then_merges_and_records_the_manager(call: Call) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1'}\n"
    target = f"{CONFIGMAPS}/ssa?fieldManager=me"
    created = await call("PATCH", target, body, content_type="application/apply-patch+yaml")
    assert (created.status, created.json()["data"]) == (201, {"a": "1"})
    assert created.json()["metadata"]["managedFields"][0]["manager"] == "me"
    again = body.replace(b"a: '1'", b"b: '2'")
    merged = await call("PATCH", target, again, content_type="application/apply-patch+yaml")
    assert (merged.status, merged.json()["data"]) == (200, {"a": "1", "b": "2"})
    unnamed = await call(
        "PATCH", f"{CONFIGMAPS}/ssa", body, content_type="application/apply-patch+yaml"
    )
    assert unnamed.status == 400


async def test_delete_returns_a_success_status_naming_the_object_and_it_is_gone(
    call: Call,
) -> None:
    uid = (await call("GET", f"{PODS}/web-2")).json()["metadata"]["uid"]
    response = await call("DELETE", f"{PODS}/web-2")
    assert response.status == 200
    gone = response.json()
    assert (gone["kind"], gone["status"]) == ("Status", "Success")
    # kubectl delete --wait keys on details.uid
    assert gone["details"] == {"name": "web-2", "kind": "pods", "uid": uid}
    assert (await call("GET", f"{PODS}/web-2")).status == 404
    assert (await call("DELETE", f"{PODS}/web-2")).status == 404


async def test_create_and_replace_without_content_type_or_namespace_take_json_and_the_url_namespace(
    call: Call,
) -> None:
    created = await call("POST", PODS, pod("bare", app="db"), content_type="")
    assert (created.status, created.json()["metadata"]["namespace"]) == (201, "default")
    body = created.json()
    del body["metadata"]["namespace"]
    body["metadata"]["labels"]["tier"] = "x"
    replaced = await call("PUT", f"{PODS}/bare", body, content_type="")
    assert replaced.status == 200
    assert replaced.json()["metadata"]["labels"] == {"app": "db", "tier": "x"}


async def test_delete_collection_removes_only_selected_objects(call: Call) -> None:
    await call("POST", PODS, pod("other", app="db"))
    response = await call("DELETE", f"{PODS}?labelSelector=app%3Dweb")
    assert [p["metadata"]["name"] for p in response.json()["items"]] == ["web-1", "web-2"]
    remaining = (await call("GET", PODS)).json()["items"]
    assert [p["metadata"]["name"] for p in remaining] == ["other"]


async def test_dry_run_create_answers_but_stores_nothing(call: Call) -> None:
    response = await call("POST", f"{PODS}?dryRun=All", pod("ghost"))
    assert response.status == 201
    assert (await call("GET", f"{PODS}/ghost")).status == 404


async def test_list_label_selector_supports_equality_inequality_and_sets(call: Call) -> None:
    await call("POST", PODS, pod("db", app="db"))

    async def names(selector: str) -> list[str]:
        listed = (await call("GET", f"{PODS}?labelSelector={selector}")).json()
        return [p["metadata"]["name"] for p in listed["items"]]

    assert await names("app%3Dweb") == ["web-1", "web-2"]
    assert await names("app%3D%3Ddb") == ["db"]
    assert await names("app!%3Dweb") == ["db"]
    assert await names("app+in+(db,cache)") == ["db"]
    assert await names("!app") == []


async def test_list_field_selector_matches_metadata_name(call: Call) -> None:
    listed = (await call("GET", f"{PODS}?fieldSelector=metadata.name%3Dweb-2")).json()
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web-2"]


async def test_unsupported_field_selector_is_400(call: Call) -> None:
    response = await call("GET", f"{PODS}?fieldSelector=spec.bogus%3Dx")
    assert (response.status, response.json()["reason"]) == (400, "BadRequest")


async def test_list_across_namespaces_spans_all_of_them(call: Call) -> None:
    await call("POST", "/api/v1/namespaces/kube-system/pods", pod("dns"))
    listed = (await call("GET", "/api/v1/pods")).json()
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web-1", "web-2", "dns"]


async def test_request_body_over_3_mib_is_413(call: Call) -> None:
    big = b'{"data": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    response = await call("POST", CONFIGMAPS, big)
    assert (response.status, response.json()["reason"]) == (413, "RequestEntityTooLarge")


async def test_malformed_json_body_is_400(call: Call) -> None:
    response = await call("POST", CONFIGMAPS, b"{not json")
    assert response.status == 400


async def test_deployment_reports_every_replica_ready(call: Call) -> None:
    body = {
        "metadata": {"name": "api"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}}},
    }
    created = (await call("POST", DEPLOYMENTS, body)).json()
    assert "status" not in created  # the controller writes it after, as kube's does
    current = (await call("GET", f"{DEPLOYMENTS}/api")).json()
    assert current["status"]["readyReplicas"] == 3
    assert current["status"]["observedGeneration"] == current["metadata"]["generation"] == 1


async def test_scale_subresource_reads_and_patches_replicas(call: Call) -> None:
    body = {
        "metadata": {"name": "api"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}}},
    }
    await call("POST", DEPLOYMENTS, body)
    scale = (await call("GET", f"{DEPLOYMENTS}/api/scale")).json()
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 1)
    assert scale["status"]["selector"] == "app=api"
    patched = await call(
        "PATCH",
        f"{DEPLOYMENTS}/api/scale",
        {"spec": {"replicas": 4}},
        content_type="application/merge-patch+json",
    )
    assert patched.json()["spec"]["replicas"] == 4
    deployment = (await call("GET", f"{DEPLOYMENTS}/api")).json()
    assert deployment["status"]["readyReplicas"] == 4
    assert deployment["metadata"]["generation"] == 2


async def test_deleting_a_namespace_deletes_what_it_holds(call: Call) -> None:
    await call("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    await call("POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "c"}})
    assert (await call("DELETE", "/api/v1/namespaces/team")).status == 200
    assert (await call("GET", "/api/v1/namespaces/team/configmaps/c")).status == 404


async def test_default_namespace_cannot_be_deleted(call: Call) -> None:
    response = await call("DELETE", "/api/v1/namespaces/default")
    assert (response.status, response.json()["reason"]) == (403, "Forbidden")


async def test_secret_string_data_is_stored_base64_in_data(call: Call) -> None:
    body = {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}
    created = (await call("POST", "/api/v1/namespaces/default/secrets", body)).json()
    assert created["data"] == {"password": "aHVudGVyMg=="}
    assert "stringData" not in created
    assert created["type"] == "Opaque"


async def test_service_gets_a_cluster_ip(call: Call) -> None:
    body = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    created = (await call("POST", "/api/v1/namespaces/default/services", body)).json()
    assert created["spec"]["clusterIP"].startswith("10.96.")
    assert created["spec"]["type"] == "ClusterIP"


async def test_a_dry_run_delete_in_delete_options_keeps_the_object(call: Call) -> None:
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}
    assert (await call("DELETE", f"{PODS}/web-1", options)).json()["status"] == "Success"
    assert (await call("GET", f"{PODS}/web-1")).status == 200
    bad = await call("DELETE", f"{PODS}/web-1", {"dryRun": ["Some"]})
    assert (bad.status, bad.json()["message"]) == (400, "unsupported dry run option: 'Some'")


async def test_invalid_names_the_kind_and_carries_a_cause_per_field(call: Call) -> None:
    body = {"metadata": {"name": "api"}, "spec": {"replicas": -1}}
    response = await call("POST", DEPLOYMENTS, body)
    assert response.status == 422
    assert response.json()["message"] == (
        'Deployment.apps "api" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    assert response.json()["details"] == {
        "name": "api",
        "kind": "Deployment",
        "group": "apps",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: -1: must be greater than or equal to 0",
                "field": "spec.replicas",
            }
        ],
    }
    two = {"metadata": {"name": "p"}, "spec": {"containers": [{}, {"name": "ok"}, {}]}}
    listed = (await call("POST", PODS, two)).json()
    assert listed["message"] == (
        'Pod "p" is invalid: [spec.containers[0].name: Required value, '
        "spec.containers[2].name: Required value]"
    )
    assert [c["field"] for c in listed["details"]["causes"]] == [
        "spec.containers[0].name",
        "spec.containers[2].name",
    ]


async def test_conflict_and_already_exists_carry_the_resource_in_details(call: Call) -> None:
    body = {"metadata": {"name": "c"}}
    await call("POST", CONFIGMAPS, body)
    exists = (await call("POST", CONFIGMAPS, body)).json()
    assert (exists["reason"], exists["details"]) == (
        "AlreadyExists",
        {"name": "c", "kind": "configmaps"},
    )
    stale = {"metadata": {"name": "c", "resourceVersion": "1"}, "data": {"a": "b"}}
    conflict = (await call("PUT", f"{CONFIGMAPS}/c", stale)).json()
    assert (conflict["code"], conflict["reason"], conflict["details"]) == (
        409,
        "Conflict",
        {"name": "c", "kind": "configmaps"},
    )
