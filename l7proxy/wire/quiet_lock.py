"""A mutual-exclusion lock that costs nothing when nobody else holds it.

`trio.Lock.acquire` yields to the scheduler even when the lock is free (a full pass of the
run loop, with an epoll call). The gateway takes a send lock for every write on every
connection — the HTTP/2 writer, the TLS layer, the HTTP/1.1 responder — almost always
uncontended, so those passes were a measurable share of a proxied request. This lock only
waits when it must, and a release hands it straight to the longest waiter, so waiters are
served in order (as with `trio.Lock`) and a busy holder cannot starve them. The writes it
guards are themselves checkpoints, so cancellation still reaches every task that uses it.
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
        if self._held:
            # Woken by `__aexit__` with the lock handed over: first come, first served.
            await self._waiters.park()
        self._held = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._waiters:
            self._waiters.unpark()  # ownership passes to the longest waiter; stays held
        else:
            self._held = False
