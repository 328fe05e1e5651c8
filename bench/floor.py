"""The floor under a Python gateway on this machine, measured in-process: what one proxied
request costs in TLS I/O and HTTP/2 or HTTP/1.1 coding before any gateway logic runs, in
CPU time (`time.process_time`, so that other load on the machine inflates it little), like
the gateway's own CPU time per request that it is set beside. Prints one JSON object;
`run.py` reports it beside the scenarios, so the table's ratios can be read against what
the building blocks alone cost here.

- `loop_ns`: one iteration of an empty Python `for` loop (how fast this CPU runs Python).
- `tls_round_trip_us`: l7proxy's TLSStream over a socket pair, both ends in this process: a
  2.5 KB request and its echo. That is two sends and two receives, as many TLS operations
  as the gateway makes per proxied request (receive and answer the client, send to and
  receive from the cluster), plus the task switches between them.
- `h2_codec_us`: the h2 library's work for one request, with the gateway's Huffman memo on:
  encode and decode a kubectl-like request carrying a JWT, then a 2 KB response. That is
  the gateway's four coding steps per request: decode the client's request and encode the
  answer (client leg, `h2_server_us`), encode the forwarded request and decode the
  cluster's answer (cluster leg, `h2_client_us`).
- `h1_server_us` / `h1_client_us`: the same two legs coded by h11 (HTTP/1.1).
- `h1_server_loop_us`: not a floor but the gateway's own HTTP/1.1 server loop (listener,
  `H1ServerConnection`, h11) answering a fixed 2 KB response without TLS or pipeline,
  under `wrk -c 32` over plain TCP: what the loop adds per request on top of h11's coding.
- `floor_us`: what one proxied request costs at least, per pairing of client and cluster
  protocol: TLS plus the client leg plus the cluster leg (`h2`: h2 on both; `h1`: HTTP/1.1
  from the client, h2 to the cluster; `h1_h1`: HTTP/1.1 on both). `run.py` sets the
  gateway's CPU time per request beside it.
"""

from __future__ import annotations

import json
import re
import resource
import ssl
import statistics
import subprocess
import time
from functools import partial

import h2.config
import h2.connection
import h11
import trio
import trustme

from l7proxy.config.settings import Limits
from l7proxy.wire import h2_speedups
from l7proxy.wire.exchange import Exchange
from l7proxy.wire.listener import serve
from l7proxy.wire.tls import TLSStream

REPEATS = 5
# About the size of the benchmark's RS256 JWT.
TOKEN = b"Bearer eyJhbGciOiJSUzI1NiJ9." + b"eyJzdWIiOiJiZW5jaCJ9" * 30 + b".c2ln" * 70


def loop_ns() -> float:
    count = 2_000_000
    started = time.process_time()
    for _ in range(count):
        pass
    return (time.process_time() - started) / count * 1e9


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
            started = time.process_time()
            for _ in range(rounds):
                await client.send_all(message)
                await client.receive_some(65536)
            elapsed = time.process_time() - started
        await server.aclose()
        await client.aclose()
        return elapsed / rounds * 1e6

    return trio.run(main)


REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/k8s/bench/api/v1/namespaces/default/pods"),
    (b":scheme", b"https"),
    (b":authority", b"gateway.example.com"),
    (b"authorization", TOKEN),
    (b"user-agent", b"kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"),
    (b"accept", b"application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
]
RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"application/json"),
    (b"content-length", b"2215"),
    (b"audit-id", b"0b3c2d1e-1111-2222-3333-444455556666"),
]
BODY = b"x" * 2215


def h2_codec_us(rounds: int = 1000) -> tuple[float, float]:
    """µs per request on the client side and on the server side of an h2 connection."""

    def connected() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
        # As the gateway's H2Session configures h2 (outbound fields not validated again).
        client = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, header_encoding=None, validate_outbound_headers=False
            )
        )
        server = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False, header_encoding=None, validate_outbound_headers=False
            )
        )
        for conn in (client, server):
            h2_speedups.install(conn.encoder)
            conn.initiate_connection()
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        server.receive_data(client.data_to_send())
        return client, server

    client, server = connected()
    client_s = server_s = 0.0
    clock = time.process_time
    for _ in range(rounds):
        t0 = clock()
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, REQUEST, end_stream=True)
        request = client.data_to_send()
        t1 = clock()
        server.receive_data(request)
        server.send_headers(stream_id, RESPONSE)
        server.send_data(stream_id, BODY, end_stream=True)
        response = server.data_to_send()
        t2 = clock()
        client.receive_data(response)
        client.acknowledge_received_data(len(BODY), stream_id)
        update = client.data_to_send()
        t3 = clock()
        server.receive_data(update)
        t4 = clock()
        client_s += (t1 - t0) + (t3 - t2)
        server_s += (t2 - t1) + (t4 - t3)
    return client_s / rounds * 1e6, server_s / rounds * 1e6


def h1_codec_us(rounds: int = 1000) -> tuple[float, float]:
    """µs per request on the client side and on the server side of an h11 connection
    (keep-alive: one connection, a new cycle per request)."""
    request = h11.Request(
        method="GET",
        target=REQUEST[1][1],
        headers=[(b"host", REQUEST[3][1]), *REQUEST[4:]],
    )
    response = h11.Response(status_code=200, headers=RESPONSE[1:], reason=b"OK")
    client, server = h11.Connection(h11.CLIENT), h11.Connection(h11.SERVER)
    client_s = server_s = 0.0
    clock = time.process_time
    for _ in range(rounds):
        t0 = clock()
        wire = client.send(request) or b""
        wire += client.send(h11.EndOfMessage()) or b""
        t1 = clock()
        server.receive_data(wire)
        while not isinstance(server.next_event(), h11.EndOfMessage):
            pass
        wire = server.send(response) or b""
        wire += server.send(h11.Data(data=BODY)) or b""
        wire += server.send(h11.EndOfMessage()) or b""
        server.start_next_cycle()
        t2 = clock()
        client.receive_data(wire)
        while not isinstance(client.next_event(), h11.EndOfMessage):
            pass
        client.start_next_cycle()
        t3 = clock()
        client_s += (t1 - t0) + (t3 - t2)
        server_s += t2 - t1
    return client_s / rounds * 1e6, server_s / rounds * 1e6


def h1_server_loop_us(seconds: int = 3) -> float:
    """CPU time of this process per request while wrk (another process) keeps 32
    connections busy; the thread waiting for wrk costs next to nothing."""

    async def handle(exchange: Exchange) -> None:
        await exchange.start_response(200, RESPONSE[1:])
        await exchange.send(BODY)
        await exchange.finish()

    def drive(port: int) -> float:
        url = f"http://127.0.0.1:{port}/k8s/bench/api/v1/namespaces/default/pods"
        cmd = ["wrk", "-t", "1", "-c", "32", "-H", f"authorization: {TOKEN.decode()}", url]
        subprocess.run([*cmd, "-d", "1s"], capture_output=True, check=True)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF)
        out = subprocess.run(
            [*cmd, "-d", f"{seconds}s"], capture_output=True, text=True, check=True
        ).stdout
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        done = re.search(r"(\d+) requests in", out)
        if done is None:
            raise RuntimeError(f"wrk: {out}")
        return cpu / int(done[1]) * 1e6

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                partial(serve, handle, host="127.0.0.1", port=0, ssl_context=None, limits=Limits())
            )
            result = await trio.to_thread.run_sync(drive, bound[0][1])
            nursery.cancel_scope.cancel()
        return result

    return trio.run(main)


def main() -> None:
    tls_round_trip_us(200)  # warm-up
    h2_codec_us(100)
    h1_codec_us(100)
    h2 = [h2_codec_us() for _ in range(REPEATS)]
    h1 = [h1_codec_us() for _ in range(REPEATS)]
    results = {
        "loop_ns": statistics.median(loop_ns() for _ in range(REPEATS)),
        "tls_round_trip_us": statistics.median(tls_round_trip_us() for _ in range(REPEATS)),
        "h2_client_us": statistics.median(c for c, _ in h2),
        "h2_server_us": statistics.median(s for _, s in h2),
        "h1_client_us": statistics.median(c for c, _ in h1),
        "h1_server_us": statistics.median(s for _, s in h1),
        "h1_server_loop_us": h1_server_loop_us(),
    }
    results["h2_codec_us"] = results["h2_client_us"] + results["h2_server_us"]
    tls = results["tls_round_trip_us"]
    floor_us = {
        "h2": tls + results["h2_server_us"] + results["h2_client_us"],
        "h1": tls + results["h1_server_us"] + results["h2_client_us"],
        "h1_h1": tls + results["h1_server_us"] + results["h1_client_us"],
    }
    out: dict[str, object] = {key: round(value, 1) for key, value in results.items()}
    out["floor_us"] = {key: round(value, 1) for key, value in floor_us.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
