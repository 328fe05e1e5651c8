"""The floor under a Python gateway on this machine, measured in-process: what one proxied
request costs in TLS I/O and HTTP/2 coding before any gateway logic runs. Prints one JSON
object; `run.py` reports it beside the scenarios, so the table's ratios can be read against
what the building blocks alone cost here.

- `loop_ns`: one iteration of an empty Python `for` loop (how fast this CPU runs Python).
- `tls_round_trip_us`: l7proxy's TLSStream over a socket pair, both ends in this process: a
  2.5 KB request and its echo. That is two sends and two receives, as many TLS operations
  as the gateway makes per proxied request (receive and answer the client, send to and
  receive from the cluster), plus the task switches between them.
- `h2_codec_us`: the h2 library's work for one request, with the gateway's Huffman memo on:
  encode and decode a kubectl-like request carrying a JWT, then a 2 KB response. That is
  the gateway's four coding steps per request: decode the client's request and encode the
  answer (client leg), encode the forwarded request and decode the cluster's answer
  (cluster leg).
"""

from __future__ import annotations

import json
import ssl
import statistics
import time

import h2.config
import h2.connection
import trio
import trustme

from l7proxy.wire import h2_speedups
from l7proxy.wire.tls import TLSStream

REPEATS = 5
# About the size of the benchmark's RS256 JWT.
TOKEN = b"Bearer eyJhbGciOiJSUzI1NiJ9." + b"eyJzdWIiOiJiZW5jaCJ9" * 30 + b".c2ln" * 70


def loop_ns() -> float:
    count = 2_000_000
    started = time.perf_counter()
    for _ in range(count):
        pass
    return (time.perf_counter() - started) / count * 1e9


def tls_round_trip_us(rounds: int = 2000) -> float:
    ca = trustme.CA()
    cert = ca.issue_cert("floor.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    message = b"x" * 2500

    async def main() -> float:
        a, b = trio.socket.socketpair()
        server = TLSStream(trio.SocketStream(a), server_ctx, server_side=True)
        client = TLSStream(trio.SocketStream(b), client_ctx, server_hostname="floor.test")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            await client.do_handshake()

        async def echo() -> None:
            for _ in range(rounds):
                await server.send_all(await server.receive_some(65536))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            started = time.perf_counter()
            for _ in range(rounds):
                await client.send_all(message)
                await client.receive_some(65536)
            elapsed = time.perf_counter() - started
        await server.aclose()
        await client.aclose()
        return elapsed / rounds * 1e6

    return trio.run(main)


def h2_codec_us(rounds: int = 1000) -> float:
    def connected() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
        client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        for conn in (client, server):
            h2_speedups.install(conn.encoder)
            conn.initiate_connection()
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        server.receive_data(client.data_to_send())
        return client, server

    request = [
        (b":method", b"GET"),
        (b":path", b"/k8s/bench/api/v1/namespaces/default/pods"),
        (b":scheme", b"https"),
        (b":authority", b"gateway.example.com"),
        (b"authorization", TOKEN),
        (b"user-agent", b"kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"),
        (b"accept", b"application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
    ]
    response = [
        (b":status", b"200"),
        (b"content-type", b"application/json"),
        (b"content-length", b"2215"),
        (b"audit-id", b"0b3c2d1e-1111-2222-3333-444455556666"),
    ]
    body = b"x" * 2215
    client, server = connected()
    started = time.perf_counter()
    for _ in range(rounds):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, request, end_stream=True)
        server.receive_data(client.data_to_send())
        server.send_headers(stream_id, response)
        server.send_data(stream_id, body, end_stream=True)
        client.receive_data(server.data_to_send())
        client.acknowledge_received_data(len(body), stream_id)
        server.receive_data(client.data_to_send())
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    tls_round_trip_us(200)  # warm-up
    h2_codec_us(100)
    results = {
        "loop_ns": statistics.median(loop_ns() for _ in range(REPEATS)),
        "tls_round_trip_us": statistics.median(tls_round_trip_us() for _ in range(REPEATS)),
        "h2_codec_us": statistics.median(h2_codec_us() for _ in range(REPEATS)),
    }
    print(json.dumps({key: round(value, 1) for key, value in results.items()}))


if __name__ == "__main__":
    main()
