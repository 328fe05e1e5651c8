"""Authentication, the request record, and errors for what is not served."""

from __future__ import annotations

from l7proxy.tools.sandbox import SandboxCluster
from tests.l7proxy.tools.sandbox.sandbox_fakes import TOKEN, Call, FakeExchange, auth_headers

UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


async def test_request_without_token_is_unauthorized_status(call: Call) -> None:
    response = await call("GET", "/api/v1/namespaces/default/pods", token=None)
    assert response.status == 401
    assert response.json() == UNAUTHORIZED


async def test_unknown_token_is_unauthorized_even_on_public_paths(call: Call) -> None:
    for path in ("/api/v1/pods", "/version", "/healthz"):
        response = await call("GET", path, token="not-a-token")
        assert (response.status, response.json()) == (401, UNAUTHORIZED)


async def test_seen_records_each_request_as_received_and_repr_hides_headers(
    cluster: SandboxCluster,
) -> None:
    headers = [*auth_headers(), (b"impersonate-user", b"mallory")]
    await cluster.handle(FakeExchange("GET", "/api/v1/pods?limit=1", headers))
    await cluster.handle(FakeExchange("GET", "/api", auth_headers("wrong")))
    first, second = cluster.seen
    assert (first.method, first.target, first.user) == ("GET", "/api/v1/pods?limit=1", "alice")
    assert first.headers == tuple(headers)
    assert second.user is None
    assert TOKEN not in repr(first) and "mallory" not in repr(first)


async def test_seen_keeps_only_the_latest_thousand_requests(cluster: SandboxCluster) -> None:
    for i in range(1005):
        await cluster.handle(FakeExchange("GET", f"/healthz?n={i}"))
    assert len(cluster.seen) == 1000
    assert cluster.seen[0].target == "/healthz?n=5"


async def test_unknown_path_is_not_found_status(call: Call) -> None:
    for path in ("/nope", "/api/v1/widgets", "/api/v1/namespaces/default/pods/web-1/extra/x"):
        response = await call("GET", path)
        assert response.status == 404, path
        assert response.json()["reason"] == "NotFound"


async def test_unsupported_method_is_method_not_allowed_status(call: Call) -> None:
    for method, path in (
        ("POST", "/api/v1/namespaces/default/pods/web-1"),
        ("PUT", "/api/v1/namespaces/default/pods"),
        ("DELETE", "/api/v1/namespaces"),
        ("POST", "/api/v1"),
        ("POST", "/healthz"),
    ):
        response = await call(method, path, {})
        assert response.status == 405, (method, path)
        assert response.json()["reason"] == "MethodNotAllowed"


async def test_exec_attach_and_port_forward_ask_for_an_upgrade(call: Call) -> None:
    for sub in ("exec?command=ls", "attach", "portforward?ports=80"):
        response = await call("POST", f"/api/v1/namespaces/default/pods/web-1/{sub}")
        assert response.status == 400
        assert response.json()["message"] == "Upgrade request required"
