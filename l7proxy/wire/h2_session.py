"""One HTTP/2 connection driven over a trio stream, for either side.

The same driver serves clients (server side) and talks to clusters (client side), so flow
control is written once:

* received DATA is acknowledged (WINDOW_UPDATE) only when the consumer takes it, so a
  peer can never have more in flight towards us than the window we advertised;
* DATA is sent in pieces no larger than the stream's and the connection's send window;
  a sender whose window is empty waits for the peer's WINDOW_UPDATE, while every other
  stream keeps moving.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import trio

from l7proxy.wire import h2_speedups
from l7proxy.wire.h2_goaway import GoAway, GoawaySplitter
from l7proxy.wire.h2_guard import (
    HARD_STREAM_FACTOR,
    HEAD_TIMEOUT,
    PREFACE_TIMEOUT,
    RESET_ALLOWANCE_FACTOR,
    TOO_MANY_RESETS,
    H2Failure,
    ResetBudget,
    StreamLimitSettings,
    header_block_pending,
    protocol_failure,
)
from l7proxy.wire.quiet_lock import QuietLock

Headers = list[tuple[bytes, bytes]]

# Per-stream receive window. Large enough for a fast watch or list on a long-latency link,
# small enough that a stalled consumer pins little memory: a stream never buffers more.
STREAM_WINDOW: Final = 1 << 20
# The connection window covers every stream; sized so a handful of busy streams never stall
# one another.
CONNECTION_WINDOW: Final = 16 << 20
_READ_SIZE: Final = 64 * 1024
# Frames produced but not yet written: past this, senders wait for the writer. Small enough
# to bound memory per connection, large enough to coalesce many frames into one TLS write.
_BACKLOG_LIMIT: Final = 256 * 1024
# What one `receive` hands over at most, joining DATA frames already received.
_RECEIVE_MAX: Final = 256 * 1024
# After a GOAWAY for an error, how long it may take to write and how long the peer's
# further bytes are read and dropped (closing with unread bytes makes the kernel send a
# TCP reset, which can destroy the GOAWAY before the peer reads it). Go's server waits 1 s.
_GOAWAY_LINGER: Final = 1.0
# How many closed streams h2 remembers the end of, to tell a late frame on a stream reset
# a moment ago (answered with RST_STREAM) from a protocol error. h2 keeps 65,536, about
# 7 MiB on one long-lived session (the one to a cluster): a slow climb for hours. A late
# frame comes within a round trip, long before this many more streams have closed.
CLOSED_STREAMS_REMEMBERED: Final = 4096


class StreamClosedError(Exception):
    """The stream was reset by the peer or the connection went away."""

    def __init__(self, stream_id: int, error_code: int | None = None) -> None:
        super().__init__(f"HTTP/2 stream {stream_id} closed (error code {error_code})")
        self.stream_id = stream_id
        self.error_code = error_code


@contextlib.contextmanager
def _stream_errors(stream_id: int) -> Iterator[None]:
    """h2 refusing to send on a stream (closed by the peer, or the whole connection after a
    GOAWAY) is the stream's end, as a reset is."""
    try:
        yield
    except h2.exceptions.ProtocolError as exc:
        raise StreamClosedError(stream_id) from exc


class _Signal:
    """A repeatable wake-up: waiters sleep until the next `fire`. Every waiter checks its
    condition before waiting, so a `fire` with nobody waiting can be skipped: it is, as it
    happens once per received DATA frame."""

    __slots__ = ("_event", "_waiting")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._waiting = 0

    def fire(self) -> None:
        if self._waiting:
            self._event.set()
            self._event = trio.Event()

    async def wait(self) -> None:
        self._waiting += 1
        try:
            await self._event.wait()
        finally:
            self._waiting -= 1


class H2Stream:
    """One stream of an `H2Session`: head, body in, body out."""

    def __init__(self, session: H2Session, stream_id: int) -> None:
        self.session = session
        self.id = stream_id
        self.headers: Headers = []
        self.head_received = trio.Event()
        self.cancel_scope = trio.CancelScope()
        self.bodyless = False  # the request's HEADERS frame ended the stream
        self.end_sent = False  # we sent END_STREAM (server side: the response is whole)
        self._inbound: deque[tuple[bytes, int]] = deque()
        self._ended = False
        self._reset_code: int | None = None
        self._changed = _Signal()

    # -- events from the session's reader -------------------------------------------------
    def _on_headers(self, headers: Headers) -> None:
        self.headers = headers
        self.head_received.set()

    def _on_data(self, data: bytes, flow_controlled_length: int) -> None:
        self._inbound.append((data, flow_controlled_length))
        self._changed.fire()

    def _on_end(self) -> None:
        self._ended = True
        self.head_received.set()
        self._changed.fire()

    def _on_reset(self, error_code: int) -> None:
        self._reset_code = error_code
        self.head_received.set()
        self.cancel_scope.cancel()
        self._changed.fire()
        self.session.window_opened.fire()  # a sender waiting for window learns of it too

    @property
    def ended(self) -> bool:
        """The peer has finished sending (END_STREAM seen)."""
        return self._ended

    @property
    def is_reset(self) -> bool:
        return self._reset_code is not None

    # -- the consumer's side --------------------------------------------------------------
    async def receive(self) -> bytes:
        """The body received so far and not yet taken (at most `_RECEIVE_MAX` bytes at a
        time, so many small DATA frames cost one wake-up); b"" at the end of the body."""
        while True:
            if self._inbound:
                parts: list[bytes] = []
                size = acknowledged = 0
                while self._inbound and size < _RECEIVE_MAX:
                    data, length = self._inbound.popleft()
                    parts.append(data)
                    size += len(data)
                    acknowledged += length
                await self.session.acknowledge(self.id, acknowledged)
                if size:
                    return b"".join(parts)
                continue
            if self._ended:
                return b""
            if self._reset_code is not None or self.session.closed:
                raise StreamClosedError(self.id, self._reset_code)
            await self._changed.wait()

    async def send_headers(self, headers: Headers, *, end_stream: bool = False) -> None:
        self._check_open()
        with _stream_errors(self.id):
            self.session.conn.send_headers(self.id, headers, end_stream=end_stream)
        self.end_sent = self.end_sent or end_stream
        await self.session.flush()

    async def send(self, data: bytes) -> None:
        """Send `data`, waiting for send window as the peer grants it. Frames are handed
        to the writer together: before waiting for window, and whenever they would take
        the connection's backlog to `_BACKLOG_LIMIT` (where `flush` waits for the writer)."""
        view = memoryview(data)
        conn = self.session.conn
        unflushed = 0
        while view:
            self._check_open()
            with _stream_errors(self.id):
                window = conn.local_flow_control_window(self.id)
            if window <= 0:
                if unflushed:
                    await self.session.flush()
                    unflushed = 0
                    continue  # flushing may have waited: look at the window again
                await self.session.window_opened.wait()
                continue
            size = min(window, conn.max_outbound_frame_size, len(view))
            with _stream_errors(self.id):
                conn.send_data(self.id, bytes(view[:size]))
            view = view[size:]
            unflushed += size
            if self.session.backlog + unflushed >= _BACKLOG_LIMIT:
                await self.session.flush()
                unflushed = 0
        await self.session.flush()

    async def end(self) -> None:
        self._check_open()
        with _stream_errors(self.id):
            self.session.conn.end_stream(self.id)
        self.end_sent = True
        await self.session.flush()

    async def reset(self, error_code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """Abandon the stream; harmless if it already ended."""
        if self._reset_code is not None or self.session.closed:
            return
        self._reset_code = error_code
        try:
            self.session.conn.reset_stream(self.id, error_code)
        except h2.exceptions.H2Error:
            return
        await self.session.flush()

    def _check_open(self) -> None:
        if self._reset_code is not None or self.session.closed:
            raise StreamClosedError(self.id, self._reset_code)


OnRequest = Callable[[H2Stream], Awaitable[None]]


class _Connection(h2.connection.H2Connection):
    """h2's state machine, remembering the ends of the last `remembered` closed streams."""

    def __init__(self, config: h2.config.H2Configuration, remembered: int) -> None:
        self.MAX_CLOSED_STREAMS = remembered  # read by h2's __init__
        super().__init__(config)

    def release(self) -> None:
        """Break the cycle h2 builds (a table of its own bound methods), so that reference
        counting frees a finished connection at once. Otherwise only the cyclic collector
        does, which the gateway runs rarely (`tune_garbage_collector`): in the soak some 400
        dead connections (~15 MiB) piled up between collections, and those promoted to the
        oldest generation stayed for hours. Receiving frames is over once this is called."""
        self._frame_dispatch_table.clear()


class H2Session:
    """Drives an `h2` state machine over `transport`. `run` is the only reader; any task
    may send, serialised by one lock so frames leave in the order h2 produced them."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        *,
        client_side: bool,
        max_concurrent_streams: int = 250,
        max_header_bytes: int = 64 * 1024,
        head_timeout: float = math.inf,
        closed_streams_remembered: int = CLOSED_STREAMS_REMEMBERED,
    ) -> None:
        """`head_timeout` (server side) bounds the wait for the client's preface and
        SETTINGS, then for each request header block once it has begun."""
        self.transport = transport
        self.client_side = client_side
        # Outbound fields are not validated again (a sixth of h2's coding time): each was
        # validated on the way in (h11, or h2's inbound checks) or written by the gateway,
        # and hop-by-hop fields are dropped before they get here. Normalisation stays on.
        self.conn = _Connection(
            h2.config.H2Configuration(
                client_side=client_side, header_encoding=None, validate_outbound_headers=False
            ),
            closed_streams_remembered,
        )
        h2_speedups.install(self.conn.encoder)
        self.streams: dict[int, H2Stream] = {}
        self.window_opened = _Signal()
        self.closed = False
        self.goaway_received = False
        self.goaway_sent = False
        # A client keeps a server's GOAWAY from h2, which would refuse the streams it spares.
        self._goaways = GoawaySplitter(self.conn.max_inbound_frame_size) if client_side else None
        self._max_streams = max_concurrent_streams
        self._max_header_bytes = max_header_bytes
        self._head_timeout = head_timeout
        self._settings_received = False
        self._resets = ResetBudget(
            math.inf if client_side else RESET_ALLOWANCE_FACTOR * max_concurrent_streams
        )
        # Why the session ended the connection itself, when it did.
        self.failure: H2Failure | None = None
        self._send_lock = QuietLock()
        self.streams_changed = _Signal()
        self.idle_since = trio.current_time()  # when the last stream ended, or the start
        # Frames h2 produced that the writer has not written yet, and their size.
        self._outgoing: list[bytes] = []
        self.backlog = 0
        self._writer_wakeup = trio.Event()
        self._written = _Signal()

    async def start(self) -> None:
        """Send the connection preface and our settings."""
        self.conn.local_settings = StreamLimitSettings(
            client=self.client_side,
            hard_limit=HARD_STREAM_FACTOR * self._max_streams,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                # Advertise twice our own limit so an oversized block still decodes and can
                # be answered with a 431 rather than a connection error.
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 2 * self._max_header_bytes,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self.conn.initiate_connection()
        # h2 applies the advertised limit only once the peer acknowledges our SETTINGS; a
        # client may send its first request before that, so the decoder takes it now.
        self.conn.decoder.max_header_list_size = 2 * self._max_header_bytes
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        await self._write_pending()

    async def flush(self) -> None:
        """Have what h2 produced written soon. The writer task takes everything pending at
        once, so frames produced in one scheduling pass leave in one TLS write; a sender
        waits only when the backlog is past `_BACKLOG_LIMIT` (a slow peer). With nothing
        produced, the writer is not woken."""
        if self.closed:
            raise StreamClosedError(0)
        self._collect()
        while self.backlog > _BACKLOG_LIMIT and not self.closed:
            await self._written.wait()

    def _collect(self, *, wake_writer: bool = True) -> None:
        """Take what h2 has produced into the writer's queue."""
        data = self.conn.data_to_send()
        if data:
            self._outgoing.append(data)
            self.backlog += len(data)
            if wake_writer:
                self._writer_wakeup.set()

    async def _writer(self) -> None:
        while not self.closed:
            await self._writer_wakeup.wait()
            self._writer_wakeup = trio.Event()
            await self._write_pending()

    async def _write_pending(self) -> None:
        async with self._send_lock:
            self._collect(wake_writer=False)  # taken now: no need for another pass
            data = b"".join(self._outgoing)
            self._outgoing.clear()
            self.backlog = 0
            if data:
                try:
                    await self.transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._mark_closed()
            self._written.fire()

    async def acknowledge(self, stream_id: int, length: int) -> None:
        if length and not self.closed:
            try:
                self.conn.acknowledge_received_data(length, stream_id)
            except h2.exceptions.ProtocolError:
                return  # the stream or the connection has closed
            await self.flush()

    # -- client side ----------------------------------------------------------------------
    @property
    def can_open_stream(self) -> bool:
        if self.closed or self.goaway_received:
            return False
        return self.conn.open_outbound_streams < self.conn.remote_settings.max_concurrent_streams

    async def open_stream(self, headers: Headers, *, end_stream: bool) -> H2Stream:
        stream_id = self.conn.get_next_available_stream_id()
        stream = H2Stream(self, stream_id)
        self.streams[stream_id] = stream
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        await self.flush()
        return stream

    # -- the reader -----------------------------------------------------------------------
    async def run(self, on_request: OnRequest | None = None) -> None:
        """Read frames until the connection ends. On the server side each new request
        runs `on_request` in a task of this session's nursery, which this call owns."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                try:
                    await self._read_loop(nursery, on_request)
                finally:
                    self._mark_closed()
                    nursery.cancel_scope.cancel()
        finally:
            self.conn.release()  # no reader and no stream handler is left

    async def _read_loop(self, nursery: trio.Nursery, on_request: OnRequest | None) -> None:
        head_deadline = trio.current_time() + self._head_timeout
        while not self.closed:
            data = await self._read(head_deadline)
            if data is None:
                await self._fail(HEAD_TIMEOUT if self._settings_received else PREFACE_TIMEOUT)
                return
            if not data:
                return
            if (failure := self._receive(data, nursery, on_request)) is not None:
                await self._fail(failure)
                return
            await self._flush_quietly()
            if self.goaway_received and all(s.is_reset for s in self.streams.values()):
                return
            if self._settings_received and not header_block_pending(self.conn):
                head_deadline = math.inf
            elif head_deadline == math.inf:
                head_deadline = trio.current_time() + self._head_timeout

    async def _read(self, deadline: float) -> bytes | bytearray | None:
        """The peer's next bytes (empty at the end of the connection), or None once
        `deadline` has passed. Without a deadline no cancel scope is entered: that costs
        several microseconds, and most reads have none."""
        try:
            if deadline == math.inf:
                return await self.transport.receive_some(_READ_SIZE)
            with trio.move_on_at(deadline):
                return await self.transport.receive_some(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        return None

    def _receive(
        self, data: bytes | bytearray, nursery: trio.Nursery, on_request: OnRequest | None
    ) -> H2Failure | None:
        """Feed `data` to h2 and act on its events; the failure that ends the connection,
        if the data brought one."""
        goaways: list[GoAway] = []
        if self._goaways is not None:
            data, goaways = self._goaways.feed(data)
        try:
            events = self.conn.receive_data(data) if data else []
        except h2.exceptions.ProtocolError as exc:
            return protocol_failure(exc)
        for event in events:
            self._dispatch(event, nursery, on_request)
            if self._resets.exhausted:
                return TOO_MANY_RESETS
        for goaway in goaways:
            self._on_goaway(goaway.last_stream_id)
        return None

    async def _fail(self, failure: H2Failure) -> None:
        """End the connection for the peer's misbehaviour: GOAWAY with the failure's error
        code is written before the session closes, so the peer learns why."""
        self.failure = failure
        self.conn.close_connection(failure.error_code, additional_data=failure.reason.encode())
        with (
            trio.move_on_after(_GOAWAY_LINGER),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await self._write_pending()
            while await self.transport.receive_some(_READ_SIZE):
                pass

    def _dispatch(
        self, event: h2.events.Event, nursery: trio.Nursery, on_request: OnRequest | None
    ) -> None:
        match event:
            case h2.events.RequestReceived(stream_id=sid, headers=headers) if sid is not None:
                stream = self._on_request(sid, list(headers or []), nursery, on_request)
                if stream is not None:
                    # END_STREAM on the HEADERS frame itself: a request without a body.
                    stream.bodyless = event.stream_ended is not None
            case h2.events.ResponseReceived(stream_id=sid, headers=headers) if sid is not None:
                if (stream := self.streams.get(sid)) is not None:
                    stream._on_headers(list(headers or []))
            case h2.events.DataReceived(stream_id=sid) if sid is not None:
                length = event.flow_controlled_length or 0
                stream = self.streams.get(sid)
                if stream is None:
                    # Data for a stream we gave up on: give the window straight back.
                    self._acknowledge_now(sid, length)
                else:
                    stream._on_data(event.data or b"", length)
            case (
                h2.events.StreamEnded(stream_id=sid) | h2.events.TrailersReceived(stream_id=sid)
            ) if sid is not None:
                if (stream := self.streams.get(sid)) is not None:
                    stream._on_end()
            case h2.events.StreamReset(stream_id=sid) if sid is not None:
                if (stream := self.streams.get(sid)) is not None:
                    if not stream.end_sent:
                        self._resets.churn()
                    stream._on_reset(int(event.error_code or 0))
            case h2.events.RemoteSettingsChanged():
                self._settings_received = True
                self.window_opened.fire()
            case h2.events.WindowUpdated():
                self.window_opened.fire()
            case h2.events.ConnectionTerminated():
                # h2 sends nothing after a GOAWAY it saw: a server's streams are done (a
                # client's GOAWAY frames are taken aside before h2, see `_receive`).
                self._on_goaway(0)
            case _:
                pass

    def _on_goaway(self, last_stream_id: int) -> None:
        """No new streams; those above `last_stream_id` were never processed by the peer
        (refused, so a request on one may be sent again), the others go on."""
        self.goaway_received = True
        for sid, stream in list(self.streams.items()):
            if sid > last_stream_id:
                stream._on_reset(int(h2.errors.ErrorCodes.REFUSED_STREAM))
        self.window_opened.fire()  # wake senders: their streams may be gone

    def _on_request(
        self,
        stream_id: int,
        headers: Headers,
        nursery: trio.Nursery,
        on_request: OnRequest | None,
    ) -> H2Stream | None:
        if on_request is None or self.goaway_sent or len(self.streams) >= self._max_streams:
            self._resets.churn()
            # A client that reset the stream in the same read has closed it already.
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return None
        stream = H2Stream(self, stream_id)
        stream._on_headers(headers)
        self.streams[stream_id] = stream
        nursery.start_soon(self._run_stream, stream, on_request)
        return stream

    async def _run_stream(self, stream: H2Stream, on_request: OnRequest) -> None:
        try:
            with stream.cancel_scope:
                await on_request(stream)
        finally:
            if stream.end_sent:
                self._resets.serve()
            self.forget(stream)

    def forget(self, stream: H2Stream) -> None:
        """Drop a finished stream; later frames for it are acknowledged and ignored."""
        self.streams.pop(stream.id, None)
        if not self.streams:
            self.idle_since = trio.current_time()
        self.streams_changed.fire()

    def _acknowledge_now(self, stream_id: int, length: int) -> None:
        if length:
            try:
                self.conn.acknowledge_received_data(length, stream_id)
            except h2.exceptions.StreamClosedError:
                self.conn.increment_flow_control_window(length)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except StreamClosedError:
            self._mark_closed()

    def _mark_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer_wakeup.set()
        self._written.fire()
        for stream in list(self.streams.values()):
            stream._on_reset(int(h2.errors.ErrorCodes.CANCEL))
        self.window_opened.fire()
        self.streams_changed.fire()

    async def announce_goaway(self) -> None:
        """A graceful GOAWAY (RFC 9113 §6.8, NO_ERROR) naming the last stream we took: the
        peer opens no more, while the streams already open go on. h2's `close_connection`
        would close its state machine, so the frame is written beside it."""
        if self.closed or self.goaway_sent:
            return
        self.goaway_sent = True
        frame = hyperframe.frame.GoAwayFrame(
            0, last_stream_id=self.conn.highest_inbound_stream_id, error_code=0
        )
        self._collect(wake_writer=False)  # what h2 produced before leaves first
        self._outgoing.append(frame.serialize())
        await self._write_pending()

    async def close(self, *, drain: float = 0.0) -> None:
        """Send GOAWAY, give open streams `drain` seconds, then close the transport."""
        if not self.closed:
            self.conn.close_connection()
            await self._write_pending()
            with trio.move_on_after(drain):
                while self.streams and not self.closed:
                    await self.streams_changed.wait()
        self._mark_closed()
        await self.transport.aclose()

    @property
    def stream_count(self) -> int:
        return len(self.streams)


def plain_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Regular (non-pseudo) header fields, names already lower-case in HTTP/2."""
    return [(k, v) for k, v in headers if not k.startswith(b":")]
