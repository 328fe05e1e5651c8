"""The HTTP/2 server's idle timeout: a connection with no stream open for `idle_timeout`
gets a graceful GOAWAY; one that is in use, by streams that come and go or one that stays
open, is never closed as idle."""

from __future__ import annotations

from dataclasses import replace

import h2.errors
import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.h2_server import H2Exchange
from tests.l7proxy.wire.test_h2_hardening import Seen, _end_of, gateway

IDLE = 0.5


async def test_a_connection_without_streams_gets_goaway_after_the_idle_timeout() -> None:
    limits = replace(Limits(), idle_timeout=IDLE)
    with trio.fail_after(10):
        async with gateway(limits) as (client, _):
            await client.handshake()
            started = trio.current_time()
            goaway = await client.until_goaway()
            waited = trio.current_time() - started
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert IDLE * 0.8 <= waited < IDLE * 4


async def test_short_requests_one_after_another_keep_the_connection_from_idling() -> None:
    """Between requests no stream is open, but the connection has not been idle for long:
    each request that ends starts the idle time anew."""
    limits = replace(Limits(), idle_timeout=IDLE)
    with trio.fail_after(20):
        async with gateway(limits) as (client, seen):
            await client.handshake()
            for stream_id in range(1, 2 * 12, 2):  # 12 requests over ~3 s, 6 idle timeouts
                await client.send(client.headers(stream_id, end_stream=True))
                assert await client.until(_end_of(stream_id)) is not None
                await trio.sleep(IDLE / 2)
            assert client.goaway() is None
            started = trio.current_time()
            goaway = await client.until_goaway()
            waited = trio.current_time() - started
    assert len(seen.finished) == 12
    assert goaway is not None and waited >= IDLE * 0.3


async def _slow(seen: Seen, exchange: H2Exchange) -> None:
    """Answers, then keeps the stream open for a while before finishing."""
    seen.started.append(exchange.stream.id)
    await exchange.start_response(200, [])
    for _ in range(6):
        await trio.sleep(IDLE / 2)
        await exchange.send(b"tick\n")
    await exchange.finish()
    seen.finished.append(exchange.stream.id)


async def test_an_open_stream_is_never_timed_out_as_idle() -> None:
    limits = replace(Limits(), idle_timeout=IDLE)
    with trio.fail_after(20):
        async with gateway(limits, _slow) as (client, seen):
            await client.handshake()
            await client.send(client.headers(1, end_stream=True))
            assert await client.until(_end_of(1)) is not None
            assert client.goaway() is None
            ended = trio.current_time()
            goaway = await client.until_goaway()
            waited = trio.current_time() - ended
    assert seen.finished == [1]
    assert client.body(1) == b"tick\n" * 6
    assert goaway is not None and IDLE * 0.8 <= waited < IDLE * 4
