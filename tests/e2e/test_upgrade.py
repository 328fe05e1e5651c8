"""Protocol upgrades through the gateway, against an upstream that echoes after its 101:
the splice itself, independent of any Kubernetes streaming protocol."""

from __future__ import annotations

from pathlib import Path

import trio
import trustme

from l7proxy.wire.exchange import Exchange
from l7proxy.wire.h1_server import wants_upgrade
from tests.e2e.stack import Stack, start_stack, wait_for_event

ADMIN = ("platform-admins",)
READER = ("ai-agents-readonly",)


async def _echo_after_upgrade(exchange: Exchange) -> None:
    if not wants_upgrade(exchange.head):
        await exchange.start_response(400, [(b"content-length", b"0")])
        await exchange.finish()
        return
    stream = await exchange.upgrade(
        [(b"connection", b"Upgrade"), (b"upgrade", b"echo"), (b"audit-id", b"cluster-side")]
    )
    while data := await stream.receive_some():
        await stream.send_all(data.upper())


async def _open(
    stack: Stack, path: str, token: str
) -> tuple[trio.SSLStream[trio.SocketStream], bytes]:
    port = int(stack.gateway_url.rsplit(":", 1)[1])
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    context = stack.client_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    tls = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    await tls.send_all(
        f"GET {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {token}\r\n"
        "connection: Upgrade\r\nupgrade: echo\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await tls.receive_some()
    return tls, head


async def test_an_allowed_upgrade_is_spliced_both_ways_and_audited(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, upstream=_echo_after_upgrade)
    path = "/k8s/dev/api/v1/namespaces/default/pods/web-1/exec?command=sh&stdin=true"
    with trio.fail_after(10):
        tls, head = await _open(stack, path, stack.token("admin-1", ADMIN))
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"cluster-side" not in head  # the gateway's Audit-Id replaces the cluster's
        echoed = head.partition(b"\r\n\r\n")[2]
        for chunk in (b"hello", b" spliced", b" world" * 10_000):
            await tls.send_all(chunk)
            while len(echoed) < len(chunk):
                echoed += await tls.receive_some()
            assert echoed == chunk.upper()
            echoed = b""
        await tls.aclose()
    event = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
    assert (event["status"], event["upgrade"], event["ended_by"]) == (101, "echo", "client")
    assert event["bytes_in"] == event["bytes_out"] == len(b"hello spliced") + 60_000


async def test_a_denied_exec_never_reaches_the_cluster(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, upstream=_echo_after_upgrade)
    path = "/k8s/dev/api/v1/namespaces/default/pods/web-1/exec?command=sh"
    with trio.fail_after(10):
        tls, head = await _open(stack, path, stack.token("agent-7", READER))
        await tls.aclose()
    assert head.startswith(b"HTTP/1.1 403 ")
    event = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
    assert (event["decision"], event["verb"]) == ("deny", "get")
    assert "create" in str(event["reason"])
