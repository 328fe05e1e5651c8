"""What a drain waits for and ends: requests in flight, and the streams among them; and
what a lock or an ended grant ends: the streams of the caller it names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

from policy.identity import Identity


@dataclass(eq=False, slots=True)
class OpenStream:
    """A response body or an upgraded session still flowing, and whose it is: `grant` is
    the access request it was allowed under ("" for a standing policy)."""

    identity: Identity
    connection: str
    grant: str = ""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ended_by: str = ""  # set by whoever ends it: "gateway shutdown", "lock", "grant ended"

    def end(self, reason: str) -> None:
        if not self.ended_by:
            self.ended_by = reason
            self.scope.cancel()


class Shutdown:
    """Counts the requests in flight, so a drain can wait for them, and holds each open
    stream, so that once the drain's grace is over `end_streams` ends them all — and a lock
    or an ended grant the ones it concerns — each saying why in its audit event."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.ending = False
        self._idle = trio.Event()
        self._streams: set[OpenStream] = set()

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
    def stream(self, stream: OpenStream) -> Iterator[OpenStream]:
        """Runs the body under `stream.scope`; its `ended_by` afterwards says who ended it
        ("" when it ended by itself)."""
        with stream.scope:
            if self.ending:
                stream.end("gateway shutdown")
            self._streams.add(stream)
            try:
                yield stream
            finally:
                self._streams.discard(stream)

    def end_streams(self) -> int:
        """End every open stream (and any that opens from now on); how many were open."""
        self.ending = True
        count = len(self._streams)
        self.end_where(lambda stream: "gateway shutdown")
        return count

    def end_where(self, why: Callable[[OpenStream], str]) -> None:
        """End every open stream for which `why` gives a reason ("" keeps it open)."""
        for stream in list(self._streams):
            if reason := why(stream):
                stream.end(reason)

    async def wait_idle(self) -> None:
        while self.in_flight:
            self._idle = trio.Event()
            await self._idle.wait()
