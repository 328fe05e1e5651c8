"""An upstream that accepts any HTTP/1.1 protocol upgrade and then sends a byte stream:
the upstream for the exec / port-forward scenario.

    upgrade_server.py --cert server.pem --key server-key.pem

A request with `Connection: Upgrade` and `Upgrade: <token>` and `?bytes=N` in its target
gets `101 Switching Protocols`, then N bytes (like exec stdout or a port-forward download),
then the server waits for the client to close. Anything the client sends is read and
dropped. Prints {"port": N} once listening, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
from urllib.parse import parse_qs

import trio
from serving import announce_and_serve, tls_listener

from l7proxy.wire.exchange import Exchange
from protocols.headers import upgrade_token

CHUNK = b"x" * (256 * 1024)


async def handle(exchange: Exchange) -> None:
    token = upgrade_token(exchange.head.headers)
    query = parse_qs(exchange.head.query)
    if token is None or "bytes" not in query:
        await exchange.start_response(400, [(b"content-length", b"0")])
        await exchange.finish()
        return
    remaining = int(query["bytes"][0])
    stream = await exchange.upgrade([(b"connection", b"Upgrade"), (b"upgrade", token)])
    chunk = memoryview(CHUNK)
    while remaining > 0:
        piece = chunk[: min(remaining, len(chunk))]
        await stream.send_all(bytes(piece) if len(piece) < len(chunk) else CHUNK)
        remaining -= len(piece)
    while await stream.receive_some():  # until the client closes
        pass


async def _main(args: argparse.Namespace) -> None:
    await announce_and_serve(tls_listener(handle, args.cert, args.key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    trio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
