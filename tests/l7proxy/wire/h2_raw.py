"""A raw HTTP/2 client for tests. Frames are built and read with hyperframe and hpack (the
codecs under h2), so a test can send what no well-behaved client would and see every frame
the gateway writes back, GOAWAY included."""

from __future__ import annotations

from collections.abc import Callable

import hpack
import trio
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def request_block(encoder: hpack.Encoder, path: str = "/", method: str = "POST") -> bytes:
    """An HPACK-encoded request head."""
    return encoder.encode(
        [(":method", method), (":scheme", "https"), (":authority", "x"), (":path", path)]
    )


class RawH2Client:
    """Bytes out as the test builds them; bytes in parsed into `frames` (every frame so far)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []
        self.responses: dict[int, dict[bytes, bytes]] = {}
        self.eof = False
        self._buffer = bytearray()

    # -- building -------------------------------------------------------------------------
    def headers(self, stream_id: int, path: str = "/", *, end_stream: bool = False) -> HeadersFrame:
        flags = ["END_HEADERS", *(["END_STREAM"] if end_stream else [])]
        return HeadersFrame(stream_id, request_block(self.encoder, path), flags=flags)

    async def send(self, *frames: Frame | bytes) -> None:
        """Write `frames` in one go; a gateway that has closed makes this a no-op."""
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.eof = True

    async def handshake(self) -> None:
        """Preface and SETTINGS both ways, our ACK of the gateway's SETTINGS included."""
        await self.send(PREFACE, SettingsFrame(0))
        await self.until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        await self.send(SettingsFrame(0, flags=["ACK"]))

    # -- reading --------------------------------------------------------------------------
    async def receive(self) -> bool:
        """Read once and parse what came; False at the end of the connection."""
        if self.eof:
            return False
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._buffer += data
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                break
            frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
            del self._buffer[: 9 + length]
            if isinstance(frame, HeadersFrame):
                self.responses[frame.stream_id] = dict(self.decoder.decode(frame.data, raw=True))
            self.frames.append(frame)
        return True

    async def until(self, done: Callable[[Frame], bool]) -> Frame | None:
        """Read until a frame satisfies `done` (returned) or the connection ends (None)."""
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if done(frame):
                    return frame
            seen = len(self.frames)
            if not await self.receive():
                return None

    async def until_goaway(self) -> GoAwayFrame | None:
        """The first GOAWAY, read for; None if the connection ends without one."""
        frame = await self.until(lambda f: isinstance(f, GoAwayFrame))
        assert frame is None or isinstance(frame, GoAwayFrame)
        return frame

    async def read_to_end(self) -> None:
        while await self.receive():
            pass

    # -- what arrived ---------------------------------------------------------------------
    def goaway(self) -> GoAwayFrame | None:
        return next((f for f in self.frames if isinstance(f, GoAwayFrame)), None)

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def body(self, stream_id: int) -> bytes:
        return b"".join(
            f.data for f in self.frames if isinstance(f, DataFrame) and f.stream_id == stream_id
        )
