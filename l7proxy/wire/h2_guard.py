"""What a server-side HTTP/2 connection tolerates from its client before ending it.

* **Streams over the limit** are refused one by one with RST_STREAM REFUSED_STREAM (RFC 9113
  §5.1.2 allows a stream error), so the client's other streams go on. h2 would make any
  stream over the advertised limit a connection error; `StreamLimitSettings` has it accept up
  to twice as many (streams the client leaves half-open count against its limit too, and
  past that bound the connection does end).
* **Stream churn** (rapid reset, CVE-2023-44487): every stream the client resets before its
  answer ended, and every stream refused, costs one from a `ResetBudget` of twice the stream
  limit, and every stream answered whole earns one back, as nginx and Envoy bound it. A
  client that resets more than it lets finish, beyond that allowance, gets GOAWAY
  ENHANCE_YOUR_CALM.
* **Slow heads**: the preface and first SETTINGS, then each request header block (HEADERS
  and its CONTINUATIONs), must arrive within the header-read timeout, as an HTTP/1.1 head
  must; `header_block_pending` tells the session that a block is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import h2.connection
import h2.errors
import h2.exceptions
import h2.settings

# A client may hold at most this many times the advertised streams open, half-open included,
# before h2 ends the connection with PROTOCOL_ERROR.
HARD_STREAM_FACTOR: Final = 2
# Resets (and refusals) allowed beyond the streams served, per advertised stream.
RESET_ALLOWANCE_FACTOR: Final = 2


@dataclass(frozen=True, slots=True)
class H2Failure:
    """Why the gateway ended an HTTP/2 connection: the GOAWAY error code and its debug text
    (never anything the client sent)."""

    error_code: h2.errors.ErrorCodes
    reason: str


TOO_MANY_RESETS: Final = H2Failure(
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "too many streams reset or refused"
)
PREFACE_TIMEOUT: Final = H2Failure(
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "connection preface not received in time"
)
HEAD_TIMEOUT: Final = H2Failure(
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "request header block not received in time"
)


def protocol_failure(exc: h2.exceptions.ProtocolError) -> H2Failure:
    """The failure for a frame h2 refused. h2's messages can quote header values (a token),
    so only the exception's type is kept."""
    return H2Failure(h2.errors.ErrorCodes(exc.error_code), type(exc).__name__)


class StreamLimitSettings(h2.settings.Settings):
    """Our SETTINGS: MAX_CONCURRENT_STREAMS is advertised as given, while h2 enforces
    `hard_limit`, leaving the refusal of streams in between to the session."""

    def __init__(
        self, *, client: bool, initial_values: dict[h2.settings.SettingCodes, int], hard_limit: int
    ) -> None:
        super().__init__(client=client, initial_values=initial_values)
        self._hard_limit = hard_limit

    @property
    def max_concurrent_streams(self) -> int:
        return self._hard_limit

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = value  # advertised only


class ResetBudget:
    """Streams reset or refused, against streams answered whole, on one connection."""

    __slots__ = ("_allowance", "_churned", "_served")

    def __init__(self, allowance: float) -> None:
        self._allowance = allowance
        self._churned = 0
        self._served = 0

    def churn(self) -> None:
        self._churned += 1

    def serve(self) -> None:
        self._served += 1

    @property
    def exhausted(self) -> bool:
        return self._churned > self._allowance + self._served


def header_block_pending(conn: h2.connection.H2Connection) -> bool:
    """A HEADERS frame without END_HEADERS has arrived and its block is not complete. h2
    keeps the frames of an open block in its frame buffer and exposes nothing else."""
    return bool(conn.incoming_buffer._headers_buffer)
