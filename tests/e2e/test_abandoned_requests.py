"""A client that goes away in the middle of its request body: the audit event says the
client ended it, and the service log has no error for it."""

from __future__ import annotations

from urllib.parse import urlsplit

import structlog
import structlog.testing
import trio

from tests.e2e.stack import Stack, wait_for_event


async def _send_half_a_body(stack: Stack, token: str) -> None:
    """An HTTP/1.1 POST promising 1000 body bytes, of which 10 are sent before closing."""
    url = urlsplit(stack.gateway_url)
    assert url.hostname is not None and url.port is not None
    tcp = await trio.open_tcp_stream(url.hostname, url.port)
    stream = trio.SSLStream(tcp, stack.client_ssl_context(), server_hostname=url.hostname)
    head = (
        "POST /k8s/dev/api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    await stream.send_all(head.encode() + b'{"kind": "')
    await trio.sleep(0.2)  # let the gateway start forwarding before the client goes
    await stream.aclose()


async def test_a_client_gone_mid_body_is_audited_as_ended_by_the_client(stack: Stack) -> None:
    token = stack.token("admin-1", ("platform-admins",))
    with structlog.testing.capture_logs() as logs:
        await _send_half_a_body(stack, token)
        event = await wait_for_event(stack, lambda e: e["resource"] == "configmaps")
    assert [line for line in logs if line["log_level"] in ("error", "critical")] == []
    assert event["ended_by"] == "client"
    assert int(event["bytes_in"]) == 10  # type: ignore[call-overload]
