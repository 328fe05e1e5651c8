"""Serve a development OIDC issuer for the benchmark and print its URL and a token.

    issuer.py --cert server.pem --key server-key.pem --groups bench-readers

Prints one JSON line, {"issuer": URL, "token": JWT}, once the issuer is listening, then
serves discovery and JWKS until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import ssl
from functools import partial

import trio
from serving import announce_and_serve

from l7proxy.tools.devissuer import DevIssuer

TOKEN_LIFETIME = 24 * 3600.0


async def _main(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    issuer = DevIssuer()

    async def start(nursery: trio.Nursery) -> dict[str, object]:
        await nursery.start(partial(issuer.serve, host="127.0.0.1", ssl_context=context))
        token = issuer.mint(args.subject, groups=args.groups.split(","), expires_in=TOKEN_LIFETIME)
        return {"issuer": issuer.issuer, "token": token}

    await announce_and_serve(start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--subject", default="bench@example.com")
    parser.add_argument("--groups", default="bench-readers")
    trio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
