"""HTTP-level checks with curl: both HTTP versions, header hygiene, Audit-Id, health."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trustme
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import (
    Stack,
    event_for,
    kubectl_argv,
    kubectl_env,
    start_stack,
    wait_for_event,
)

READER = ("ai-agents-readonly",)


async def curl(
    stack: Stack, path: str, *args: str, http: str = "--http2"
) -> tuple[int, dict[str, str], bytes]:
    """Status, response headers (lower-case names) and body of one curl request."""
    result = await trio.run_process(
        [
            "curl",
            "-sS",
            http,
            "--cacert",
            str(stack.tmp / "ca.pem"),
            "-D",
            "-",
            "-o",
            "-",
            *args,
            f"{stack.gateway_url}{path}",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=True,
    )
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("http", ["--http2", "--http1.1"])
async def test_every_response_carries_the_audit_id_of_its_event(stack: Stack, http: str) -> None:
    token = stack.token("agent-7", READER)
    status, headers, _ = await curl(
        stack,
        "/k8s/dev/api/v1/namespaces/default/pods",
        "-H",
        f"Authorization: Bearer {token}",
        http=http,
    )
    assert status == 200
    denied, denied_headers, body = await curl(
        stack,
        "/k8s/dev/api/v1/namespaces/default/secrets",
        "-H",
        f"Authorization: Bearer {token}",
        http=http,
    )
    assert denied == 403
    assert json.loads(body)["kind"] == "Status"
    allowed = await event_for(stack, headers["audit-id"])
    assert allowed["verb"] == "list"
    assert allowed["http_version"] == ("2" if http == "--http2" else "1.1")
    assert (await event_for(stack, denied_headers["audit-id"]))["decision"] == "deny"


async def test_client_credentials_and_proxy_headers_never_reach_the_cluster(stack: Stack) -> None:
    token = stack.token("agent-7", READER)
    status, _, _ = await curl(
        stack,
        "/k8s/dev/api/v1/namespaces/default/pods/web-1",
        "--http1.1",
        "-H",
        f"Authorization: Bearer {token}",
        "-H",
        "Proxy-Authorization: Basic c2VjcmV0",
        "-H",
        "Connection: keep-alive, X-Hop",
        "-H",
        "X-Hop: should-not-pass",
        "-H",
        "X-End-To-End: passes",
    )
    assert status == 200
    seen = stack.cluster.seen[-1]
    names = [k for k, _ in seen.headers]
    assert dict(seen.headers)[b"authorization"] == b"Bearer sandbox-service-token"
    assert names.count(b"authorization") == 1
    assert b"proxy-authorization" not in names
    assert b"x-hop" not in names
    assert dict(seen.headers)[b"x-end-to-end"] == b"passes"


async def test_no_token_is_an_unauthorized_status(stack: Stack) -> None:
    status, headers, body = await curl(stack, "/k8s/dev/api/v1/pods")
    assert status == 401
    assert json.loads(body)["message"] == "Unauthorized: no bearer token"
    event = await event_for(stack, headers["audit-id"])
    assert event["decision"] == "unauthenticated"


async def test_health_endpoints_answer_without_a_token(stack: Stack) -> None:
    for path in ("/healthz", "/readyz"):
        status, _, body = await curl(stack, path)
        assert (status, body) == (200, b"ok")
    status, _, body = await curl(stack, "/metrics")
    assert status == 200
    assert b"l7proxy_requests" in body


async def test_readyz_is_unavailable_until_the_provider_keys_are_fetched_while_healthz_is_ok(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    # An issuer with no discovery document: its keys cannot be fetched, so not ready.
    (tmp_path / "other").mkdir()
    other = await start_stack(nursery, ca, tmp_path / "other")
    (tmp_path / "unready").mkdir()
    unready = await start_stack(
        nursery, ca, tmp_path / "unready", provider={"issuer": other.gateway_url + "/nowhere"}
    )
    status, _, body = await curl(unready, "/readyz")
    assert (status, body) == (503, b"not ready")
    status, _, body = await curl(unready, "/healthz")
    assert (status, body) == (200, b"ok")


async def test_a_path_outside_the_prefix_is_a_not_found_status_counted_in_metrics(
    stack: Stack,
) -> None:
    status, headers, body = await curl(stack, "/api/v1/pods")
    assert status == 404
    assert json.loads(body)["reason"] == "NotFound"
    event = await event_for(stack, headers["audit-id"])
    _, _, metrics = await curl(stack, "/metrics")
    counted = [
        line
        for line in metrics.decode().splitlines()
        if line.startswith("l7proxy_requests_total{") and 'code="404"' in line
    ]
    assert counted, metrics.decode()
    assert f'decision="{event["decision"]}"' in counted[0]


async def in_flight(stack: Stack) -> float:
    _, _, body = await curl(stack, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    return families["l7proxy_requests_in_flight"].samples[0].value


async def test_an_open_watch_is_counted_in_flight_until_it_ends(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    assert await in_flight(stack) == 0
    watch = await trio.lowlevel.open_process(
        kubectl_argv(kc, "get", "pods", "-w"), env=kubectl_env(kc)
    )
    try:
        with trio.fail_after(30):
            while await in_flight(stack) != 1:  # noqa: ASYNC110 (polled: a scrape is the probe)
                await trio.sleep(0.05)
    finally:
        watch.kill()
        await watch.wait()
    with trio.fail_after(30):
        while await in_flight(stack) != 0:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_a_request_body_streams_to_the_cluster(stack: Stack) -> None:
    token = stack.token("admin-1", ("platform-admins",))
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big"},
        "data": {"blob": "x" * 2_000_000},
    }
    payload = stack.tmp / "configmap.json"
    payload.write_text(json.dumps(configmap))
    status, _, body = await curl(
        stack,
        "/k8s/dev/api/v1/namespaces/default/configmaps",
        "-X",
        "POST",
        "-H",
        f"Authorization: Bearer {token}",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        f"@{payload}",
    )
    assert status == 201, body[:200]
    event = await wait_for_event(stack, lambda e: e["resource"] == "configmaps")
    assert int(event["bytes_in"]) > 2_000_000  # type: ignore[call-overload]


@pytest.mark.parametrize("http", ["--http2", "--http1.1"])
async def test_limits_are_refused_with_clear_statuses(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, http: str
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, limits={"max_header_bytes": 16384})
    status, headers, body = await curl(
        stack, "/k8s/dev/api/v1/pods", "-H", "X-Big: " + "v" * 20_000, http=http
    )
    assert status == 431
    assert json.loads(body)["message"] == "request header fields are too large"
    status, headers, body = await curl(stack, "/k8s/dev/api/v1/" + "a" * 9000, http=http)
    assert status == 414
    event = await event_for(stack, headers["audit-id"])
    assert (event["status"], event["decision"]) == (414, "deny")


@pytest.mark.parametrize(
    "path",
    [
        "/k8s/dev/api/v1/namespaces/default/../kube-system/secrets",
        "/k8s/dev/api/v1/namespaces/default/%2e%2e/kube-system/secrets",
        "/k8s/dev/api/v1/namespaces/kube-system%2fsecrets",
        "/k8s/dev/api//v1/pods",
        "/k8s/dev/api/v1/pods?watch=1&watch=0",
    ],
)
async def test_a_path_the_cluster_could_read_differently_is_refused_before_authorization(
    stack: Stack, path: str
) -> None:
    token = stack.token("admin-1", ("platform-admins",))
    status, headers, body = await curl(
        stack, path, "--path-as-is", "-H", f"Authorization: Bearer {token}"
    )
    assert status == 400, body
    assert json.loads(body)["reason"] == "BadRequest"
    event = await event_for(stack, headers["audit-id"])
    assert (event["decision"], event["policy"]) == ("deny", "")
    assert all(r.target != path.removeprefix("/k8s/dev") for r in stack.cluster.seen)
