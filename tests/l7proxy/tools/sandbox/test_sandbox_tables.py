"""Server-side printing: the Tables `kubectl get` asks for."""

from __future__ import annotations

import pytest

from l7proxy.tools.sandbox.tables import human_duration
from tests.l7proxy.tools.sandbox.sandbox_fakes import Call, FakeClock

KUBECTL_GET_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
PODS = "/api/v1/namespaces/default/pods"


async def test_pod_table_has_kubectl_columns_and_partial_metadata_rows(
    call: Call, clock: FakeClock
) -> None:
    clock.now += 300
    response = await call("GET", PODS, accept=KUBECTL_GET_ACCEPT)
    assert response.response_headers[b"content-type"].startswith(b"application/json;as=Table")
    table = response.json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert table["metadata"]["resourceVersion"].isdigit()
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Ready", "Status", "Restarts", "Age"]
    first = table["rows"][0]
    assert first["cells"][:5] == ["web-1", "1/1", "Running", "0", "5m"]
    assert first["object"]["kind"] == "PartialObjectMetadata"
    assert first["object"]["apiVersion"] == "meta.k8s.io/v1"
    assert first["object"]["metadata"]["namespace"] == "default"  # kubectl -A prints it
    assert "spec" not in first["object"]


async def test_include_object_param_selects_full_object_or_none(call: Call) -> None:
    full = await call("GET", f"{PODS}?includeObject=Object", accept=KUBECTL_GET_ACCEPT)
    assert full.json()["rows"][0]["object"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    bare = await call("GET", f"{PODS}?includeObject=None", accept=KUBECTL_GET_ACCEPT)
    assert "object" not in bare.json()["rows"][0]


async def test_get_of_one_object_as_table_has_one_row(call: Call) -> None:
    table = (await call("GET", f"{PODS}/web-2", accept=KUBECTL_GET_ACCEPT)).json()
    assert [row["cells"][0] for row in table["rows"]] == ["web-2"]


async def test_deployment_table_shows_ready_up_to_date_and_available(call: Call) -> None:
    body = {"metadata": {"name": "api"}, "spec": {"replicas": 2}}
    await call("POST", "/apis/apps/v1/namespaces/default/deployments", body)
    table = (
        await call("GET", "/apis/apps/v1/namespaces/default/deployments", accept=KUBECTL_GET_ACCEPT)
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
    ]
    assert table["rows"][0]["cells"] == ["api", "2/2", 2, 2, "0s"]


async def test_other_kinds_print_name_and_age(call: Call) -> None:
    table = (await call("GET", "/api/v1/namespaces", accept=KUBECTL_GET_ACCEPT)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert [r["cells"][0] for r in table["rows"]] == ["default", "kube-system"]


async def test_protobuf_first_then_json_accept_is_answered_with_json(call: Call) -> None:
    response = await call(
        "GET", PODS, accept="application/vnd.kubernetes.protobuf,application/json"
    )
    assert response.response_headers[b"content-type"] == b"application/json"
    assert response.json()["kind"] == "PodList"


async def test_accept_without_json_is_not_acceptable(call: Call) -> None:
    response = await call("GET", PODS, accept="application/vnd.kubernetes.protobuf")
    assert response.status == 406


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (9 * 3600, "9h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_age_is_printed_like_kubes_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("path", "columns", "cells"),
    [
        (
            "/api/v1/nodes",
            ["Name", "Status", "Roles", "Age", "Version"],
            ["sandbox-node-1", "Ready", "<none>", "0s", "v1.31.0"],
        ),
        (
            "/api/v1/namespaces/default/services",
            ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"],
            ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "0s"],
        ),
        (
            "/apis/batch/v1/namespaces/default/jobs",
            ["Name", "Status", "Completions", "Age"],
            ["migrate", "Complete", "1/1", "0s"],
        ),
        (
            "/api/v1/namespaces/kube-system/serviceaccounts",
            ["Name", "Secrets", "Age"],
            ["default", 0, "0s"],
        ),
        (
            "/api/v1/namespaces/default/events",
            ["Last Seen", "Type", "Reason", "Object", "Message"],
            [
                "0s",
                "Normal",
                "Scheduled",
                "pod/web-1",
                "Successfully assigned default/web-1 to sandbox-node-1",
            ],
        ),
    ],
)
async def test_seeded_kinds_print_the_columns_kubectl_shows(
    call: Call, path: str, columns: list[str], cells: list[object]
) -> None:
    table = (await call("GET", path, accept=KUBECTL_GET_ACCEPT)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == columns
    assert table["rows"][0]["cells"] == cells
