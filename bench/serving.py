"""What the benchmark's helper servers share: start, announce, serve until told to stop.

Each prints one JSON line once it is listening (how `run.py` learns its port or URL; see
`procs.read_json_line`), then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.listener import Handle, serve, server_ssl_context

Start = Callable[[trio.Nursery], Awaitable[dict[str, object]]]


async def announce_and_serve(start: Start) -> None:
    """Run `start` in a nursery, print what it returns as one JSON line, and keep serving
    until SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            sys.stdout.write(json.dumps(await start(nursery)) + "\n")
            sys.stdout.flush()
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def tls_listener(handle: Handle, cert: str, key: str, port: int = 0) -> Start:
    """A `Start` for l7proxy's own listener on a loopback port (a free one by default),
    over TLS; it announces {"port": N}."""

    async def start(nursery: trio.Nursery) -> dict[str, object]:
        bound = await nursery.start(
            partial(
                serve,
                handle,
                host="127.0.0.1",
                port=port,
                ssl_context=server_ssl_context(cert, key),
                limits=Limits(),
            )
        )
        return {"port": bound[0][1]}

    return start
