"""Serve the in-memory SandboxCluster over TLS: the upstream for the idle-watch scenario
(nginx cannot hold watches open).

    sandbox_server.py --cert server.pem --key server-key.pem --token TOKEN [--port N]

Prints {"port": N} once listening, then serves until SIGTERM/SIGINT. `--port` listens on
a given port (the soak restarts the cluster where the gateway expects it).
"""

from __future__ import annotations

import argparse

import trio
from serving import announce_and_serve, tls_listener

from l7proxy.tools.sandbox import SandboxCluster


async def _main(args: argparse.Namespace) -> None:
    cluster = SandboxCluster(tokens={args.token: "system:serviceaccount:l7proxy:bench"})
    await announce_and_serve(tls_listener(cluster.handle, args.cert, args.key, args.port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=0)
    trio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
