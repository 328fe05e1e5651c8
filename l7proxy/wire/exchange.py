"""One HTTP request/response on a client connection, the same for HTTP/1.1 and HTTP/2.

The codec drivers (`h1_driver`, `h2_driver`) implement `Exchange`; the gateway pipeline and
the sandbox cluster are written once against it and never branch on the HTTP version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request head. Header names are lower-case bytes, values raw bytes."""

    method: str
    target: str  # the request target as sent: path plus optional "?query"
    headers: tuple[tuple[bytes, bytes], ...]
    http_version: str  # "1.1" or "2"

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class ClientDisconnected(Exception):
    """The client went away (closed, reset the stream, or broke the connection) while
    its exchange was being read or answered."""


class UpgradeNotPossible(Exception):
    """A protocol upgrade was asked of an exchange that cannot switch (HTTP/2, or a
    request without `Connection: upgrade`)."""


class UpgradedStream(Protocol):
    """The raw byte stream of a connection after `101 Switching Protocols`."""

    async def receive_some(self) -> bytes:
        """The next bytes from the client; b"" once it has closed."""
        ...

    async def send_all(self, data: bytes) -> None: ...


class Exchange(Protocol):
    """The server side of one request. Calls are made in order: `receive` until it
    returns b"" (end of request body), then `start_response`, `send` any number of
    times, and `finish`. `send` returns once the bytes are handed to the transport
    (for HTTP/2: once flow control admitted them), which is the backpressure."""

    head: RequestHead
    client_addr: str
    server_name: str  # the TLS server name (SNI) of the client's connection, "" without one
    has_body: bool  # the request has a body to `receive` (else `receive` returns b"")
    response_started: bool  # `start_response` was called: a Status can no longer be sent

    async def receive(self) -> bytes:
        """The next chunk of the request body; b"" once the body has ended."""
        ...

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def finish(self) -> None: ...

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        """Answer `101 Switching Protocols` with `headers` (HTTP/1.1 only) and hand over
        the connection's bytes. Raises `UpgradeNotPossible` otherwise."""
        ...
