"""Kubernetes remote-command channels over WebSocket: exec, attach and cp.

Each WebSocket message carries one channel's bytes behind a channel byte (0 stdin, 1 stdout,
2 stderr, 3 error, 4 resize). The binary subprotocols put the byte in front of the raw data;
the `base64.` ones send text frames with an ASCII digit and the data in base64 (for
browsers). v4 made the error channel a `metav1.Status` carrying the exit code; v5 added a
close signal (255, channel) so a client can end stdin without ending the connection —
what `kubectl exec -i … -- cat` and `kubectl cp` need. Sources: apimachinery's
`util/httpstream/wsstream/conn.go` and `util/remotecommand/constants.go`, client-go's
`tools/remotecommand/{websocket,v4}.go`.

`ChannelStreamObserver` reads one direction of a spliced session's raw bytes into these
events, so the gateway can record stdin, output, resizes and the exit code.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from protocols.websocket import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Close,
    Event,
    FrameParser,
    Message,
    Opcode,
)

CLOSE_SIGNAL: Final = 255
# The error channel's Status is small; bound what an observer buffers waiting for it.
MAX_STATUS_SIZE: Final = 64 * 1024
NON_ZERO_EXIT_CODE: Final = "NonZeroExitCode"
EXIT_CODE_CAUSE: Final = "ExitCode"


class Channel(IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    ERROR = 3
    RESIZE = 4


class ChannelError(ValueError):
    """A message that does not follow the negotiated channel subprotocol."""


@dataclass(frozen=True, slots=True)
class ChannelProtocol:
    """A `*.channel.k8s.io` subprotocol: its framing and what its error channel carries."""

    name: str
    version: int  # 1 for the unversioned names
    base64: bool

    @property
    def close_signal(self) -> bool:
        """Whether a stream can be half-closed with (255, channel)."""
        return self.version >= 5

    @property
    def status_errors(self) -> bool:
        """Whether the error channel carries a `metav1.Status` (else plain text)."""
        return self.version >= 4


V5 = ChannelProtocol("v5.channel.k8s.io", 5, base64=False)
V4 = ChannelProtocol("v4.channel.k8s.io", 4, base64=False)
V4_BASE64 = ChannelProtocol("v4.base64.channel.k8s.io", 4, base64=True)
V3 = ChannelProtocol("v3.channel.k8s.io", 3, base64=False)
V2 = ChannelProtocol("v2.channel.k8s.io", 2, base64=False)
V1 = ChannelProtocol("channel.k8s.io", 1, base64=False)
V1_BASE64 = ChannelProtocol("base64.channel.k8s.io", 1, base64=True)
PROTOCOLS: Final = {p.name: p for p in (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64)}


def select_protocol(offered: Iterable[str]) -> ChannelProtocol | None:
    """The first offered subprotocol spoken here: kube's handshake honours the client's
    order of preference."""
    return next((PROTOCOLS[name] for name in offered if name in PROTOCOLS), None)


@dataclass(frozen=True, slots=True)
class ChannelData:
    channel: int  # a `Channel`, or another number a peer used (kube ignores those)
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseSignal:
    """v5: the sender will send nothing more on `channel` (stdin's EOF)."""

    channel: int


def encode(channel: int, data: bytes, protocol: ChannelProtocol) -> tuple[Opcode, bytes]:
    """The WebSocket message carrying `data` on `channel`."""
    if not 0 <= channel < (10 if protocol.base64 else CLOSE_SIGNAL):
        raise ValueError(f"channel {channel} cannot be sent in {protocol.name}")
    if protocol.base64:
        return Opcode.TEXT, bytes([ord("0") + channel]) + base64.b64encode(data)
    return Opcode.BINARY, bytes([channel]) + data


def encode_close_signal(channel: int, protocol: ChannelProtocol) -> tuple[Opcode, bytes]:
    """v5's message that half-closes `channel`."""
    if not protocol.close_signal:
        raise ValueError(f"{protocol.name} has no close signal")
    return Opcode.BINARY, bytes([CLOSE_SIGNAL, channel])


def decode(
    opcode: Opcode, payload: bytes, protocol: ChannelProtocol
) -> ChannelData | CloseSignal | None:
    """What a data message says; None for an empty message, which kube skips. Either data
    opcode is read (kube's server does), framed as the protocol says."""
    if opcode not in (Opcode.TEXT, Opcode.BINARY):
        raise ChannelError(f"opcode {opcode!r} is not a data message")
    if not payload:
        return None
    channel, body = payload[0], payload[1:]
    if protocol.base64:
        if not ord("0") <= channel <= ord("9"):
            raise ChannelError(f"{protocol.name} messages start with a channel digit")
        channel -= ord("0")
        try:
            body = base64.b64decode(body, validate=True)
        except binascii.Error as err:
            raise ChannelError(f"channel {channel}: data is not base64") from err
    elif channel == CLOSE_SIGNAL and protocol.close_signal:
        if len(body) != 1:
            raise ChannelError("a close signal names exactly one channel")
        return CloseSignal(body[0])
    return ChannelData(channel, body)


# --- the resize channel ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TerminalSize:
    width: int
    height: int


def encode_resize(size: TerminalSize) -> bytes:
    """client-go's resize message: a `remotecommand.TerminalSize` encoded by Go's JSON."""
    return json.dumps({"Width": size.width, "Height": size.height}).encode() + b"\n"


_DECODER: Final = json.JSONDecoder()


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _dimension(obj: dict[str, Any], name: str) -> int:
    """A uint16 field, its name matched case-insensitively as Go's JSON decoder does."""
    value = next((v for k, v in obj.items() if k.lower() == name), 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ChannelError(f"terminal {name} must be an integer from 0 to 65535")
    return value


def parse_resize(data: bytes) -> list[TerminalSize]:
    """The sizes in a resize message: a stream of JSON objects, as kube's decoder reads."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ChannelError("a resize message is not UTF-8") from err
    sizes: list[TerminalSize] = []
    pos = _skip_space(text, 0)
    while pos < len(text):
        try:
            obj, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise ChannelError(f"a resize message is not JSON: {err}") from err
        if not isinstance(obj, dict):
            raise ChannelError("a resize message holds JSON objects")
        sizes.append(TerminalSize(_dimension(obj, "width"), _dimension(obj, "height")))
        pos = _skip_space(text, pos)
    return sizes


# --- the error channel ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecResult:
    """How a command ended: `exit_code` is None when it could not run (or, before v4, when
    only a message says it failed)."""

    exit_code: int | None
    message: str = ""


def encode_result(result: ExecResult, protocol: ChannelProtocol) -> bytes:
    """The error channel's message; b"" means send nothing (success before v4).

    The Status is the one kubelet writes: client-go turns NonZeroExitCode's ExitCode cause
    into `command terminated with exit code N` and kubectl exits N."""
    status: dict[str, Any] = {"metadata": {}}
    if result.exit_code == 0:
        status["status"] = "Success"
    elif result.exit_code is None:
        cause = result.message or "error executing command"
        status.update(
            status="Failure",
            message=f"Internal error occurred: {cause}",
            reason="InternalError",
            details={"causes": [{"message": cause}]},
            code=500,
        )
    else:
        status.update(
            status="Failure",
            message=result.message
            or f"command terminated with non-zero exit code: exit status {result.exit_code}",
            reason=NON_ZERO_EXIT_CODE,
            details={"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(result.exit_code)}]},
        )
    if not protocol.status_errors:  # kubelet's v1 writer: the failure's message, if any
        return b"" if result.exit_code == 0 else str(status["message"]).encode()
    return json.dumps(status, separators=(",", ":")).encode()


def parse_result(data: bytes, protocol: ChannelProtocol) -> ExecResult:
    """Read the error channel's content as client-go's error decoders do."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ChannelError("the error channel is not UTF-8") from err
    if not protocol.status_errors:
        return ExecResult(None, text)
    try:
        status = json.loads(text)
    except json.JSONDecodeError as err:
        raise ChannelError(f"the error channel is not a JSON Status: {err}") from err
    if not isinstance(status, dict):
        raise ChannelError("the error channel is not a JSON Status")
    message = status.get("message") or ""
    if status.get("status") == "Success":
        return ExecResult(0, message)
    if status.get("status") != "Failure":
        raise ChannelError(f"unknown Status status {status.get('status')!r}")
    if status.get("reason") != NON_ZERO_EXIT_CODE:
        return ExecResult(None, message)
    causes = (status.get("details") or {}).get("causes") or []
    for cause in causes:
        if isinstance(cause, dict) and cause.get("reason") == EXIT_CODE_CAUSE:
            code = str(cause.get("message", ""))
            if not code.isdigit() or int(code) > 255:
                raise ChannelError(f"invalid exit code {code!r}")
            return ExecResult(int(code), message)
    raise ChannelError("a NonZeroExitCode Status without an ExitCode cause")


# --- observing a session --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The sender closed the WebSocket connection."""

    code: int | None
    reason: str


ObservedEvent = ChannelData | CloseSignal | TerminalSize | ExecResult | StreamClosed


class ChannelStreamObserver:
    """Reads one direction of a session's raw bytes (after the 101) without taking part.

    Either direction works — client frames are masked, server frames are not, and both are
    accepted. Out come stdin/stdout/stderr data (`ChannelData`, empty messages skipped),
    v5 close signals, parsed resizes (`TerminalSize`), how the command ended (`ExecResult`,
    once the error channel holds a whole Status) and the close of the connection. Control
    frames are skipped. Errors are typed: `WebSocketError` and `ChannelError`."""

    def __init__(
        self, protocol: ChannelProtocol, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        self._protocol = protocol
        self._frames = FrameParser(masked=None, max_message_size=max_message_size)
        self._error = bytearray()

    def feed(self, data: bytes) -> Iterator[ObservedEvent]:
        """Buffer `data` and iterate the events it completes (see `FrameParser.feed`)."""
        return self._events(self._frames.feed(data))

    def _events(self, frames: Iterator[Event]) -> Iterator[ObservedEvent]:
        for frame in frames:
            if isinstance(frame, Close):
                yield StreamClosed(frame.code, frame.reason)
            elif isinstance(frame, Message):
                event = decode(frame.opcode, frame.payload, self._protocol)
                if isinstance(event, ChannelData) and event.channel == Channel.RESIZE:
                    yield from parse_resize(event.data)
                elif isinstance(event, ChannelData) and event.channel == Channel.ERROR:
                    yield from self._error_channel(event.data)
                elif isinstance(event, CloseSignal) or (event is not None and event.data):
                    yield event

    def _error_channel(self, data: bytes) -> Iterator[ExecResult]:
        """A Status may span messages: wait until the bytes so far parse."""
        if not self._protocol.status_errors:
            if data:
                yield parse_result(data, self._protocol)
            return
        self._error += data
        if len(self._error) > MAX_STATUS_SIZE:
            raise ChannelError(f"the error channel holds more than {MAX_STATUS_SIZE} bytes")
        try:
            json.loads(self._error)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        result = parse_result(bytes(self._error), self._protocol)
        self._error.clear()
        yield result
