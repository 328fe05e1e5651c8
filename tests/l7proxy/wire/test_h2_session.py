"""The HTTP/2 driver, both sides over in-memory streams: multiplexing, flow control,
resets and GOAWAY."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from l7proxy.wire.h2_session import (
    CLOSED_STREAMS_REMEMBERED,
    STREAM_WINDOW,
    H2Session,
    H2Stream,
    StreamClosedError,
)


async def _echo(stream: H2Stream) -> None:
    await stream.send_headers([(b":status", b"200")])
    while chunk := await stream.receive():
        await stream.send(chunk)
    await stream.end()


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[tuple[H2Session, list[H2Stream]]]:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = H2Session(server_end, client_side=False, max_concurrent_streams=8)
    client = H2Session(client_end, client_side=True)
    started: list[H2Stream] = []

    async def on_request(stream: H2Stream) -> None:
        started.append(stream)
        await _echo(stream)

    await server.start()
    await client.start()
    nursery.start_soon(server.run, on_request)
    nursery.start_soon(client.run)
    yield client, started


async def _connect(
    nursery: trio.Nursery,
    on_request: Callable[[H2Stream], Awaitable[None]],
    closed_streams_remembered: int = CLOSED_STREAMS_REMEMBERED,
) -> tuple[H2Session, H2Session]:
    """A server session answering with `on_request` and a client session, running."""
    client_end, server_end = trio.testing.memory_stream_pair()
    server = H2Session(
        server_end, client_side=False, closed_streams_remembered=closed_streams_remembered
    )
    client = H2Session(
        client_end, client_side=True, closed_streams_remembered=closed_streams_remembered
    )
    await server.start()
    await client.start()
    nursery.start_soon(server.run, on_request)
    nursery.start_soon(client.run)
    return server, client


def _request(path: bytes = b"/") -> list[tuple[bytes, bytes]]:
    return [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", path)]


async def _read_all(stream: H2Stream) -> bytes:
    parts = []
    while chunk := await stream.receive():
        parts.append(chunk)
    return b"".join(parts)


async def test_a_body_larger_than_every_window_flows_both_ways(
    pair: tuple[H2Session, list[H2Stream]],
) -> None:
    client, _ = pair
    body = bytes(range(256)) * (5 * STREAM_WINDOW // 256)
    stream = await client.open_stream(_request(), end_stream=False)
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            await stream.send(body)
            await stream.end()

        nursery.start_soon(send)
        await stream.head_received.wait()
        assert dict(stream.headers)[b":status"] == b"200"
        assert await _read_all(stream) == body


async def test_a_stalled_stream_does_not_stall_its_neighbours(
    pair: tuple[H2Session, list[H2Stream]],
) -> None:
    client, _ = pair
    stalled = await client.open_stream(_request(b"/stalled"), end_stream=False)
    # Fill the stalled stream's window and more: the server echoes, we never read it.
    with trio.move_on_after(0.5):
        await stalled.send(b"x" * (2 * STREAM_WINDOW))
    moving = await client.open_stream(_request(b"/moving"), end_stream=False)
    with trio.fail_after(5):
        await moving.send(b"hello")
        await moving.end()
        assert await _read_all(moving) == b"hello"


async def test_many_concurrent_streams_share_one_connection(
    pair: tuple[H2Session, list[H2Stream]],
) -> None:
    client, _ = pair
    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        stream = await client.open_stream(_request(), end_stream=False)
        await stream.send(str(i).encode() * 1000)
        await stream.end()
        results[i] = await _read_all(stream)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
    assert results == {i: str(i).encode() * 1000 for i in range(8)}


async def test_a_reset_stream_cancels_its_handler(pair: tuple[H2Session, list[H2Stream]]) -> None:
    client, started = pair
    stream = await client.open_stream(_request(), end_stream=False)
    await stream.head_received.wait()
    await stream.reset()
    server = started[0].session
    with trio.fail_after(5):
        while server.streams:
            await server.streams_changed.wait()
    with pytest.raises(StreamClosedError):
        await stream.send(b"late")


async def test_goaway_refuses_new_streams_and_ends_the_session(
    pair: tuple[H2Session, list[H2Stream]],
) -> None:
    client, started = pair
    stream = await client.open_stream(_request(), end_stream=True)
    assert await _read_all(stream) == b""
    server = started[0].session
    await server.close()
    with trio.fail_after(5):
        while not client.goaway_received and not client.closed:
            await client.window_opened.wait()  # fired by every GOAWAY and connection end
    assert not client.can_open_stream


async def test_a_body_that_arrives_with_its_headers_is_still_a_body() -> None:
    """HEADERS and DATA+END_STREAM in one read must not look like a body-less request."""
    seen: list[tuple[bool, bytes]] = []

    async def record(stream: H2Stream) -> None:
        body = await _read_all(stream)
        seen.append((stream.bodyless, body))
        await stream.send_headers([(b":status", b"204")], end_stream=True)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, client = await _connect(nursery, record)
            stream = await client.open_stream(_request(), end_stream=False)
            await stream.send(b"payload")  # coalesced with the HEADERS into one write
            await stream.end()
            await stream.head_received.wait()
            empty = await client.open_stream(_request(), end_stream=True)
            await empty.head_received.wait()
            nursery.cancel_scope.cancel()
    assert seen == [(False, b"payload"), (True, b"")]


async def test_a_sender_waiting_for_window_learns_that_its_stream_was_reset(
    nursery: trio.Nursery,
) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = H2Session(server_end, client_side=False)
    client = H2Session(client_end, client_side=True)
    arrived = trio.Event()

    async def never_reads_then_resets(stream: H2Stream) -> None:
        await arrived.wait()
        await stream.reset()

    await server.start()
    await client.start()
    nursery.start_soon(server.run, never_reads_then_resets)
    nursery.start_soon(client.run)
    stream = await client.open_stream(_request(), end_stream=False)
    failures: list[StreamClosedError] = []

    async def send() -> None:
        try:
            await stream.send(b"x" * (2 * STREAM_WINDOW))
        except StreamClosedError as exc:
            failures.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            inner.start_soon(send)
            # The stream's window (1 MiB) runs out and nobody reads: the sender waits.
            await trio.testing.wait_all_tasks_blocked()
            arrived.set()
    assert [f.stream_id for f in failures] == [stream.id]


async def test_a_graceful_goaway_lets_the_client_finish_the_streams_it_spares(
    nursery: trio.Nursery,
) -> None:
    """As Go's server (kube-apiserver) shuts down or rebalances: GOAWAY NO_ERROR naming the
    open stream, then the rest of that stream's answer. h2 alone would refuse it."""
    go_on = trio.Event()

    async def answer_after_goaway(stream: H2Stream) -> None:
        await stream.send_headers([(b":status", b"200")])
        await stream.send(b"before ")
        await stream.session.announce_goaway()
        await go_on.wait()
        await stream.send(b"after")
        await stream.end()

    _, client = await _connect(nursery, answer_after_goaway)
    with trio.fail_after(5):
        stream = await client.open_stream(_request(), end_stream=True)
        await stream.head_received.wait()
        while not client.goaway_received:
            await client.window_opened.wait()
        assert not client.can_open_stream  # no new streams on it
        go_on.set()
        assert await _read_all(stream) == b"before after"
    assert not client.closed and client.failure is None


async def test_a_long_lived_session_remembers_a_bounded_number_of_closed_streams() -> None:
    """h2 would keep the end of its last 65,536 streams; a session keeps `remembered`."""
    async with trio.open_nursery() as nursery:
        server, client = await _connect(nursery, _echo, closed_streams_remembered=16)
        for _ in range(100):
            stream = await client.open_stream(_request(), end_stream=True)
            assert await _read_all(stream) == b""
        with trio.fail_after(5):
            while server.streams:
                await server.streams_changed.wait()
        assert client.conn.highest_outbound_stream_id == 199  # all 100 on this session
        for session in (client, server):
            assert len(session.conn._closed_streams) <= 16
        nursery.cancel_scope.cancel()


async def test_a_finished_session_is_freed_without_the_cyclic_collector() -> None:
    """h2's connection refers to itself; left so, only a (rare) full collection frees it."""
    async with trio.open_nursery() as nursery:
        server, client = await _connect(nursery, _echo)
        stream = await client.open_stream(_request(), end_stream=True)
        assert await _read_all(stream) == b""
        client.forget(stream)
        await client.close()
    connections = [weakref.ref(server.conn), weakref.ref(client.conn)]
    gc.disable()
    try:
        del server, client, stream
        assert [ref() for ref in connections] == [None, None]
    finally:
        gc.enable()
