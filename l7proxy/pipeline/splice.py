"""Two byte streams joined after `101 Switching Protocols` (exec, attach, port-forward).

Two copy tasks, one per direction, in one nursery: each reads a chunk and awaits its write
before reading again (backpressure both ways), and when either side ends, fails or goes
idle — or the session reaches its deadline — the scope cancels both, so the two sides
always close together.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Protocol

import trio

from l7proxy.upstream.pool import UpstreamError
from l7proxy.wire.exchange import ClientDisconnected


class ByteStream(Protocol):
    async def receive_some(self) -> bytes: ...

    async def send_all(self, data: bytes) -> None: ...


class SessionEnd(enum.Enum):
    """Who or what ended a spliced session (the audit event's `ended_by`)."""

    CLIENT = "client"
    CLUSTER = "cluster"
    IDLE = "idle limit"
    DEADLINE = "duration limit"
    TOKEN_EXPIRY = "token expiry"


# Called with each chunk as it passes, for byte counts, session events and recordings.
Tap = Callable[[bytes], None]
_BROKEN = (ClientDisconnected, UpstreamError, trio.BrokenResourceError, trio.ClosedResourceError)


async def splice(
    client: ByteStream,
    cluster: ByteStream,
    *,
    deadline: float = math.inf,
    deadline_reason: SessionEnd = SessionEnd.DEADLINE,
    idle_timeout: float = math.inf,
    from_client: Tap,
    from_cluster: Tap,
) -> SessionEnd:
    """Copy both ways until one side ends; returns what ended the session."""
    ended: list[SessionEnd] = []
    last_activity = trio.current_time()

    async def copy(source: ByteStream, sink: ByteStream, tap: Tap, side: SessionEnd) -> None:
        nonlocal last_activity
        try:
            while data := await source.receive_some():
                tap(data)
                last_activity = trio.current_time()
                await sink.send_all(data)
        except _BROKEN:
            pass
        ended.append(side)
        scope.cancel()

    async def watch_idle() -> None:
        while True:
            await trio.sleep_until(last_activity + idle_timeout)
            if trio.current_time() >= last_activity + idle_timeout:
                ended.append(SessionEnd.IDLE)
                scope.cancel()
                return

    with trio.move_on_at(deadline) as deadline_scope:
        async with trio.open_nursery() as nursery:
            scope = nursery.cancel_scope
            nursery.start_soon(copy, client, cluster, from_client, SessionEnd.CLIENT)
            nursery.start_soon(copy, cluster, client, from_cluster, SessionEnd.CLUSTER)
            if math.isfinite(idle_timeout):
                nursery.start_soon(watch_idle)
    if deadline_scope.cancelled_caught and not ended:
        return deadline_reason
    return ended[0] if ended else SessionEnd.CLIENT
