"""Draining connections: HTTP/2 gets a graceful GOAWAY and keeps its open streams,
HTTP/1.1 finishes the response in progress and closes, an idle one closes at once."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import trio
import trio.testing

from l7proxy.config.settings import Limits
from l7proxy.wire.exchange import Exchange
from l7proxy.wire.h1_server import H1ServerConnection
from l7proxy.wire.h2_server import H2Exchange, serve_h2
from protocols.status import StatusReason


class Held:
    """A handler whose response waits for `release`, once `arrived`."""

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.release = trio.Event()

    async def __call__(self, exchange: Exchange) -> None:
        self.arrived.set()
        await self.release.wait()
        await exchange.start_response(200, [(b"content-length", b"4")])
        await exchange.send(b"done")
        await exchange.finish()


async def _no_refusal(exchange: H2Exchange, reason: StatusReason, message: str) -> None:
    raise AssertionError(f"refused: {message}")


async def _no_h1_refusal(conn: H1ServerConnection, reason: StatusReason, message: str) -> None:
    raise AssertionError(f"refused: {message}")


def _get(path: bytes) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", path)]


class RawClient:
    """An HTTP/2 client that takes GOAWAY frames aside before its h2 machine sees them:
    h2 as a client stops at the first GOAWAY, even a graceful one, where kubectl (Go)
    carries on with the streams the GOAWAY spares."""

    def __init__(self, transport: trio.abc.Stream) -> None:
        self.transport = transport
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.goaways: list[hyperframe.frame.GoAwayFrame] = []
        self._buffer = b""

    async def request(self, path: bytes) -> int:
        self.conn.initiate_connection()
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, _get(path), end_stream=True)
        await self.transport.send_all(self.conn.data_to_send())
        return stream_id

    async def events(self) -> list[h2.events.Event] | None:
        """The events of what arrives next (None once the server has closed)."""
        data = await self.transport.receive_some()
        if not data:
            return None
        self._buffer += data
        events: list[h2.events.Event] = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            raw, self._buffer = self._buffer[: 9 + length], self._buffer[9 + length :]
            if raw[3] == 0x7:  # GOAWAY
                frame, _ = hyperframe.frame.Frame.parse_frame_header(raw[:9])
                frame.parse_body(memoryview(raw[9:]))
                assert isinstance(frame, hyperframe.frame.GoAwayFrame)
                self.goaways.append(frame)
            else:
                events += self.conn.receive_data(raw)
        await self.transport.send_all(self.conn.data_to_send())
        return events


async def test_http2_draining_sends_goaway_lets_the_open_stream_finish_then_closes() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    draining = trio.Event()
    held = Held()
    client = RawClient(client_end)
    served = trio.Event()

    async def server() -> None:
        await serve_h2(server_end, "test", Limits(), held, _no_refusal, draining=draining)
        await server_end.aclose()
        served.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            stream_id = await client.request(b"/slow")
            await held.arrived.wait()
            draining.set()
            while not client.goaways:
                assert await client.events() is not None
            [goaway] = client.goaways
            assert (goaway.last_stream_id, goaway.error_code) == (stream_id, 0)  # graceful
            assert not served.is_set()  # the open stream keeps the connection

            held.release.set()
            status, body, ended = b"", b"", False
            while (events := await client.events()) is not None:
                for event in events:
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers or [])[b":status"]
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data or b""
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
            assert (status, body, ended) == (b"200", b"done", True)
            await served.wait()  # its last stream done, the server closed the connection


async def test_http1_draining_finishes_the_response_in_progress_then_closes() -> None:
    client, server = trio.testing.memory_stream_pair()
    draining = trio.Event()
    held = Held()
    conn = H1ServerConnection(server, "test", Limits(), draining=draining)
    received = b""

    async def run() -> None:
        await conn.serve(held, _no_h1_refusal)
        await server.aclose()  # as the listener does once `serve` returns

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await client.send_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            await held.arrived.wait()
            draining.set()
            held.release.set()
            while data := await client.receive_some():
                received += data
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\ndone")  # answered whole, then the connection ended


async def test_an_idle_http1_connection_closes_when_draining_starts() -> None:
    client, server = trio.testing.memory_stream_pair()
    draining = trio.Event()
    held = Held()
    held.release.set()
    conn = H1ServerConnection(server, "test", Limits(), draining=draining)
    received = b""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.serve, held, _no_h1_refusal)
            await client.send_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n")
            while b"done" not in received:
                received += await client.receive_some()
            # kept alive and idle now; idle_timeout (120 s) is far off
            draining.set()
        # `serve` returned: the connection was given up without a second request
    assert received.count(b"HTTP/1.1 200 OK") == 1
