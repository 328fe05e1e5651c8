"""Serve the in-memory SandboxCluster over TLS: the upstream for the idle-watch scenario
(nginx cannot hold watches open).

    sandbox_server.py --cert server.pem --key server-key.pem --token TOKEN

Prints {"port": N} once listening, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from functools import partial

import trio

from l7proxy.listener import serve, server_ssl_context
from l7proxy.sandbox import SandboxCluster
from l7proxy.settings import Limits


async def _main(args: argparse.Namespace) -> None:
    cluster = SandboxCluster(tokens={args.token: "system:serviceaccount:l7proxy:bench"})
    context = server_ssl_context(args.cert, args.key)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                partial(
                    serve,
                    cluster.handle,
                    host="127.0.0.1",
                    port=0,
                    ssl_context=context,
                    limits=Limits(),
                )
            )
            sys.stdout.write(json.dumps({"port": bound[0][1]}) + "\n")
            sys.stdout.flush()
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", required=True)
    trio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
