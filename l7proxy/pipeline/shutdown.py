"""What a drain waits for and ends: requests in flight, and the streams among them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Shutdown:
    """Counts the requests in flight, so a drain can wait for them, and holds a cancel
    scope per open stream (a response body, an upgraded session), so that once the
    drain's grace is over `end_streams` ends them all and each says so in its audit event."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.ending = False
        self._idle = trio.Event()
        self._streams: set[trio.CancelScope] = set()

    @contextmanager
    def request(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    @contextmanager
    def stream(self) -> Iterator[trio.CancelScope]:
        """A scope that `end_streams` cancels; check its `cancelled_caught` afterwards."""
        with trio.CancelScope() as scope:
            if self.ending:
                scope.cancel()
            self._streams.add(scope)
            try:
                yield scope
            finally:
                self._streams.discard(scope)

    def end_streams(self) -> int:
        """End every open stream (and any that opens from now on); how many were open."""
        self.ending = True
        for scope in self._streams:
            scope.cancel()
        return len(self._streams)

    async def wait_idle(self) -> None:
        while self.in_flight:
            self._idle = trio.Event()
            await self._idle.wait()
