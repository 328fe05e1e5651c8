"""The HTTP/1.1 driver over in-memory streams: keep-alive, pipelining, chunked bodies,
limits and timeouts, and a vanished client cancelling its request."""

from __future__ import annotations

import trio
import trio.testing

from l7proxy.config.settings import Limits
from l7proxy.wire.exchange import Exchange
from l7proxy.wire.h1_server import H1ServerConnection
from l7proxy.wire.listener import answer_refusal
from protocols.status import StatusReason


async def _echo(exchange: Exchange) -> None:
    body = b""
    while chunk := await exchange.receive():
        body += chunk
    reply = f"{exchange.head.method} {exchange.head.target} {len(body)}:".encode() + body
    await exchange.start_response(200, [(b"content-length", str(len(reply)).encode())])
    await exchange.send(reply)
    await exchange.finish()


async def _refuse(conn: H1ServerConnection, reason: StatusReason, message: str) -> None:
    await conn.refuse_with_status(reason, message, await answer_refusal(None, reason, message))


async def _serve(  # type: ignore[no-untyped-def]
    client_bytes: bytes, *, limits: Limits | None = None, handler=_echo, half_close: bool = False
) -> bytes:
    """What the client gets back; `half_close` ends its sending side after `client_bytes`
    (a client that sent too little body has gone rather than stalled)."""
    client, server = trio.testing.memory_stream_pair()
    conn = H1ServerConnection(server, "test", limits or Limits())
    received = b""
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await conn.serve(handler, _refuse)
            await server.aclose()

        nursery.start_soon(run)
        await client.send_all(client_bytes)
        if half_close:
            await client.send_eof()
        while data := await client.receive_some():
            received += data
    return received


async def test_pipelined_requests_are_answered_in_order() -> None:
    raw = b"".join(f"GET /r{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(5))
    with trio.fail_after(5):
        out = await _serve(raw + b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    positions = [out.index(f"GET /r{i} 0:".encode()) for i in range(5)]
    assert positions == sorted(positions)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 6


async def test_a_chunked_request_body_is_read_whole() -> None:
    raw = (
        b"POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    with trio.fail_after(5):
        out = await _serve(raw)
    assert out.endswith(b"POST /p 11:hello world")


async def test_an_overlong_url_gets_414() -> None:
    raw = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nhost: x\r\n\r\n"
    with trio.fail_after(5):
        out = await _serve(raw)
    assert out.startswith(b"HTTP/1.1 414")
    assert b'"reason":"RequestURITooLong"' in out or b"414" in out


async def test_an_oversized_header_block_gets_431() -> None:
    raw = (
        b"GET / HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
        + b"\r\n"
    )
    with trio.fail_after(5):
        out = await _serve(raw)
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_garbage_gets_400_and_a_closed_connection() -> None:
    with trio.fail_after(5):
        out = await _serve(b"\x16\x03\x01 not http\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")


async def test_a_slow_request_head_times_out_but_an_idle_connection_just_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = await _serve(b"GET / HTTP/1.1\r\nhost: x\r\n")  # never finished
    assert slow.startswith(b"HTTP/1.1 504")
    assert b"timed out reading the request head" in slow
    idle = await _serve(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")  # then nothing more
    assert idle.startswith(b"HTTP/1.1 200")
    assert idle.count(b"HTTP/1.1") == 1


async def test_a_streaming_response_is_never_timed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = Limits(header_read_timeout=1, idle_timeout=2)

    async def slow_stream(exchange: Exchange) -> None:
        await exchange.start_response(200, [])
        for i in range(10):
            await trio.sleep(60)  # far beyond every timeout
            await exchange.send(f"event {i}\n".encode())
        await exchange.finish()

    out = await _serve(
        b"GET /w HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        limits=limits,
        handler=slow_stream,
    )
    assert out.count(b"event ") == 10


async def test_a_client_that_goes_away_cancels_its_request() -> None:
    client, server = trio.testing.memory_stream_pair()
    conn = H1ServerConnection(server, "test", Limits())
    cancelled = trio.Event()

    async def forever(exchange: Exchange) -> None:
        await exchange.start_response(200, [])
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.serve, forever, _refuse)
            await client.send_all(b"GET /watch HTTP/1.1\r\nhost: x\r\n\r\n")
            await client.receive_some()
            await client.aclose()
            await cancelled.wait()


async def test_an_oversized_header_block_on_a_kept_alive_connection_is_431_not_414() -> None:
    client, server = trio.testing.memory_stream_pair()
    conn = H1ServerConnection(server, "test", Limits())
    big = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
    received = b""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                await conn.serve(_echo, _refuse)
                await server.aclose()

            nursery.start_soon(run)
            await client.send_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n")
            while b"GET /first 0:" not in received:
                received += await client.receive_some()
            await client.send_all(b"GET /second HTTP/1.1\r\nhost: x\r\n" + big + b"\r\n")
            while data := await client.receive_some():
                received += data
    assert b"HTTP/1.1 431" in received
