"""A forwarded body's framing is always the gateway's own: whatever `Content-Length` or
`Transfer-Encoding` a client sent, the cluster sees the body framed by the gateway (chunked
over HTTP/1.1, DATA frames alone over HTTP/2) and exactly the bytes the client sent.

The client side of request smuggling (ambiguous framing refused with 400) is in
tests/l7proxy/wire/test_h1_smuggling.py; this is what reaches the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

from l7proxy.wire.exchange import Exchange
from tests.e2e.stack import start_stack
from tests.e2e.test_http import curl

ADMIN = ("platform-admins",)
PATH = "/api/v1/namespaces/default/configmaps"
FRAMING = (b"content-length", b"transfer-encoding")


@dataclass(frozen=True)
class Received:
    method: str
    framing: list[tuple[bytes, bytes]]  # the framing fields the cluster was sent
    body: bytes


class _RecordingCluster:
    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle(self, exchange: Exchange) -> None:
        body = b""
        while chunk := await exchange.receive():
            body += chunk
        framing = [(k, v) for k, v in exchange.head.headers if k in FRAMING]
        self.received.append(Received(exchange.head.method, framing, body))
        await exchange.start_response(201, [(b"content-length", b"2")])
        await exchange.send(b"{}")
        await exchange.finish()


CHUNKED = [(b"transfer-encoding", b"chunked")]
EMPTY_CONTENT = [(b"content-length", b"0")]
# curl's arguments: a body with its Content-Length; one sent chunked (HTTP/1.1) or with no
# length (HTTP/2); an empty body.
SIZED = ["--data-binary", "hello"]
UNSIZED = ["-H", "transfer-encoding: chunked", "--data-binary", "hello"]
EMPTY = ["-X", "POST", "--data-binary", ""]
# (variant, curl's HTTP version and arguments, body, the framing an HTTP/1.1 cluster sees)
VARIANTS = [
    ("h1-content-length", "--http1.1", SIZED, b"hello", CHUNKED),
    ("h1-chunked", "--http1.1", UNSIZED, b"hello", CHUNKED),
    ("h1-empty", "--http1.1", EMPTY, b"", EMPTY_CONTENT),
    ("h2-content-length", "--http2", SIZED, b"hello", CHUNKED),
    ("h2-no-content-length", "--http2", UNSIZED, b"hello", CHUNKED),
    # curl ends this stream with an empty DATA frame, not on its HEADERS: the gateway only
    # learns at the end that the body is empty, so it is forwarded as a chunked empty body.
    ("h2-empty", "--http2", EMPTY, b"", CHUNKED),
]


@pytest.mark.parametrize("cluster_alpn", [("http/1.1",), ("h2",)], ids=["to-h1", "to-h2"])
@pytest.mark.parametrize(
    ("http", "args", "body", "h1_framing"),
    [v[1:] for v in VARIANTS],
    ids=[v[0] for v in VARIANTS],
)
async def test_the_cluster_receives_the_body_whole_in_the_gateways_own_framing(
    nursery: trio.Nursery,
    ca: trustme.CA,
    tmp_path: Path,
    cluster_alpn: tuple[str, ...],
    http: str,
    args: list[str],
    body: bytes,
    h1_framing: list[tuple[bytes, bytes]],
) -> None:
    cluster = _RecordingCluster()
    stack = await start_stack(
        nursery, ca, tmp_path, upstream=cluster.handle, cluster_alpn=cluster_alpn
    )
    token = stack.token("admin-1", ADMIN)
    status, _, _ = await curl(
        stack,
        "/k8s/dev" + PATH,
        "-H",
        f"authorization: Bearer {token}",
        "-H",
        "content-type: application/json",
        *args,
        http=http,
    )
    assert status == 201
    # HTTP/2 frames the body itself (RFC 9113 §8.1): no framing field reaches the cluster.
    framing = h1_framing if cluster_alpn == ("http/1.1",) else []
    assert cluster.received == [Received("POST", framing, body)]
