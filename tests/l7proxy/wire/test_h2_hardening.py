"""HTTP/2 abuse against the server side, over real TLS: rapid reset, streams over the
concurrency limit, slow header blocks and protocol errors. Each ends in an answer, a refused
stream or a GOAWAY the client actually receives, and never in an exception out of the
connection (which the listener would log as `connection failed`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import h2.errors
import pytest
import structlog.testing
import trio
import trio.testing
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from l7proxy.config.settings import Limits
from l7proxy.wire import listener
from l7proxy.wire.exchange import Exchange
from l7proxy.wire.h2_guard import RESET_ALLOWANCE_FACTOR
from l7proxy.wire.h2_server import H2Exchange, serve_h2
from l7proxy.wire.listener import answer_refusal
from l7proxy.wire.tls import TLSStream
from protocols.status import StatusReason
from tests.l7proxy.wire.h2_raw import PREFACE, RawH2Client
from tests.l7proxy.wire.test_tls import client_context, server_context, socket_pair

ErrorCodes = h2.errors.ErrorCodes


@dataclass
class Seen:
    """What the handler saw: the streams it served, by id."""

    started: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


async def _echo(seen: Seen, exchange: H2Exchange) -> None:
    """Answers at once, then echoes each piece of body as it arrives."""
    seen.started.append(exchange.stream.id)
    await exchange.start_response(200, [])
    while chunk := await exchange.receive():
        await exchange.send(chunk)
    await exchange.finish()
    seen.finished.append(exchange.stream.id)


async def _refuse(exchange: H2Exchange, reason: StatusReason, message: str) -> None:
    await answer_refusal(exchange, reason, message)


@asynccontextmanager
async def gateway(
    limits: Limits | None = None,
    handler: Callable[[Seen, H2Exchange], Awaitable[None]] = _echo,
) -> AsyncIterator[tuple[RawH2Client, Seen]]:
    """`serve_h2` on the server end of a TLS connection, as the listener runs it; the client
    end for the test. An exception out of `serve_h2` fails the test."""
    a, b = socket_pair()
    server = TLSStream(a, server_context(), server_side=True)
    client = trio.SSLStream(b, client_context(), server_hostname="gateway.test")
    seen = Seen()

    async def serve() -> None:
        try:
            await server.do_handshake()
            await serve_h2(server, "test", limits or Limits(), lambda x: handler(seen, x), _refuse)
        finally:
            await trio.aclose_forcefully(server)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await client.do_handshake()
            assert client.selected_alpn_protocol() == "h2"
            yield RawH2Client(client), seen
            await client.aclose()
    finally:
        await trio.aclose_forcefully(client)


def _goaway(code: int) -> Callable[[Frame], bool]:
    return lambda f: isinstance(f, GoAwayFrame) and f.error_code == code


def _end_of(stream_id: int) -> Callable[[Frame], bool]:
    return lambda f: (
        isinstance(f, DataFrame | HeadersFrame)
        and f.stream_id == stream_id
        and "END_STREAM" in f.flags
    )


# -- a stream reset before it can be refused -----------------------------------------------


async def test_a_stream_reset_by_the_client_as_it_is_refused_ends_quietly() -> None:
    """Rapid reset (CVE-2023-44487) at the stream limit: the refusal meets a stream the
    client has already reset, which h2 has closed; the other streams go on."""
    limits = replace(Limits(), max_concurrent_streams=3)
    with trio.fail_after(10):
        async with gateway(limits) as (client, seen):
            await client.send(
                PREFACE,
                SettingsFrame(0),
                client.headers(1),
                *[
                    frame
                    for sid in (3, 5, 7)
                    for frame in (client.headers(sid), RstStreamFrame(sid, error_code=8))
                ],
            )
            await client.until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1)
            await client.send(DataFrame(1, b"still streaming", flags=["END_STREAM"]))
            await client.until(_end_of(1))
    assert client.body(1) == b"still streaming"
    assert client.goaway() is None
    assert seen.finished == [1]


async def _stream_forever(seen: Seen, exchange: H2Exchange) -> None:
    """A watch: events until the client goes."""
    seen.started.append(exchange.stream.id)
    await exchange.start_response(200, [])
    while True:
        await exchange.send(b"event\n")
        await trio.sleep(0.01)


async def test_a_client_goaway_during_a_streaming_answer_ends_the_connection_quietly() -> None:
    """After the client's GOAWAY h2 refuses to send anything more: the streaming handler
    learns that its client is gone, as from a reset."""
    with trio.fail_after(10):
        async with gateway(handler=_stream_forever) as (client, seen):
            await client.handshake()
            await client.send(client.headers(1, end_stream=True))
            await client.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
            await client.send(GoAwayFrame(0, last_stream_id=0x7FFFFFFF, error_code=0))
            await client.read_to_end()
    assert seen.started == [1]
    assert client.body(1).startswith(b"event\n")


# -- streams over the concurrency limit ------------------------------------------------------


async def test_streams_over_the_limit_are_refused_while_the_others_keep_streaming() -> None:
    limits = replace(Limits(), max_concurrent_streams=2)
    with trio.fail_after(10):
        async with gateway(limits) as (client, seen):
            await client.handshake()
            await client.send(client.headers(1), client.headers(3))
            await client.until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 3)
            await client.send(DataFrame(1, b"a"), client.headers(5), DataFrame(3, b"b"))
            await client.until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 5)
            await client.send(
                DataFrame(1, b"c", flags=["END_STREAM"]), DataFrame(3, b"d", flags=["END_STREAM"])
            )
            await client.until(_end_of(1))
            await client.until(_end_of(3))
    assert client.resets() == {5: ErrorCodes.REFUSED_STREAM}
    assert (client.body(1), client.body(3)) == (b"ac", b"bd")
    assert client.goaway() is None
    assert sorted(seen.finished) == [1, 3]


async def test_rapid_reset_is_answered_with_goaway_enhance_your_calm() -> None:
    """Streams opened and reset at once, over and over: after a budget of such resets the
    gateway says GOAWAY ENHANCE_YOUR_CALM and closes, however many more the client sends."""
    with trio.fail_after(30):
        async with gateway() as (client, seen):
            await client.handshake()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.read_to_end)
                for first in range(1, 4000, 100):
                    if client.eof:
                        break
                    await client.send(
                        *[
                            frame
                            for sid in range(first, first + 100, 2)
                            for frame in (client.headers(sid), RstStreamFrame(sid, error_code=8))
                        ]
                    )
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    # Each handler started is one reset the budget allowed: then the connection went.
    assert len(seen.started) <= RESET_ALLOWANCE_FACTOR * Limits().max_concurrent_streams + 1


async def test_rapid_reset_through_the_listener_leaves_a_debug_line_and_no_error() -> None:
    async def handle(exchange: Exchange) -> None:
        await exchange.start_response(200, [])
        await exchange.finish()

    with structlog.testing.capture_logs() as logs, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            serve = partial(
                listener.serve,
                handle,
                host="127.0.0.1",
                port=0,
                ssl_context=server_context(),
                limits=Limits(),
            )
            [(host, port)] = await nursery.start(serve)
            tcp = await trio.open_tcp_stream(host, port)
            tls = trio.SSLStream(tcp, client_context(), server_hostname="gateway.test")
            client = RawH2Client(tls)
            await client.handshake()
            for first in range(1, 4000, 100):
                await client.send(
                    *[
                        frame
                        for sid in range(first, first + 100, 2)
                        for frame in (client.headers(sid), RstStreamFrame(sid, error_code=8))
                    ]
                )
            goaway = await client.until_goaway()
            await tls.aclose()
            while not logs:  # the connection's task logs as it ends
                await trio.testing.wait_all_tasks_blocked(0.01)
            nursery.cancel_scope.cancel()
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert [(line["event"], line["log_level"], line.get("error")) for line in logs] == [
        ("connection ended", "debug", "ENHANCE_YOUR_CALM")
    ]


async def test_a_client_that_cancels_fewer_streams_than_it_completes_is_never_cut_off() -> None:
    limits = replace(Limits(), max_concurrent_streams=4)
    with trio.fail_after(30):
        async with gateway(limits) as (client, _):
            await client.handshake()
            for sid in range(1, 200, 4):
                # One request served whole, one reset before its answer.
                await client.send(client.headers(sid, end_stream=True))
                await client.until(_end_of(sid))
                await client.send(client.headers(sid + 2), RstStreamFrame(sid + 2, error_code=8))
            await client.send(client.headers(201, end_stream=True))
            await client.until(_end_of(201))
    assert client.goaway() is None


# -- header-read timeout -------------------------------------------------------------------


async def test_a_header_block_sent_slowly_is_cut_after_the_header_read_timeout() -> None:
    """HEADERS without END_HEADERS, then a CONTINUATION dribble (slowloris)."""
    limits = replace(Limits(), header_read_timeout=0.3, idle_timeout=3600)
    sent = 0
    with trio.fail_after(30):
        async with gateway(limits) as (client, _):
            await client.handshake()
            block = client.headers(1).data
            await client.send(HeadersFrame(1, block[:1]))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.read_to_end)
                for sent in range(1, 60):  # 60 frames (under h2's limit of 64) over 6 s
                    await trio.sleep(0.1)
                    if client.eof:
                        break
                    await client.send(ContinuationFrame(1, block[sent : sent + 1]))
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert sent < 59  # cut off in the middle of the dribble


@pytest.mark.parametrize("sent", [b"", PREFACE[:10], PREFACE])
async def test_a_connection_without_preface_and_settings_is_closed_after_the_header_read_timeout(
    sent: bytes,
) -> None:
    limits = replace(Limits(), header_read_timeout=0.3, idle_timeout=3600)
    with trio.fail_after(10):
        async with gateway(limits) as (client, _):
            await client.send(sent)
            goaway = await client.until_goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


# -- GOAWAY written on protocol errors -----------------------------------------------------


def _continuation_flood(client: RawH2Client) -> list[Frame]:
    block = client.headers(1).data
    return [HeadersFrame(1, block), *[ContinuationFrame(1, b"") for _ in range(100)]]


def _hpack_bomb(client: RawH2Client) -> list[Frame]:
    """One 4 KB header in the dynamic table, then a block naming it 200 times: 7 bytes
    on the wire that decode to 800 KB (over the advertised header list size)."""
    big = client.encoder.encode([("x-bomb", "b" * 4000)])
    refs = b"\xbe" * 200  # indexed field 62: the newest dynamic table entry
    head = client.headers(1).data
    return [
        HeadersFrame(1, head + big, flags=["END_HEADERS"]),
        HeadersFrame(3, refs, flags=["END_HEADERS"]),
    ]


def _data_on_an_idle_stream(client: RawH2Client) -> list[Frame]:
    return [DataFrame(7, b"x")]


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (_continuation_flood, ErrorCodes.PROTOCOL_ERROR),
        (_hpack_bomb, ErrorCodes.ENHANCE_YOUR_CALM),
        (_data_on_an_idle_stream, ErrorCodes.PROTOCOL_ERROR),
    ],
    ids=["continuation-flood", "hpack-bomb", "data-on-idle-stream"],
)
async def test_a_protocol_error_is_answered_with_a_goaway_carrying_its_error_code(
    attack: Callable[[RawH2Client], list[Frame]], code: int
) -> None:
    with trio.fail_after(10):
        async with gateway() as (client, _):
            await client.handshake()
            await client.send(*attack(client))
            goaway = await client.until_goaway()
    assert goaway is not None and goaway.error_code == code


async def _answer_without_reading(seen: Seen, exchange: H2Exchange) -> None:
    """Answers whole without reading the body, leaving the stream half-closed."""
    seen.started.append(exchange.stream.id)
    await exchange.start_response(204, [])
    await exchange.finish()


async def test_streams_left_half_open_past_twice_the_limit_get_goaway_protocol_error() -> None:
    """Streams the client never ends still count against its limit (RFC 9113 §5.1.2)."""
    limits = replace(Limits(), max_concurrent_streams=2)
    with trio.fail_after(10):
        async with gateway(limits, _answer_without_reading) as (client, seen):
            await client.handshake()
            for sid in (1, 3, 5, 7):
                await client.send(client.headers(sid))
                await client.until(_end_of(sid))
            await client.send(client.headers(9))
            goaway = await client.until_goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    assert seen.started == [1, 3, 5, 7]
