"""Property tests for the HTTP adapters: however the bytes are split or the bodies sized,
both codecs deliver exactly what was sent, in order."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from l7proxy.config.settings import Limits
from l7proxy.wire.exchange import Exchange
from l7proxy.wire.h1_server import H1ServerConnection
from l7proxy.wire.h2_session import H2Session, H2Stream
from l7proxy.wire.listener import answer_refusal
from protocols.status import StatusReason


async def _echo(exchange: Exchange) -> None:
    body = b""
    while chunk := await exchange.receive():
        body += chunk
    reply = exchange.head.target.encode() + b"|" + body
    await exchange.start_response(200, [(b"content-length", str(len(reply)).encode())])
    await exchange.send(reply)
    await exchange.finish()


async def _refuse(conn: H1ServerConnection, reason: StatusReason, message: str) -> None:
    await conn.refuse_with_status(reason, message, await answer_refusal(None, reason, message))


def _h1_request(target: str, body: bytes, chunked: bool, last: bool) -> bytes:
    close = b"connection: close\r\n" if last else b""
    if chunked:
        framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        head = b"transfer-encoding: chunked\r\n"
    else:
        framed, head = body, b"content-length: %d\r\n" % len(body)
    return b"POST %s HTTP/1.1\r\nhost: x\r\n%s%s\r\n%s" % (target.encode(), head, close, framed)


_requests = st.lists(
    st.tuples(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(
            lambda s: "/" + s
        ),
        st.binary(max_size=3000),
        st.booleans(),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(_requests, st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=50))
def test_h1_answers_pipelined_requests_in_order_however_the_bytes_are_split(
    requests: list[tuple[str, bytes, bool]], cuts: list[int]
) -> None:
    raw = b"".join(
        _h1_request(t, b, c, i == len(requests) - 1) for i, (t, b, c) in enumerate(requests)
    )

    async def main() -> bytes:
        client, server = trio.testing.memory_stream_pair()
        conn = H1ServerConnection(server, "test", Limits())
        received = b""
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                await conn.serve(_echo, _refuse)
                await server.aclose()

            nursery.start_soon(run)
            rest, sizes = raw, iter(cuts * (len(raw) // max(sum(cuts), 1) + 1))
            while rest:
                size = next(sizes)
                await client.send_all(rest[:size])
                rest = rest[size:]
            while data := await client.receive_some():
                received += data
        return received

    out = trio.run(main)
    position = 0
    for target, body, _ in requests:
        expected = target.encode() + b"|" + body
        found = out.find(expected, position)
        assert found >= position, f"response for {target} missing or out of order"
        position = found + len(expected)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=70_000), min_size=1, max_size=6))
def test_h2_delivers_every_body_on_concurrent_streams_unchanged(bodies: list[bytes]) -> None:
    async def main() -> list[bytes]:
        client_end, server_end = trio.testing.memory_stream_pair()
        server = H2Session(server_end, client_side=False)
        client = H2Session(client_end, client_side=True)

        async def echo(stream: H2Stream) -> None:
            await stream.send_headers([(b":status", b"200")])
            while chunk := await stream.receive():
                await stream.send(chunk)
            await stream.end()

        results: list[bytes] = [b""] * len(bodies)
        async with trio.open_nursery() as nursery:
            await server.start()
            await client.start()
            nursery.start_soon(server.run, echo)
            nursery.start_soon(client.run)

            async def one(i: int) -> None:
                stream = await client.open_stream(
                    [
                        (b":method", b"POST"),
                        (b":scheme", b"https"),
                        (b":authority", b"x"),
                        (b":path", b"/"),
                    ],
                    end_stream=False,
                )
                async with trio.open_nursery() as inner:

                    async def send() -> None:
                        await stream.send(bodies[i])
                        await stream.end()

                    inner.start_soon(send)
                    while chunk := await stream.receive():
                        results[i] += chunk

            async with trio.open_nursery() as streams:
                for i in range(len(bodies)):
                    streams.start_soon(one, i)
            nursery.cancel_scope.cancel()
        return results

    assert trio.run(main) == bodies
