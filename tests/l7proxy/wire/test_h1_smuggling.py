"""Request smuggling and malformed chunked bodies on the HTTP/1.1 side: every ambiguous
framing is refused with a 400 Status before any of it reaches the pipeline (and so the
cluster); a body whose chunked framing breaks midway gets a 400 Status, not a bare close."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from l7proxy.wire.exchange import Exchange
from tests.l7proxy.wire.test_h1_server import _serve as serve_bytes

_HEAD = b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nhost: x\r\n"

# (name, header lines, body) — the PortSwigger / RFC 9112 §6 corpus.
SMUGGLED_HEADS = [
    ("cl-te", b"content-length: 6\r\ntransfer-encoding: chunked\r\n", b"0\r\n\r\nG"),
    (
        "te-cl",
        b"transfer-encoding: chunked\r\ncontent-length: 3\r\n",
        b"8\r\nSMUGGLED\r\n0\r\n\r\n",
    ),
    ("te-odd-case", b"Transfer-Encoding: ChUnKeD\r\nContent-Length: 4\r\n", b"0\r\n\r\n"),
    ("te-obs-fold", b"transfer-encoding:\r\n chunked\r\ncontent-length: 4\r\n", b"0\r\n\r\n"),
    ("te-te", b"transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n", b"0\r\n\r\n"),
    ("te-list", b"transfer-encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    ("duplicate-cl", b"content-length: 4\r\ncontent-length: 5\r\n", b"hello"),
    ("cl-list", b"content-length: 4, 5\r\n", b"hello"),
    ("cl-plus", b"content-length: +4\r\n", b"abcd"),
    ("cl-minus", b"content-length: -4\r\n", b"abcd"),
    ("cl-inner-space", b"content-length: 4 4\r\n", b"abcd"),
    ("cl-overflow", b"content-length: 99999999999999999999999999999999\r\n", b"abcd"),
]

BAD_CHUNKED_BODIES = [
    ("bare-lf-chunk-line", b"5\nhello\r\n0\r\n\r\n"),
    ("chunk-size-overflow", b"1" * 34 + b"\r\nhello\r\n0\r\n\r\n"),
    ("lf-in-extension", b"5;a=\nb\r\nhello\r\n0\r\n\r\n"),
    ("huge-extension", b"5;" + b"a" * 200_000 + b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk-overruns-its-size", b"3\r\nhello\r\n0\r\n\r\n"),
    ("non-hex-size", b"zz\r\nhello\r\n0\r\n\r\n"),
]


async def _serve(client_bytes: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Runs one connection; returns what the client got and what the 'cluster' (the
    handler standing for the pipeline) received: each request's head and body."""
    reached: list[tuple[str, bytes]] = []

    async def handler(exchange: Exchange) -> None:
        body = b""
        reached.append((exchange.head.target, body))
        while chunk := await exchange.receive():
            body += chunk
        reached[-1] = (exchange.head.target, body)
        await exchange.start_response(200, [(b"content-length", b"2")])
        await exchange.send(b"ok")
        await exchange.finish()

    received = await serve_bytes(client_bytes, handler=handler, half_close=True)
    return received, reached


@pytest.mark.parametrize(
    ("headers", "body"), [c[1:] for c in SMUGGLED_HEADS], ids=[c[0] for c in SMUGGLED_HEADS]
)
async def test_ambiguous_request_framing_is_refused_before_reaching_the_cluster(
    headers: bytes, body: bytes
) -> None:
    follow_up = b"GET /smuggled HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    with trio.fail_after(5):
        out, reached = await _serve(_HEAD + headers + b"\r\n" + body + follow_up)
    assert out.startswith(b"HTTP/1.1 400"), out[:80]
    assert b'"kind":"Status"' in out
    assert b"HTTP/1.1 200" not in out  # nothing smuggled behind it was answered
    assert reached == []


@pytest.mark.parametrize(
    "body", [c[1] for c in BAD_CHUNKED_BODIES], ids=[c[0] for c in BAD_CHUNKED_BODIES]
)
async def test_a_malformed_chunked_body_gets_a_400_status_and_a_closed_connection(
    body: bytes,
) -> None:
    raw = _HEAD + b"transfer-encoding: chunked\r\n\r\n" + body
    with trio.fail_after(5):
        out, _ = await _serve(raw + b"GET /next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:80]
    assert b'"kind":"Status"' in out
    assert b"HTTP/1.1 200" not in out


async def test_a_well_formed_chunked_request_still_reaches_the_cluster_whole() -> None:
    raw = _HEAD + b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with trio.fail_after(5):
        out, reached = await _serve(raw)
    assert out.startswith(b"HTTP/1.1 200")
    assert reached == [("/api/v1/namespaces/default/configmaps", b"hello")]


_FRAMING_LINES = st.sampled_from(
    [
        b"content-length: 5\r\n",
        b"content-length: +5\r\n",
        b"transfer-encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"transfer-encoding: identity\r\n",
        b"transfer-encoding:\r\n chunked\r\n",
        b"x-pad: a\r\n",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_FRAMING_LINES, max_size=4), st.binary(max_size=64))
def test_any_request_head_and_body_end_in_an_answer_or_a_clean_close(
    lines: list[bytes], body: bytes
) -> None:
    """Never an exception out of the connection; an answer is a Status or the echo."""

    async def main() -> bytes:
        with trio.fail_after(5):
            out, _ = await _serve(_HEAD + b"".join(lines) + b"connection: close\r\n\r\n" + body)
        return out

    out = trio.run(main)
    assert out == b"" or out.startswith((b"HTTP/1.1 200", b"HTTP/1.1 400", b"HTTP/1.1 501"))
