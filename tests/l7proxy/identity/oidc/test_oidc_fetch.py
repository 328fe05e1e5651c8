"""`fetch_json` against the DevIssuer and against raw TLS servers that misbehave."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trustme

from l7proxy.identity.oidc.fetch import FetchError, fetch_json
from l7proxy.tools.devissuer import DevIssuer

Respond = Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]]


async def raw_server(
    nursery: trio.Nursery, server_context: ssl.SSLContext, respond: Respond
) -> str:
    """Serve `respond` over TLS on loopback; returns the base URL."""

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            async with stream:
                await stream.receive_some(65536)  # the request (small enough for one read)
                await respond(stream)
        except trio.BrokenResourceError:
            pass  # the client gave up first, as some tests intend

    listeners = await nursery.start(
        partial(
            trio.serve_ssl_over_tcp,
            handle,
            0,
            server_context,
            host="127.0.0.1",
            https_compatible=True,
        )
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    return f"https://127.0.0.1:{port}"


def answer(raw: bytes) -> Respond:
    async def respond(stream: trio.SSLStream[trio.SocketStream]) -> None:
        await stream.send_all(raw)

    return respond


def http_200(body: bytes, *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (size, body)


async def test_fetches_discovery(issuer: DevIssuer, client_context: ssl.SSLContext) -> None:
    url = issuer.issuer + "/.well-known/openid-configuration"
    doc, headers = await fetch_json(url, ssl_context=client_context, timeout=5)
    assert doc["issuer"] == issuer.issuer
    assert doc["jwks_uri"] == issuer.issuer + "/jwks"
    assert headers["content-type"] == "application/json"
    assert issuer.requests["/.well-known/openid-configuration"] == 1


async def test_non_200_is_an_error(issuer: DevIssuer, client_context: ssl.SSLContext) -> None:
    with pytest.raises(FetchError, match="answered HTTP 404"):
        await fetch_json(issuer.issuer + "/nope", ssl_context=client_context, timeout=5)


async def test_untrusted_certificate_is_an_error(issuer: DevIssuer) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    with pytest.raises(FetchError, match="certificate verify failed"):
        await fetch_json(issuer.issuer + "/jwks", ssl_context=other, timeout=5)


async def test_https_only(client_context: ssl.SSLContext) -> None:
    with pytest.raises(FetchError, match="not an https URL"):
        await fetch_json("http://127.0.0.1/jwks", ssl_context=client_context, timeout=5)
    with pytest.raises(FetchError, match="not a valid URL"):
        await fetch_json("https://127.0.0.1:99999/", ssl_context=client_context, timeout=5)


async def test_connection_refused(client_context: ssl.SSLContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match="cannot fetch"):
        await fetch_json(f"https://127.0.0.1:{port}/", ssl_context=client_context, timeout=5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (http_200(b"{not json"), "did not answer with JSON"),
        (http_200(b"[1, 2]"), "did not answer with a JSON object"),
        (http_200(b"{}", length=2 << 20), "answered more than"),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            + b"10000\r\n"
            + b" " * 0x10000,
            "answered more than",
        ),
        (http_200(b"{}", length=100), "without sending complete message body"),
        (b"NOT HTTP\r\n\r\n", "cannot fetch"),
    ],
)
async def test_bad_answers(
    nursery: trio.Nursery,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    raw: bytes,
    message: str,
) -> None:
    base = await raw_server(nursery, server_context, answer(raw))
    with pytest.raises(FetchError, match=message):
        await fetch_json(base + "/", ssl_context=client_context, timeout=5, max_bytes=1000)


async def test_timeout(
    nursery: trio.Nursery, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def never(stream: trio.SSLStream[trio.SocketStream]) -> None:
        await trio.sleep_forever()

    base = await raw_server(nursery, server_context, never)
    with pytest.raises(FetchError, match=r"did not answer within 0\.2s"):
        await fetch_json(base + "/", ssl_context=client_context, timeout=0.2)
