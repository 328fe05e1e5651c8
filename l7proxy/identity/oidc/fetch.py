"""HTTPS GET of one small JSON document (OIDC discovery, JWKS): h11 over a trio TLS stream.

A dedicated client keeps the identity path free of a general HTTP stack: https only, one
request per connection, no redirects, a time limit over the whole exchange and a size limit.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import h11
import trio

from l7proxy import __version__

_CHUNK = 64 * 1024


class FetchError(Exception):
    """The document could not be fetched or is not a JSON object; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The time limit is a parameter (not the caller's cancel scope) so that running out of time is a
# `FetchError` naming the URL, like every other way a fetch fails.
async def fetch_json(
    url: str,
    *,
    ssl_context: ssl.SSLContext,
    timeout: float,  # noqa: ASYNC109
    max_bytes: int = 1 << 20,
) -> tuple[dict[str, object], Mapping[str, str]]:
    """The JSON object at `url` and the response headers (lower-case names)."""
    try:
        with trio.fail_after(timeout):
            headers, body = await _get(url, ssl_context, max_bytes)
    except trio.TooSlowError:
        raise FetchError(f"{url} did not answer within {timeout:g}s") from None
    except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
        raise FetchError(f"cannot fetch {url}: {_describe(exc)}") from exc
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError(f"{url} did not answer with JSON") from exc
    if not isinstance(doc, dict):
        raise FetchError(f"{url} did not answer with a JSON object")
    return doc, headers


def _describe(exc: BaseException) -> str:
    """TLS failures arrive as BrokenResourceError; the useful text is on their cause."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
    return str(cause or exc) or type(exc).__name__


async def _get(
    url: str, ssl_context: ssl.SSLContext, max_bytes: int
) -> tuple[dict[str, str], bytes]:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 443
    except ValueError:
        raise FetchError(f"not a valid URL: {url!r}") from None
    if parts.scheme != "https" or not host:
        raise FetchError(f"not an https URL: {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = h11.Request(
        method="GET",
        target=target,
        headers=[
            ("Host", parts.netloc.rpartition("@")[2]),
            ("Accept", "application/json"),
            ("User-Agent", f"l7proxy/{__version__}"),
            ("Connection", "close"),
        ],
    )
    stream = await trio.open_ssl_over_tcp_stream(
        host, port, ssl_context=ssl_context, https_compatible=True
    )
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        return await _read_response(conn, stream, url, max_bytes)


async def _read_response(
    conn: h11.Connection, stream: trio.abc.ReceiveStream, url: str, max_bytes: int
) -> tuple[dict[str, str], bytes]:
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_CHUNK)))
        elif isinstance(event, h11.Response):
            if event.status_code != 200:
                raise FetchError(f"{url} answered HTTP {event.status_code}")
            for name, value in event.headers:
                key, text = name.decode("latin-1"), value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            if int(headers.get("content-length", "0")) > max_bytes:
                raise FetchError(f"{url} answered more than {max_bytes} bytes")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_bytes:
                raise FetchError(f"{url} answered more than {max_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return headers, bytes(body)
        # An early close raises h11.RemoteProtocolError; informational responses are skipped.
