"""Open and hold N idle watches through the gateway over HTTP/2 (l7proxy's own H2Session,
client side), up to `--per-connection` streams per TLS connection.

    watch_client.py --port 8443 --path /k8s/sandbox/api/v1/namespaces/default/pods \
        --token JWT --cafile ca.pem --count 1000

Prints one JSON line once every watch has its response head and its initial events,
{"opened": N, "connections": C, "statuses": {"200": N}, "seconds": S}, then holds the
watches open (reading whatever arrives) until terminated.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import sys
import time
from collections import Counter

import trio

from l7proxy.wire.h2_session import H2Session, H2Stream

SETTINGS_TIMEOUT = 10.0


async def _connect(host: str, port: int, context: ssl.SSLContext) -> H2Session:
    tcp = await trio.open_tcp_stream(host, port)
    tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    await tls.do_handshake()
    if tls.selected_alpn_protocol() != "h2":
        raise RuntimeError("the gateway did not negotiate h2")
    return H2Session(tls, client_side=True)


async def _wait_for_settings(session: H2Session, per_connection: int) -> None:
    """Wait for the server's SETTINGS, so we never open more streams than it allows."""
    with trio.fail_after(SETTINGS_TIMEOUT):
        while session.conn.remote_settings.max_concurrent_streams > per_connection:
            await session.window_opened.wait()  # fired by RemoteSettingsChanged too
    if session.conn.remote_settings.max_concurrent_streams < per_connection:
        raise RuntimeError(
            f"server allows {session.conn.remote_settings.max_concurrent_streams} streams "
            f"per connection, fewer than --per-connection {per_connection}"
        )


async def _first_event(stream: H2Stream) -> None:
    """The response head and the first chunk of the body (the initial ADDED events)."""
    await stream.head_received.wait()
    if dict(stream.headers).get(b":status") == b"200":
        await stream.receive()


async def _drain(stream: H2Stream) -> None:
    """Keep reading so flow-control windows stay open; ends with the watch."""
    try:
        while await stream.receive():
            pass
    except Exception:  # noqa: BLE001 - a watch ending abruptly at shutdown is fine
        return


async def _main(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.cafile)
    context.set_alpn_protocols(["h2"])
    headers = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", f"{args.host}:{args.port}".encode()),
        (b":path", f"{args.path}?watch=1&timeoutSeconds={args.timeout}".encode()),
        (b"authorization", f"Bearer {args.token}".encode()),
        (b"accept", b"application/json"),
        (b"user-agent", b"l7proxy-bench-watch/1"),
    ]
    started = time.monotonic()
    connections = math.ceil(args.count / args.per_connection)
    streams: list[H2Stream] = []
    async with trio.open_nursery() as nursery:
        for index in range(connections):
            session = await _connect(args.host, args.port, context)
            await session.start()
            nursery.start_soon(session.run)
            await _wait_for_settings(session, args.per_connection)
            batch = min(args.per_connection, args.count - index * args.per_connection)
            opened = [await session.open_stream(headers, end_stream=True) for _ in range(batch)]
            with trio.fail_after(args.open_timeout):
                async with trio.open_nursery() as waiters:
                    for stream in opened:
                        waiters.start_soon(_first_event, stream)
            streams.extend(opened)
        statuses = Counter(dict(s.headers).get(b":status", b"reset").decode() for s in streams)
        report = {
            "opened": len(streams),
            "connections": connections,
            "statuses": dict(statuses),
            "seconds": round(time.monotonic() - started, 2),
        }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
        for stream in streams:
            nursery.start_soon(_drain, stream)
        await trio.sleep_forever()  # until the driver terminates us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-connection", type=int, default=250)
    parser.add_argument("--timeout", type=int, default=900, help="the watches' timeoutSeconds")
    parser.add_argument("--open-timeout", type=float, default=60.0)
    trio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
