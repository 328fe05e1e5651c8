"""A mutual-exclusion lock that costs nothing when nobody else holds it.

`trio.Lock.acquire` yields to the scheduler even when the lock is free (a full pass of the
run loop, with an epoll call). The gateway takes a send lock for every write on every
connection — the HTTP/2 writer, the TLS layer, the HTTP/1.1 responder — almost always
uncontended, so those passes were a measurable share of a proxied request. This lock only
waits when it must; whoever holds it is woken in turn. The writes it guards are themselves
checkpoints, so cancellation still reaches every task that uses it.
"""

from __future__ import annotations

from types import TracebackType

import trio


class QuietLock:
    """An async context manager: one holder at a time; waiters are woken one at a time."""

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters = trio.lowlevel.ParkingLot()

    @property
    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        while self._held:
            await self._waiters.park()
        self._held = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._held = False
        self._waiters.unpark()
