"""Discovery, version and health: what kubectl asks before anything else."""

from __future__ import annotations

from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


async def test_version_reports_the_configured_release(call: Call) -> None:
    response = await call("GET", "/version")
    assert response.status == 200
    info = response.json()
    assert (info["major"], info["minor"], info["gitVersion"]) == ("1", "31", "v1.31.0")
    assert info["platform"] == "linux/amd64"


async def test_health_endpoints_answer_ok_without_credentials(call: Call) -> None:
    for path in ("/healthz", "/readyz", "/livez"):
        response = await call("GET", path, token=None)
        assert (response.status, response.body) == (200, b"ok")


async def test_aggregated_discovery_request_gets_legacy_json_so_client_go_falls_back(
    call: Call,
) -> None:
    # client-go's ContentTypeIsGVK: only a Content-Type naming APIGroupDiscoveryList is
    # parsed as aggregated; plain application/json is parsed as APIVersions/APIGroupList.
    api = await call("GET", "/api", accept=AGGREGATED_ACCEPT)
    apis = await call("GET", "/apis", accept=AGGREGATED_ACCEPT)
    assert api.response_headers[b"content-type"] == b"application/json"
    assert apis.response_headers[b"content-type"] == b"application/json"
    assert api.json()["kind"] == "APIVersions"
    assert api.json()["versions"] == ["v1"]
    assert apis.json()["kind"] == "APIGroupList"
    assert [g["name"] for g in apis.json()["groups"]] == ["apps", "batch", "events.k8s.io"]
    assert apis.json()["groups"][0] == {
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    }


async def test_accept_naming_only_aggregated_discovery_is_not_acceptable(call: Call) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    response = await call("GET", "/apis", accept=accept)
    assert response.status == 406
    assert response.json()["reason"] == "NotAcceptable"


async def test_core_discovery_lists_resources_with_scope_kind_verbs_and_short_names(
    call: Call,
) -> None:
    doc = (await call("GET", "/api/v1")).json()
    assert (doc["kind"], doc["groupVersion"]) == ("APIResourceList", "v1")
    by_name = {r["name"]: r for r in doc["resources"]}
    assert set(by_name) >= {
        "namespaces",
        "pods",
        "pods/log",
        "pods/exec",
        "pods/attach",
        "pods/portforward",
        "pods/status",
        "configmaps",
        "secrets",
        "services",
        "nodes",
        "serviceaccounts",
        "events",
    }
    assert by_name["nodes"]["namespaced"] is False
    assert by_name["serviceaccounts"]["shortNames"] == ["sa"]
    assert by_name["events"]["shortNames"] == ["ev"]
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["namespaces"]["shortNames"] == ["ns"]
    assert by_name["pods"]["namespaced"] is True
    assert by_name["pods"]["kind"] == "Pod"
    assert by_name["pods"]["shortNames"] == ["po"]
    assert {"get", "list", "watch", "create", "patch", "delete"} <= set(by_name["pods"]["verbs"])
    assert by_name["configmaps"]["shortNames"] == ["cm"]
    assert by_name["services"]["shortNames"] == ["svc"]
    assert by_name["pods/exec"]["kind"] == "PodExecOptions"
    assert by_name["pods/log"]["verbs"] == ["get"]


async def test_apps_discovery_lists_deployments_and_their_subresources(call: Call) -> None:
    doc = (await call("GET", "/apis/apps/v1")).json()
    assert doc["groupVersion"] == "apps/v1"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert set(by_name) == {
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
    }
    assert by_name["replicasets"]["shortNames"] == ["rs"]
    assert by_name["deployments"]["kind"] == "Deployment"
    assert by_name["deployments/scale"]["group"] == "autoscaling"
    assert (await call("GET", "/apis/apps")).json()["kind"] == "APIGroup"


async def test_unknown_group_version_is_not_found(call: Call) -> None:
    assert (await call("GET", "/apis/batch/v2")).status == 404
    assert (await call("GET", "/apis/storage.k8s.io/v1")).status == 404


async def test_batch_and_events_groups_list_jobs_and_events(call: Call) -> None:
    jobs = {r["name"]: r for r in (await call("GET", "/apis/batch/v1")).json()["resources"]}
    assert (jobs["jobs"]["kind"], jobs["jobs"]["categories"]) == ("Job", ["all"])
    events = (await call("GET", "/apis/events.k8s.io/v1")).json()["resources"]
    assert [(e["name"], e["namespaced"]) for e in events] == [("events", True)]


async def test_openapi_v3_declares_field_validation_on_each_kinds_patch(call: Call) -> None:
    # cli-runtime's query_param_verifier_v3 skips client-side validation (which would need
    # the full schema) when the PATCH operation for the GVK lists the query parameter.
    root = (await call("GET", "/openapi/v3")).json()
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    spec = (await call("GET", url)).json()
    patches = [p["patch"] for p in spec["paths"].values()]
    [deployment] = [
        p for p in patches if p["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    ]
    params = {(p["name"], p["in"]) for p in deployment["parameters"]}
    assert {("fieldValidation", "query"), ("dryRun", "query")} <= params
