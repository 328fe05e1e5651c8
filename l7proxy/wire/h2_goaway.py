"""A client's way past h2's GOAWAY handling: the peer's GOAWAY frames are taken out of the
bytes before h2 sees them.

h2 closes its state machine at the first GOAWAY it receives, even a graceful one (NO_ERROR),
and then refuses every frame that follows (python-hyper/h2#1181). RFC 9113 §6.8 lets the
streams up to the GOAWAY's last stream id finish, and a cluster relies on that: Go's HTTP/2
server (kube-apiserver) sends a graceful GOAWAY when it shuts down and, with
`--goaway-chance`, to rebalance clients, then goes on answering the open streams. Fed whole,
h2 would fail the connection there and cut every request and watch on it.

`GoawaySplitter` passes every other byte through unchanged, in order, so h2 still parses
and checks all frames itself. It holds back at most a frame header, or a GOAWAY frame until
it is whole; a GOAWAY it cannot take cleanly (on a stream, shorter than its fixed part, or
longer than `max_length`) is left for h2, which fails the connection as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_HEADER: Final = 9
_GOAWAY: Final = 0x7
_FIXED: Final = 8  # last stream id and error code


@dataclass(frozen=True, slots=True)
class GoAway:
    last_stream_id: int
    error_code: int
    debug_data: bytes


class GoawaySplitter:
    def __init__(self, max_length: int = 16_384) -> None:
        self.max_length = max_length
        self._held = bytearray()  # the start of the frame at hand: a header, or a GOAWAY
        self._skip = 0  # bytes of the current frame still to pass through

    def feed(self, data: bytes | bytearray) -> tuple[bytes | bytearray, list[GoAway]]:
        """What to give h2 of `data`, and the GOAWAY frames completed in it."""
        if not self._held and self._skip >= len(data):  # inside a frame: most reads
            self._skip -= len(data)
            return data, []
        view = memoryview(data)
        out: list[bytes | memoryview] = []
        goaways: list[GoAway] = []
        start = at = 0  # `data[start:at]` passes through unchanged
        end = len(data)
        while at < end:
            if self._skip:
                step = min(self._skip, end - at)
                self._skip -= step
                at += step
                continue
            if not self._held and end - at >= _HEADER:
                length = int.from_bytes(data[at : at + 3])
                if data[at + 3] != _GOAWAY or not self._takes(view[at : at + _HEADER], length):
                    at += _HEADER + length  # passed through whole, or up to the read's end
                    if at > end:
                        self._skip, at = at - end, end
                    continue
            # A header split over reads, or a GOAWAY: collected in `_held`.
            out.append(view[start:at])
            take = min(self._wanted(), end - at)
            self._held += view[at : at + take]
            at += take
            start = at
            if len(self._held) < _HEADER:
                continue
            length = int.from_bytes(self._held[:3])
            if not self._takes(self._held[:_HEADER], length):
                out.append(bytes(self._held))
                self._skip = length - (len(self._held) - _HEADER)
                self._held.clear()
            elif len(self._held) == _HEADER + length:
                goaways.append(_parse(bytes(self._held[_HEADER:])))
                self._held.clear()
        if not out:
            return data, goaways
        out.append(view[start:end])
        return b"".join(out), goaways

    def _wanted(self) -> int:
        """Bytes still needed for the header, or for the whole GOAWAY once it is known."""
        if len(self._held) < _HEADER:
            return _HEADER - len(self._held)
        return _HEADER + int.from_bytes(self._held[:3]) - len(self._held)

    def _takes(self, header: memoryview | bytearray, length: int) -> bool:
        stream_id = int.from_bytes(header[5:9]) & 0x7FFF_FFFF
        return header[3] == _GOAWAY and stream_id == 0 and _FIXED <= length <= self.max_length


def _parse(body: bytes) -> GoAway:
    return GoAway(
        last_stream_id=int.from_bytes(body[:4]) & 0x7FFF_FFFF,
        error_code=int.from_bytes(body[4:8]),
        debug_data=body[_FIXED:],
    )
