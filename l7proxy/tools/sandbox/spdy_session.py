"""The server side of a SPDY/3.1 session on an upgraded connection, for the sandbox's
port-forward and its exec/attach for old kubectl clients.

The client opens the streams; a handler accepts, answers and closes them. One reader task
owns the receive side and hands each stream's data over a rendezvous channel, so a stream
whose reader is slow stops the connection (TCP pushes back) rather than filling memory —
which is how moby/spdystream behaves too (it keeps no flow-control windows either). The
session ends when the client closes the connection, sends something unreadable, or the
handler returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from l7proxy.tools.sandbox.status import bad_request
from l7proxy.wire.exchange import (
    ClientDisconnected,
    Exchange,
    RequestHead,
    UpgradedStream,
    UpgradeNotPossible,
)
from protocols.spdy import (
    Data,
    Frame,
    GoAway,
    HeaderBlock,
    Ping,
    RstStatus,
    RstStream,
    SpdyCodec,
    SpdyError,
    SynReply,
    SynStream,
    header_value,
)

SEND_CHUNK = 32 * 1024  # bytes per DATA frame we send, as client-go's io.Copy writes them
MAX_OPEN_STREAMS = 128  # past this, new streams are refused with RST_STREAM
ACCEPT_BACKLOG = 8  # streams opened but not yet accepted by the handler
# After our GOAWAY, how long the client gets to read everything and close the connection
# itself: closing first could drop frames spdystream has read but not yet handled.
GOAWAY_GRACE = 5.0


def request_header_values(head: RequestHead, name: bytes) -> list[str]:
    """Every comma-separated value of a request header that may repeat (client-go sends one
    `X-Stream-Protocol-Version` line per protocol it speaks)."""
    return [
        token.strip()
        for key, value in head.headers
        if key == name
        for token in value.decode("latin-1").split(",")
        if token.strip()
    ]


async def switch_protocols(
    exchange: Exchange, headers: list[tuple[bytes, bytes]]
) -> UpgradedStream:
    """`exchange.upgrade`, answering 400 as the kubelet does where it cannot switch."""
    try:
        return await exchange.upgrade(headers)
    except UpgradeNotPossible as exc:
        raise bad_request("Upgrade request required") from exc


class SpdyStream:
    """A client-opened stream: its headers, what the client sends on it, and our half."""

    def __init__(self, session: SpdySession, frame: SynStream) -> None:
        self.stream_id = frame.stream_id
        self.headers: HeaderBlock = frame.headers
        self._session = session
        self._inbox_send, self._inbox = trio.open_memory_channel[bytes](0)
        self.remote_done = False  # the client sent FIN or RST_STREAM
        self.local_done = False  # we sent FIN or RST_STREAM
        if frame.fin:
            self.remote_finished()

    def header(self, name: bytes) -> str:
        """A header the client opened the stream with ("" when absent)."""
        return (header_value(self.headers, name) or b"").decode("latin-1")

    async def reply(self) -> None:
        """Accept the stream: client-go's CreateStream waits for this SYN_REPLY."""
        await self._session.send_frame(SynReply(self.stream_id, ()))

    async def receive(self) -> bytes:
        """The next bytes the client sent; b"" once it finished or reset the stream."""
        try:
            return await self._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return b""

    def stop_receiving(self) -> None:
        """Discard whatever else the client sends on this stream."""
        self._inbox.close()

    async def send(self, data: bytes) -> None:
        for start in range(0, len(data), SEND_CHUNK):
            if self.local_done:
                return  # reset: the client discards data for it anyway
            await self._session.send_frame(Data(self.stream_id, data[start : start + SEND_CHUNK]))

    async def close(self) -> None:
        """FIN our half: the client's reads of this stream reach EOF."""
        if not self.local_done:
            self.local_done = True
            await self._session.send_frame(Data(self.stream_id, b"", fin=True))
            self._session.forget_if_done(self)

    async def reset(self, status: RstStatus = RstStatus.CANCEL) -> None:
        if not self.local_done:
            self.local_done = True
            self.remote_finished()
            await self._session.send_frame(RstStream(self.stream_id, status))
            self._session.forget_if_done(self)

    def remote_finished(self) -> None:
        self.remote_done = True
        self._inbox_send.close()

    async def deliver(self, data: bytes) -> None:
        """Hand received bytes to the stream's reader, waiting for it; dropped when the
        stream no longer reads."""
        if data and not self.remote_done:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._inbox_send.send(data)


class SpdySession:
    """One upgraded connection speaking SPDY/3.1 as the server."""

    def __init__(self, transport: UpgradedStream) -> None:
        self._transport = transport
        self._codec = SpdyCodec()
        self._send_lock = trio.Lock()  # frames reach the wire in the order they are encoded
        self._streams: dict[int, SpdyStream] = {}
        self._last_stream_id = 0
        self._new_send, self._new = trio.open_memory_channel[SpdyStream](ACCEPT_BACKLOG)
        self._scope = trio.CancelScope()

    async def accept(self) -> SpdyStream:
        """The next stream the client opens (the session is cancelled when it closes)."""
        return await self._new.receive()

    async def send_frame(self, frame: Frame) -> None:
        """Send one frame; if the client has gone, the whole session ends."""
        try:
            async with self._send_lock:
                await self._transport.send_all(self._codec.encode(frame))
        except ClientDisconnected:
            self._scope.cancel()
            await trio.lowlevel.checkpoint()

    def forget_if_done(self, stream: SpdyStream) -> None:
        if stream.local_done and stream.remote_done:
            self._streams.pop(stream.stream_id, None)

    async def _read_frames(self) -> None:
        """Receive until the client closes the connection; then end the session."""
        try:
            while data := await self._transport.receive_some():
                for frame in self._codec.receive_data(data):
                    await self._dispatch(frame)
        except SpdyError as exc:
            await self.send_frame(GoAway(self._last_stream_id, exc.goaway_status))
        except ClientDisconnected:
            pass  # a WebSocket tunnel answers pings and closes while it reads
        self._scope.cancel()

    async def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, SynStream):
            await self._open(frame)
        elif isinstance(frame, Data):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                await stream.deliver(frame.data)
                if frame.fin:
                    stream.remote_finished()
                    self.forget_if_done(stream)
        elif isinstance(frame, RstStream):
            stream = self._streams.pop(frame.stream_id, None)
            if stream is not None:
                stream.local_done = True
                stream.remote_finished()
        elif isinstance(frame, Ping) and frame.ping_id % 2 == 1:
            await self.send_frame(frame)  # the client's ping (odd ids): echo it
        # SETTINGS, WINDOW_UPDATE, HEADERS and GOAWAY need nothing: spdystream keeps no
        # flow-control windows, and its GOAWAY is followed by closing the connection.

    async def _open(self, frame: SynStream) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self._last_stream_id:
            await self.send_frame(RstStream(frame.stream_id, RstStatus.PROTOCOL_ERROR))
            return
        self._last_stream_id = frame.stream_id
        if len(self._streams) >= MAX_OPEN_STREAMS:
            await self.send_frame(RstStream(frame.stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, frame)
        try:
            self._new_send.send_nowait(stream)
        except trio.WouldBlock:
            await self.send_frame(RstStream(frame.stream_id, RstStatus.REFUSED_STREAM))
            return
        self._streams[frame.stream_id] = stream

    async def run(self, handler: Handler) -> None:
        """Run `handler` on this session until either side ends it; when the handler
        returns, say GOAWAY and give the client `GOAWAY_GRACE` to close first."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_frames)
                await handler(self)
                await self.send_frame(GoAway(self._last_stream_id))
                await trio.sleep(GOAWAY_GRACE)
                nursery.cancel_scope.cancel()


Handler = Callable[[SpdySession], Awaitable[None]]
