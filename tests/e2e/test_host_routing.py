"""Connections reached by host name (`routing.host_suffix`), with a wildcard certificate:
kubectl with `tls-server-name` as `l7proxy kubeconfig --routing host` writes it, paths from
the root; a server name and a Host header that disagree are refused with 421."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from tests.e2e.stack import (
    HOST_SUFFIX,
    Stack,
    kubectl,
    port_forward_round_trip,
    start_kubectl,
    start_stack,
    wait_for_event,
)

ADMIN = ("platform-admins",)
READER = ("ai-agents-readonly",)


@pytest.fixture
async def stack(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Stack]:
    yield await start_stack(nursery, ca, tmp_path, host_routing=True)


async def test_get_raw_takes_the_path_from_the_root(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER), by_host=True)
    result = await kubectl(kc, "get", "--raw", "/version", check=True)
    assert json.loads(result.stdout)["gitVersion"].startswith("v1.")
    assert stack.cluster.seen[-1].target == "/version"
    event = await wait_for_event(stack, lambda e: e["path"] == "/version")
    assert (event["connection"], event["decision"]) == ("dev", "allow")


@pytest.mark.parametrize("http1", [False, True], ids=["h2", "http1.1"])
async def test_get_and_a_denial_work_as_under_the_prefix(stack: Stack, http1: bool) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER), by_host=True)
    result = await kubectl(kc, "get", "pods", "--no-headers", check=True, http1=http1)
    assert {line.split()[0] for line in result.stdout.decode().splitlines()} == {"web-1", "web-2"}
    denied = await kubectl(kc, "delete", "pod", "web-1", http1=http1)
    assert denied.returncode == 1
    assert b"Error from server (Forbidden)" in denied.stderr
    assert b'connection "dev"' in denied.stderr or b"dev" in denied.stderr


async def test_exec_and_port_forward_by_host(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN), by_host=True)
    result = await kubectl(kc, "exec", "-i", "web-1", "--", "cat", stdin=b"by host")
    assert (result.returncode, result.stdout) == (0, b"by host")
    await port_forward_round_trip(kc)
    event = await wait_for_event(stack, lambda e: e["subresource"] == "portforward")
    assert (event["connection"], event["path"]) == (
        "dev",
        "/api/v1/namespaces/default/pods/web-1/portforward",
    )


async def test_watch_by_host_streams_events(stack: Stack) -> None:
    reader = stack.kubeconfig(stack.token("agent-7", READER), name="reader", by_host=True)
    admin = stack.kubeconfig(stack.token("admin-1", ADMIN), name="admin", by_host=True)
    async with trio.open_nursery() as nursery:
        process = await start_kubectl(nursery, reader, "get", "pods", "-w", "--no-headers")
        seen = b""
        with trio.fail_after(30):
            while seen.count(b"\n") < 2:
                seen += await process.stdout.receive_some()
            await kubectl(admin, "run", "by-host", "--image=nginx", check=True)
            while b"by-host" not in seen:
                seen += await process.stdout.receive_some()
        process.kill()


async def _raw_get(
    stack: Stack, server_name: str | None, host: str, path: str
) -> tuple[str, bytes]:
    """One HTTP/1.1 GET over TLS with this SNI (None: none) and this Host header: the
    status line and the body."""
    port = int(stack.gateway_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(stack.tmp / "ca.pem"))
    context.check_hostname = server_name is not None  # the chain is verified either way
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(tcp, context, server_hostname=server_name, https_compatible=True)
    token = stack.token("admin-1", ADMIN)
    answer = b""
    async with tls:
        await tls.send_all(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        with trio.fail_after(10):
            while chunk := await tls.receive_some():
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


async def test_server_name_and_host_naming_different_connections_is_misdirected(
    stack: Stack,
) -> None:
    seen = len(stack.cluster.seen)
    status_line, body = await _raw_get(stack, "dev" + HOST_SUFFIX, "down" + HOST_SUFFIX, "/version")
    assert status_line.startswith("HTTP/1.1 421")
    status = json.loads(body)
    assert (status["kind"], status["code"], status["reason"]) == (
        "Status",
        421,
        "MisdirectedRequest",
    )
    assert '"dev"' in status["message"] and '"down"' in status["message"]
    assert len(stack.cluster.seen) == seen  # nothing reached the cluster
    event = await wait_for_event(stack, lambda e: e["status"] == 421)
    assert event["decision"] == "deny"


async def test_without_a_server_name_the_host_header_names_the_connection(stack: Stack) -> None:
    status_line, body = await _raw_get(stack, None, "dev" + HOST_SUFFIX + ":443", "/version")
    assert status_line.startswith("HTTP/1.1 200")
    assert json.loads(body)["gitVersion"].startswith("v1.")
    assert stack.cluster.seen[-1].target == "/version"


async def test_a_server_name_outside_the_suffix_keeps_routing_by_path(stack: Stack) -> None:
    # SNI names the gateway itself, so the Host header does not route.
    status_line, _ = await _raw_get(stack, "localhost", "dev" + HOST_SUFFIX, "/version")
    assert status_line.startswith("HTTP/1.1 404")
    status_line, body = await _raw_get(stack, "localhost", "localhost", "/k8s/dev/version")
    assert status_line.startswith("HTTP/1.1 200")
    assert json.loads(body)["gitVersion"].startswith("v1.")
