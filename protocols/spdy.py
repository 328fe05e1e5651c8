"""SPDY/3.1 framing, sans-I/O: what kubectl speaks for port-forward and, before 1.30, exec.

Kubernetes still multiplexes those sessions over SPDY/3.1 (moby/spdystream), either on the
upgraded HTTP/1.1 connection or tunnelled in WebSocket binary messages. `SpdyCodec` turns
received bytes into frames and frames into bytes; streams, replies and flow of data are the
caller's. Header blocks are zlib-compressed with the SPDY/3 dictionary on one compression
context per direction for the whole connection, so the codec is per connection and a header
block it cannot read leaves it unusable: every `SpdyError` ends the connection.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

VERSION: Final = 3

# A header block: (name, value) pairs, names lower-case. A name may repeat; on the wire its
# values are joined by NUL (SPDY/3 §2.6.10), so a single value never contains NUL.
HeaderBlock = tuple[tuple[bytes, bytes], ...]

# Largest frame payload accepted. Go's spdystream writes one frame per Write call and
# kubectl copies with 32 KiB buffers; 1 MiB leaves room while bounding memory.
MAX_FRAME_SIZE: Final = 1 << 20
# Largest decompressed header block accepted; Kubernetes stream headers are a few bytes.
MAX_HEADER_BLOCK: Final = 64 * 1024
_MAX_LENGTH: Final = (1 << 24) - 1  # the 24-bit length field
_MAX_ID: Final = (1 << 31) - 1  # stream ids and window deltas are 31-bit

_DICTIONARY_WORDS: Final = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)  # fmt: skip
_DICTIONARY_TAIL: Final = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504"
    "505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, "
    "Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The zlib dictionary of SPDY/3 §2.6.10.1: length-prefixed words, then a plain tail.
HEADER_DICTIONARY: Final = (
    b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS)
    + _DICTIONARY_TAIL.encode()
)


class FrameType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


FLAG_FIN: Final = 0x01
FLAG_UNIDIRECTIONAL: Final = 0x02  # SYN_STREAM only
FLAG_CLEAR_SETTINGS: Final = 0x01  # SETTINGS only


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SpdyError(Exception):
    """The peer sent something this codec cannot accept; the connection must end
    (a GOAWAY with `goaway_status` is the polite way)."""

    goaway_status = GoAwayStatus.PROTOCOL_ERROR


class ProtocolError(SpdyError):
    """A malformed frame: wrong version, length, stream id or field value."""


class FrameTooLarge(SpdyError):
    """A frame longer than the codec's `max_frame_size`."""


class HeaderBlockError(SpdyError):
    """A header block that does not decompress, is too large, or is malformed."""


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: HeaderBlock
    associated_to: int = 0
    priority: int = 0  # 0 (highest) to 7
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: HeaderBlock
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int  # an `RstStatus`, kept as int so unknown codes survive decoding


@dataclass(frozen=True, slots=True)
class Setting:
    id: int  # 24-bit
    value: int  # 32-bit
    flags: int = 0  # 8-bit: FLAG_SETTINGS_PERSIST_VALUE (1), FLAG_SETTINGS_PERSISTED (2)


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[Setting, ...]
    clear: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int  # 32-bit; the client's are odd, the server's even


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True)
class Headers:
    stream_id: int
    headers: HeaderBlock
    fin: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int  # 1 .. 2**31-1


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers | WindowUpdate | Data


def header_value(headers: HeaderBlock, name: bytes) -> bytes | None:
    """The first value of `name` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


class SpdyCodec:
    """One connection's framing: `receive_data` parses what the peer sent, `encode`
    serialises what we send. The two directions have separate zlib contexts, so the codec
    works the same for the client and the server role.

    Memory is bounded: at most one incomplete frame (`max_frame_size` plus its 8-byte
    header) is buffered, and a header block inflates to at most `max_header_block`."""

    def __init__(
        self, *, max_frame_size: int = MAX_FRAME_SIZE, max_header_block: int = MAX_HEADER_BLOCK
    ) -> None:
        self.max_frame_size = min(max_frame_size, _MAX_LENGTH)
        self.max_header_block = max_header_block
        self._buffer = bytearray()
        self._deflate = zlib.compressobj(
            9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY
        )
        self._inflate = zlib.decompressobj(15, zdict=HEADER_DICTIONARY)

    # -- receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Frame]:
        """The frames completed by `data`, in order. Control frames of unknown types are
        skipped, as SPDY/3 §2.2.1 requires."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            word, flags_length = struct.unpack_from(">II", self._buffer)
            flags, length = flags_length >> 24, flags_length & _MAX_LENGTH
            if length > self.max_frame_size:
                raise FrameTooLarge(f"frame of {length} bytes (limit {self.max_frame_size})")
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            if word & 0x80000000:
                frame = self._control(word, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                if word == 0:
                    raise ProtocolError("DATA frame on stream 0")
                frames.append(Data(word, payload, bool(flags & FLAG_FIN)))
        return frames

    def _control(self, word: int, flags: int, payload: bytes) -> Frame | None:
        version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        if kind == FrameType.SYN_STREAM:
            _at_least(payload, 10, "SYN_STREAM")
            stream_id, associated, pri, slot = struct.unpack_from(">IIBB", payload)
            return SynStream(
                _stream_id(stream_id, "SYN_STREAM"),
                self._headers(payload[10:]),
                associated & _MAX_ID,
                pri >> 5,
                slot,
                fin,
                bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
            _at_least(payload, 4, FrameType(kind).name)
            stream_id = _stream_id(struct.unpack_from(">I", payload)[0], FrameType(kind).name)
            headers = self._headers(payload[4:])
            if kind == FrameType.SYN_REPLY:
                return SynReply(stream_id, headers, fin)
            return Headers(stream_id, headers, fin)
        if kind == FrameType.RST_STREAM:
            stream_id, status = _two_words(payload, "RST_STREAM")
            if status == 0:
                raise ProtocolError("RST_STREAM with status 0")
            return RstStream(_stream_id(stream_id, "RST_STREAM"), status)
        if kind == FrameType.SETTINGS:
            return _settings(payload, flags)
        if kind == FrameType.PING:
            if len(payload) != 4:
                raise ProtocolError(f"PING of {len(payload)} bytes")
            return Ping(struct.unpack(">I", payload)[0])
        if kind == FrameType.GOAWAY:
            last_good, status = _two_words(payload, "GOAWAY")
            return GoAway(last_good & _MAX_ID, status)
        if kind == FrameType.WINDOW_UPDATE:
            stream_id, delta = _two_words(payload, "WINDOW_UPDATE")
            delta &= _MAX_ID
            if delta == 0:
                raise ProtocolError("WINDOW_UPDATE with a delta of 0")
            return WindowUpdate(stream_id & _MAX_ID, delta)
        return None

    def _headers(self, compressed: bytes) -> HeaderBlock:
        try:
            raw = self._inflate.decompress(compressed, self.max_header_block + 1)
        except zlib.error as exc:
            raise HeaderBlockError(f"header block does not decompress: {exc}") from exc
        if len(raw) > self.max_header_block or self._inflate.unconsumed_tail:
            raise HeaderBlockError(f"header block over {self.max_header_block} bytes")
        return _parse_header_block(raw)

    # -- sending ------------------------------------------------------------------------

    def encode(self, frame: Frame) -> bytes:
        """The wire bytes of `frame`. Header blocks go through this connection's
        compressor, so frames must be sent in the order they were encoded."""
        if isinstance(frame, Data):
            _check_id(frame.stream_id, "stream id", minimum=1)
            if len(frame.data) > _MAX_LENGTH:
                raise ValueError("a DATA frame carries at most 16 MiB - 1")
            return (
                struct.pack(">II", frame.stream_id, (frame.fin << 24) | len(frame.data))
                + frame.data
            )
        if isinstance(frame, SynStream):
            _check_id(frame.stream_id, "stream id", minimum=1)
            _check_id(frame.associated_to, "associated stream id")
            if not 0 <= frame.priority <= 7 or not 0 <= frame.slot <= 255:
                raise ValueError("priority is 0..7 and slot 0..255")
            flags = (FLAG_FIN if frame.fin else 0) | (
                FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
            )
            fixed = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_to, frame.priority << 5, frame.slot
            )
            return _control(FrameType.SYN_STREAM, flags, fixed + self._compress(frame.headers))
        if isinstance(frame, SynReply | Headers):
            _check_id(frame.stream_id, "stream id", minimum=1)
            kind = FrameType.SYN_REPLY if isinstance(frame, SynReply) else FrameType.HEADERS
            body = struct.pack(">I", frame.stream_id) + self._compress(frame.headers)
            return _control(kind, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, RstStream):
            _check_id(frame.stream_id, "stream id", minimum=1)
            if not 1 <= frame.status <= 0xFFFFFFFF:
                raise ValueError("RST_STREAM status is a non-zero 32-bit code")
            return _control(
                FrameType.RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status)
            )
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries))
            for entry in frame.entries:
                if not (
                    0 <= entry.flags <= 0xFF
                    and 0 <= entry.id <= 0xFFFFFF
                    and 0 <= entry.value <= 0xFFFFFFFF
                ):
                    raise ValueError("a setting has an 8-bit flag, 24-bit id and 32-bit value")
                body += struct.pack(">II", (entry.flags << 24) | entry.id, entry.value)
            return _control(FrameType.SETTINGS, FLAG_CLEAR_SETTINGS if frame.clear else 0, body)
        if isinstance(frame, Ping):
            if not 0 <= frame.ping_id <= 0xFFFFFFFF:
                raise ValueError("a PING id is 32-bit")
            return _control(FrameType.PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAway):
            _check_id(frame.last_good_stream_id, "last good stream id")
            if not 0 <= frame.status <= 0xFFFFFFFF:
                raise ValueError("a GOAWAY status is 32-bit")
            return _control(
                FrameType.GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status)
            )
        _check_id(frame.stream_id, "stream id")
        _check_id(frame.delta, "window delta", minimum=1)
        return _control(
            FrameType.WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta)
        )

    def _compress(self, headers: HeaderBlock) -> bytes:
        raw = _serialize_header_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _control(kind: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > _MAX_LENGTH:
        raise ValueError("a control frame carries at most 16 MiB - 1")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def _check_id(value: int, what: str, *, minimum: int = 0) -> None:
    if not minimum <= value <= _MAX_ID:
        raise ValueError(f"{what} must be {minimum}..2**31-1, not {value}")


def _at_least(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise ProtocolError(f"{what} of {len(payload)} bytes")


def _two_words(payload: bytes, what: str) -> tuple[int, int]:
    if len(payload) != 8:
        raise ProtocolError(f"{what} of {len(payload)} bytes")
    first, second = struct.unpack(">II", payload)
    return first, second


def _stream_id(word: int, what: str) -> int:
    stream_id = word & _MAX_ID
    if stream_id == 0:
        raise ProtocolError(f"{what} on stream 0")
    return stream_id


def _settings(payload: bytes, flags: int) -> Settings:
    _at_least(payload, 4, "SETTINGS")
    (count,) = struct.unpack_from(">I", payload)
    if len(payload) != 4 + 8 * count:
        raise ProtocolError(f"SETTINGS of {len(payload)} bytes for {count} entries")
    entries = []
    for offset in range(4, len(payload), 8):
        flag_id, value = struct.unpack_from(">II", payload, offset)
        entries.append(Setting(flag_id & 0xFFFFFF, value, flag_id >> 24))
    return Settings(tuple(entries), bool(flags & FLAG_CLEAR_SETTINGS))


def _serialize_header_block(headers: HeaderBlock) -> bytes:
    grouped: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if not name or name != name.lower():
            raise ValueError(f"header names are non-empty and lower-case: {name!r}")
        if b"\x00" in name or b"\x00" in value:
            raise ValueError("header names and values cannot contain NUL")
        grouped.setdefault(name, []).append(value)
    parts = [struct.pack(">I", len(grouped))]
    for name, values in grouped.items():
        joined = b"\x00".join(values)
        parts += [struct.pack(">I", len(name)), name, struct.pack(">I", len(joined)), joined]
    return b"".join(parts)


def _parse_header_block(raw: bytes) -> HeaderBlock:
    def take(offset: int) -> tuple[bytes, int]:
        if offset + 4 > len(raw):
            raise HeaderBlockError("header block is truncated")
        (size,) = struct.unpack_from(">I", raw, offset)
        end = offset + 4 + size
        if end > len(raw):
            raise HeaderBlockError("header block is truncated")
        return raw[offset + 4 : end], end

    if len(raw) < 4:
        raise HeaderBlockError("header block is truncated")
    (count,) = struct.unpack_from(">I", raw)
    if count * 8 > len(raw) - 4:  # each pair takes at least two length words
        raise HeaderBlockError(f"header block claims {count} pairs in {len(raw)} bytes")
    offset = 4
    seen: set[bytes] = set()
    pairs: list[tuple[bytes, bytes]] = []
    for _ in range(count):
        name, offset = take(offset)
        value, offset = take(offset)
        if not name or name != name.lower() or b"\x00" in name:
            raise HeaderBlockError(f"invalid header name {name!r}")
        if name in seen:
            raise HeaderBlockError(f"header {name!r} appears twice")
        seen.add(name)
        pairs += [(name, v) for v in value.split(b"\x00")]
    if offset != len(raw):
        raise HeaderBlockError("bytes after the header block")
    return tuple(pairs)
