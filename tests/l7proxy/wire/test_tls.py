"""TLSStream: real TLS (trustme certificates) over socket pairs, against itself and against
trio.SSLStream."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from l7proxy.wire.tls import TLSStream, no_renegotiation, record_server_name

CA = trustme.CA()
CERT = CA.issue_cert("gateway.test")


def server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CERT.configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    # No TLS 1.3 session tickets: a client that closes with them unread makes its kernel
    # answer with a reset instead of an orderly end, which is not what these tests look at.
    context.num_tickets = 0
    return no_renegotiation(context)


def client_context(ca: trustme.CA = CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2"])
    return no_renegotiation(context)


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


@asynccontextmanager
async def connected_pair() -> AsyncIterator[tuple[TLSStream, TLSStream]]:
    a, b = socket_pair()
    server = TLSStream(a, server_context(), server_side=True)
    client = TLSStream(b, client_context(), server_hostname="gateway.test")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            await client.do_handshake()
        yield server, client
    finally:
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> tuple[bytes, int]:
    """`size` bytes and the largest single receive."""
    data = bytearray()
    largest = 0
    while len(data) < size:
        chunk = await stream.receive_some(1 << 20)
        assert chunk, "stream ended early"
        largest = max(largest, len(chunk))
        data += chunk
    return bytes(data), largest


async def test_handshake_negotiates_alpn_and_carries_bytes_both_ways() -> None:
    async with connected_pair() as (server, client):
        assert server.selected_alpn_protocol() == client.selected_alpn_protocol() == "h2"
        await client.send_all(b"ping")
        assert await server.receive_some() == b"ping"
        await server.send_all(b"pong")
        assert await client.receive_some() == b"pong"


@pytest.mark.parametrize("ours", ["client", "server"])
async def test_interoperates_with_trio_ssl_stream(ours: str) -> None:
    a, b = socket_pair()
    server: trio.abc.Stream
    client: trio.abc.Stream
    if ours == "client":
        server = trio.SSLStream(a, server_context(), server_side=True)
        client = TLSStream(b, client_context(), server_hostname="gateway.test")
    else:
        server = TLSStream(a, server_context(), server_side=True)
        client = trio.SSLStream(b, client_context(), server_hostname="gateway.test")
    payload = os.urandom(300_000)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)  # the handshake comes first
            received, _ = await receive_exactly(server, len(payload))
        assert received == payload
        await server.send_all(b"done")
        assert await client.receive_some(100) == b"done"
        await client.aclose()
        assert await server.receive_some(100) == b""
    finally:
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)


async def test_one_receive_returns_every_record_one_socket_read_brought() -> None:
    async with connected_pair() as (server, client):
        payload = os.urandom(1 << 20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            received, largest = await receive_exactly(server, len(payload))
        assert received == payload
        assert largest > 16 * 1024  # more than one TLS record per receive


async def test_a_receive_never_exceeds_max_bytes() -> None:
    async with connected_pair() as (server, client):
        await client.send_all(b"x" * 100_000)
        sizes = []
        total = 0
        while total < 100_000:
            chunk = await server.receive_some(1000)
            sizes.append(len(chunk))
            total += len(chunk)
        assert max(sizes) <= 1000


async def test_both_directions_stream_at_once_without_deadlock() -> None:
    async with connected_pair() as (server, client):
        up, down = os.urandom(2 << 20), os.urandom(2 << 20)
        results: dict[str, bytes] = {}

        async def receive_into(name: str, stream: TLSStream, size: int) -> None:
            results[name], _ = await receive_exactly(stream, size)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, up)
                nursery.start_soon(server.send_all, down)
                nursery.start_soon(receive_into, "at server", server, len(up))
                nursery.start_soon(receive_into, "at client", client, len(down))
        assert results == {"at server": up, "at client": down}


async def test_an_untrusted_certificate_is_a_broken_resource_caused_by_ssl() -> None:
    a, b = socket_pair()
    server = TLSStream(a, server_context(), server_side=True)
    client = TLSStream(b, client_context(trustme.CA()), server_hostname="gateway.test")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_refused, server)
            with pytest.raises(trio.BrokenResourceError, match="TLS handshake failed") as failure:
                await client.do_handshake()
        assert isinstance(failure.value.__cause__, ssl.SSLCertVerificationError)
    finally:
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)


async def _refused(server: TLSStream) -> None:
    with pytest.raises(trio.BrokenResourceError):
        await server.do_handshake()


async def test_a_failed_handshake_fails_the_same_way_for_the_next_caller() -> None:
    a, b = socket_pair()
    server = TLSStream(a, server_context(), server_side=True)
    client = TLSStream(b, client_context(trustme.CA()), server_hostname="gateway.test")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_refused, server)
            with pytest.raises(trio.BrokenResourceError):
                await client.do_handshake()
        with pytest.raises(trio.BrokenResourceError, match="TLS handshake failed") as again:
            await client.send_all(b"x")
        assert isinstance(again.value.__cause__, ssl.SSLCertVerificationError)
    finally:
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)


async def test_a_send_cut_short_leaves_the_stream_broken() -> None:
    async with connected_pair() as (_, client):
        # Nobody reads the other end: the send blocks part-way and is cancelled there.
        with trio.move_on_after(0.2) as scope:
            await client.send_all(b"x" * (8 << 20))
        assert scope.cancelled_caught
        with pytest.raises(trio.BrokenResourceError, match="cut short"):
            await client.send_all(b"more")
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some()


async def test_a_peer_that_vanishes_mid_handshake_is_a_broken_resource() -> None:
    a, b = socket_pair()
    server = TLSStream(a, server_context(), server_side=True)
    await b.send_all(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
    await b.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await server.do_handshake()
    await server.aclose()


async def test_a_receive_cancelled_while_waiting_loses_nothing() -> None:
    async with connected_pair() as (server, client):
        with trio.move_on_after(0.05):
            await server.receive_some()
        await client.send_all(b"after the cancel")
        assert await server.receive_some() == b"after the cancel"


async def test_close_notify_ends_the_stream_after_what_came_before_it() -> None:
    async with connected_pair() as (server, client):
        await client.send_all(b"last words")
        await client.aclose()
        assert await server.receive_some() == b"last words"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""


async def test_an_eof_without_close_notify_ends_the_stream_quietly() -> None:
    async with connected_pair() as (server, client):
        await client.send_all(b"cut")
        await client.transport.aclose()  # no close_notify
        assert await server.receive_some() == b"cut"
        assert await server.receive_some() == b""


async def _close_notify(peer: TLSStream) -> None:
    await peer.aclose()


async def _bare_eof(peer: TLSStream) -> None:
    await peer.transport.aclose()


async def _stray_bytes(peer: TLSStream) -> None:
    await peer.send_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")


@pytest.mark.parametrize("peer_does", [_close_notify, _bare_eof, _stray_bytes])
async def test_a_stream_at_rest_has_unread_input_once_its_peer_closes_or_writes(
    peer_does: Callable[[TLSStream], Awaitable[None]],
) -> None:
    """What the upstream pool asks of an idle connection before it reuses it."""
    async with connected_pair() as (server, client):
        await server.send_all(b"answer")
        assert await client.receive_some() == b"answer"
        assert not client.has_unread_input()
        await peer_does(server)
        assert client.has_unread_input()


async def test_a_closed_stream_has_unread_input_so_it_is_never_reused() -> None:
    async with connected_pair() as (_, client):
        await client.aclose()
        assert client.has_unread_input()


async def test_use_after_close_is_a_closed_resource() -> None:
    async with connected_pair() as (_, client):
        await client.aclose()
        await client.aclose()  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await client.receive_some()


async def test_garbage_after_the_handshake_is_a_broken_resource() -> None:
    async with connected_pair() as (server, client):
        await client.transport.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # a forged record
        with pytest.raises(trio.BrokenResourceError, match="TLS error while receiving"):
            await server.receive_some()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=8))
def test_any_sequence_of_sends_arrives_intact_and_in_order(sizes: list[int]) -> None:
    async def main() -> None:
        async with connected_pair() as (server, client):
            chunks = [os.urandom(size) for size in sizes]
            expected = b"".join(chunks)

            async def send_each() -> None:
                for chunk in chunks:
                    await client.send_all(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_each)
                received, _ = await receive_exactly(server, len(expected))
            assert received == expected

    trio.run(main)


@pytest.mark.parametrize("sent", ["gateway.test", None])
async def test_a_server_keeps_the_name_the_client_asked_for(sent: str | None) -> None:
    a, b = socket_pair()
    server = TLSStream(a, record_server_name(server_context()), server_side=True)
    context = client_context()
    context.check_hostname = sent is not None
    client = TLSStream(b, context, server_hostname=sent)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    assert server.server_name() == (sent or "")
    await client.aclose()
    await server.aclose()
