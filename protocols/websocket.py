"""RFC 6455 WebSocket, sans-I/O: the opening handshake's checks and the frame codec.

kubectl ≥ 1.30 runs exec, attach and cp over WebSocket (`v5.channel.k8s.io`). The codec
serves both roles: a server parses masked client frames and writes unmasked ones, a client
the reverse, and a passive observer (the gateway recording a session it splices) parses
either. Randomness (mask keys, handshake keys) is the caller's, so nothing here does I/O.
No extension is ever negotiated, so the reserved bits must stay clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

# RFC 6455 §1.3: appended to Sec-WebSocket-Key before hashing it into Sec-WebSocket-Accept.
_ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION: Final = b"13"
MAX_CONTROL_PAYLOAD: Final = 125
# A whole (reassembled) message. client-go copies stdin in 32 KiB writes and kube-apiserver
# writes what the container printed; 4 MiB bounds memory with room to spare.
DEFAULT_MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
_MAX_REASON: Final = MAX_CONTROL_PAYLOAD - 2


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """The close codes a peer may send (RFC 6455 §7.4.1) that this module names."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class WebSocketError(Exception):
    """The peer broke the protocol; `close_code` is what to tell it before closing."""

    close_code: int = CloseCode.PROTOCOL_ERROR


class ProtocolError(WebSocketError):
    """A malformed or out-of-order frame."""


class MessageTooBig(WebSocketError):
    """A message (or one frame of it) is larger than the parser's limit."""

    close_code = CloseCode.MESSAGE_TOO_BIG


class InvalidPayload(WebSocketError):
    """A text message or close reason that is not UTF-8."""

    close_code = CloseCode.INVALID_PAYLOAD


class HandshakeError(Exception):
    """An opening handshake that cannot be accepted. `status` and `headers` are the HTTP
    answer a server gives (426 carries the version it speaks)."""

    def __init__(
        self, message: str, status: int = 400, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message, fragments joined. Text payloads are checked UTF-8."""

    opcode: Opcode  # TEXT or BINARY
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame; `code` is None when it carried no status code."""

    code: int | None
    reason: str


Event = Message | Ping | Pong | Close


# --- the opening handshake ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientHandshake:
    key: str  # Sec-WebSocket-Key, to answer with `accept_key`
    protocols: tuple[str, ...]  # offered subprotocols, in the client's order of preference


def accept_key(sec_websocket_key: str) -> str:
    """Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2): proves the server read it."""
    digest = hashlib.sha1(sec_websocket_key.encode("ascii") + _ACCEPT_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


def _tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """The comma-separated tokens of every line of a header, in order."""
    return [
        token.strip()
        for value in _values(headers, name)
        for token in value.decode("latin-1").split(",")
        if token.strip()
    ]


def validate_client_handshake(
    method: str, headers: Iterable[tuple[bytes, bytes]]
) -> ClientHandshake:
    """Check an HTTP/1.1 request is a WebSocket opening handshake (RFC 6455 §4.2.1).

    Raises `HandshakeError` naming what is wrong; a version other than 13 is a 426 that
    tells the client which version to retry with."""
    headers = list(headers)
    if method != "GET":
        raise HandshakeError(f"a WebSocket handshake uses GET, not {method}")
    if "websocket" not in {t.lower() for t in _tokens(headers, b"upgrade")}:
        raise HandshakeError("the request does not ask to upgrade to websocket")
    if "upgrade" not in {t.lower() for t in _tokens(headers, b"connection")}:
        raise HandshakeError("the Connection header does not name upgrade")
    if _tokens(headers, b"sec-websocket-version") != [VERSION.decode()]:
        raise HandshakeError(
            "unsupported Sec-WebSocket-Version: only 13 is spoken",
            status=426,
            headers=[(b"sec-websocket-version", VERSION)],
        )
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError("the request needs exactly one Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        nonce = base64.b64decode(key, validate=True)
    except binascii.Error:
        nonce = b""
    if len(nonce) != 16:
        raise HandshakeError("Sec-WebSocket-Key is not 16 bytes in base64")
    return ClientHandshake(key.decode("ascii"), tuple(_tokens(headers, b"sec-websocket-protocol")))


def server_handshake_headers(key: str, protocol: str | None) -> list[tuple[bytes, bytes]]:
    """The headers of the `101 Switching Protocols` that accepts a client handshake."""
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", accept_key(key).encode("ascii")),
    ]
    if protocol is not None:
        headers.append((b"sec-websocket-protocol", protocol.encode("ascii")))
    return headers


def validate_server_handshake(
    key: str, offered: Sequence[str], status: int, headers: Iterable[tuple[bytes, bytes]]
) -> str | None:
    """Check a server's answer to our handshake (RFC 6455 §4.1) and return the subprotocol
    it chose (None if it chose none). Raises `HandshakeError` when it did not switch."""
    headers = list(headers)
    if status != 101:
        raise HandshakeError(f"the server answered {status}, not 101", status=status)
    if "websocket" not in {t.lower() for t in _tokens(headers, b"upgrade")}:
        raise HandshakeError("the server did not upgrade to websocket", status=status)
    if "upgrade" not in {t.lower() for t in _tokens(headers, b"connection")}:
        raise HandshakeError("the server's Connection header does not name upgrade", status)
    if [v.strip() for v in _values(headers, b"sec-websocket-accept")] != [
        accept_key(key).encode("ascii")
    ]:
        raise HandshakeError("Sec-WebSocket-Accept does not match our key", status=status)
    if _tokens(headers, b"sec-websocket-extensions"):
        raise HandshakeError("the server chose an extension we did not offer", status=status)
    chosen = _tokens(headers, b"sec-websocket-protocol")
    if not chosen:
        return None
    if len(chosen) != 1 or chosen[0] not in offered:
        raise HandshakeError(f"the server chose a subprotocol we did not offer: {chosen}", status)
    return chosen[0]


# --- frames ---------------------------------------------------------------------------


def _apply_mask(payload: bytes, mask_key: bytes) -> bytes:
    """XOR with the repeated 4-byte key (RFC 6455 §5.3), as one big-integer operation."""
    if not payload:
        return payload
    size = len(payload)
    key = (mask_key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return masked.to_bytes(size, "big")


def encode_frame(
    opcode: Opcode, payload: bytes, *, fin: bool = True, mask_key: bytes | None = None
) -> bytes:
    """One frame. A server sends unmasked frames (no `mask_key`); a client must mask each
    frame with 4 fresh random bytes of its own."""
    if opcode >= Opcode.CLOSE and (len(payload) > MAX_CONTROL_PAYLOAD or not fin):
        raise ValueError("control frames carry at most 125 bytes and are never fragmented")
    if mask_key is not None and len(mask_key) != 4:
        raise ValueError("a mask key is 4 bytes")
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask_key is not None else 0
    size = len(payload)
    if size < 126:
        head.append(mask_bit | size)
    elif size < 1 << 16:
        head.append(mask_bit | 126)
        head += size.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += size.to_bytes(8, "big")
    if mask_key is None:
        return bytes(head) + payload
    return bytes(head) + mask_key + _apply_mask(payload, mask_key)


def encode_close(
    code: int | None = CloseCode.NORMAL, reason: str = "", *, mask_key: bytes | None = None
) -> bytes:
    """A close frame; the reason is cut (at a character boundary) to fit a control frame."""
    if code is None:
        return encode_frame(Opcode.CLOSE, b"", mask_key=mask_key)
    text = reason.encode("utf-8")[:_MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(Opcode.CLOSE, code.to_bytes(2, "big") + text, mask_key=mask_key)


def _valid_close_code(code: int) -> bool:
    """Codes a peer may put on the wire: the defined ones, and 3000-4999 for applications."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _parse_close(payload: bytes) -> Close:
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise ProtocolError("a close frame's payload is empty or starts with a 2-byte code")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        return Close(code, payload[2:].decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InvalidPayload("the close reason is not UTF-8") from err


@dataclass(frozen=True, slots=True)
class _Header:
    fin: bool
    opcode: Opcode
    mask_key: bytes | None
    length: int
    size: int  # bytes of the header itself


class FrameParser:
    """Bytes of one direction of a connection in, events out.

    `masked` says who sends the frames: True for a client (a server parses these, and must
    refuse unmasked ones), False for a server, None to accept either (a passive observer).
    Fragmented messages are reassembled up to `max_message_size`; a frame announcing more is
    refused from its header, before its payload is buffered. After a close frame nothing
    more may arrive."""

    def __init__(
        self, *, masked: bool | None, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        self._masked = masked
        self._max_message_size = max_message_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._fragment_size = 0
        self._closed = False

    def feed(self, data: bytes) -> Iterator[Event]:
        """Buffer `data` and iterate the events it completes. An error is raised when
        iteration reaches the bad frame, after the events before it."""
        self._buffer += data
        return self._drain()

    def _drain(self) -> Iterator[Event]:
        while (header := self._header()) is not None:
            end = header.size + header.length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[header.size : end])
            del self._buffer[:end]
            if header.mask_key is not None:
                payload = _apply_mask(payload, header.mask_key)
            event = self._assemble(header, payload)
            if event is not None:
                yield event

    def _header(self) -> _Header | None:
        """The next frame's header once it has fully arrived, checked."""
        buf = self._buffer
        if len(buf) < 2:
            return None
        if self._closed:
            raise ProtocolError("a frame arrived after the close frame")
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise ProtocolError("reserved bits are set but no extension was negotiated")
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError as err:
            raise ProtocolError(f"unknown opcode {first & 0x0F:#x}") from err
        fin, masked = bool(first & 0x80), bool(second & 0x80)
        if self._masked is not None and masked != self._masked:
            raise ProtocolError("client frames must be masked, server frames must not be")
        size, length = 2, second & 0x7F
        if length >= 126:
            width = 2 if length == 126 else 8
            if len(buf) < 2 + width:
                return None
            length = int.from_bytes(buf[2 : 2 + width], "big")
            size += width
            if length >> 63:
                raise ProtocolError("the most significant bit of a 64-bit length is set")
        mask_key = None
        if masked:
            if len(buf) < size + 4:
                return None
            mask_key = bytes(buf[size : size + 4])
            size += 4
        self._check(opcode, fin, length)
        return _Header(fin, opcode, mask_key, length, size)

    def _check(self, opcode: Opcode, fin: bool, length: int) -> None:
        if opcode >= Opcode.CLOSE:
            if not fin or length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError("a control frame is fragmented or longer than 125 bytes")
            return
        if opcode == Opcode.CONTINUATION and self._fragment_opcode is None:
            raise ProtocolError("a continuation frame with no message to continue")
        if opcode != Opcode.CONTINUATION and self._fragment_opcode is not None:
            raise ProtocolError("a new message started before the last one finished")
        if self._fragment_size + length > self._max_message_size:
            raise MessageTooBig(f"message larger than {self._max_message_size} bytes")

    def _assemble(self, header: _Header, payload: bytes) -> Event | None:
        opcode = header.opcode
        if opcode == Opcode.PING:
            return Ping(payload)
        if opcode == Opcode.PONG:
            return Pong(payload)
        if opcode == Opcode.CLOSE:
            self._closed = True
            return _parse_close(payload)
        if opcode != Opcode.CONTINUATION:
            self._fragment_opcode = opcode
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if not header.fin:
            return None
        message_opcode = self._fragment_opcode
        assert message_opcode is not None  # set by this frame or by the one that began it
        whole = b"".join(self._fragments)
        self._fragments, self._fragment_opcode, self._fragment_size = [], None, 0
        if message_opcode == Opcode.TEXT:
            try:
                whole.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InvalidPayload("a text message is not UTF-8") from err
        return Message(message_opcode, whole)
