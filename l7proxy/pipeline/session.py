"""Interactive sessions (exec, attach, port-forward): a start and an end event on the audit
sink, and for exec/attach over a `*.channel.k8s.io` WebSocket an asciicast v2 recording.

The recorder watches the spliced bytes without taking part: a `ChannelStreamObserver` per
direction turns them into stdin, stdout/stderr, resizes and the exit code. Each recording
event is written and flushed as it happens, so a session that ends abruptly still leaves a
valid recording of everything up to that moment. A stream the observer cannot read (a
protocol error) stops the recording, never the session.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs

from l7proxy.telemetry.audit import AuditEvent, AuditLog
from protocols.k8s_channels import (
    PROTOCOLS,
    Channel,
    ChannelData,
    ChannelError,
    ChannelProtocol,
    ChannelStreamObserver,
    ExecResult,
    TerminalSize,
)
from protocols.websocket import WebSocketError

# asciicast v2 needs a size in its header; kubectl sends the real one as its first resize.
DEFAULT_SIZE = TerminalSize(80, 24)


def channel_protocol(response_headers: list[tuple[bytes, bytes]]) -> ChannelProtocol | None:
    """The channel subprotocol the cluster chose in its 101, if it is one."""
    for name, value in response_headers:
        if name.lower() == b"sec-websocket-protocol":
            return PROTOCOLS.get(value.decode("latin-1").strip())
    return None


class Session:
    """One upgraded session's events and, where it can be read, its recording."""

    def __init__(
        self,
        event: AuditEvent,
        query: str,
        *,
        protocol: ChannelProtocol | None,
        audit: AuditLog,
        recordings_dir: Path | None,
    ) -> None:
        self._event = event
        self._audit = audit
        self._started = time.monotonic()
        self._exit: ExecResult | None = None
        params = parse_qs(query, keep_blank_values=True)
        self._details: dict[str, object] = {
            "command": params.get("command", []),
            "container": (params.get("container") or [""])[0],
            "tty": (params.get("tty") or ["false"])[0] in ("1", "true"),
            "stdin": (params.get("stdin") or ["false"])[0] in ("1", "true"),
            "ports": [p for value in params.get("ports", []) for p in value.split(",") if p],
        }
        self._recording: IO[str] | None = None
        self._inbound: ChannelStreamObserver | None = None
        self._outbound: ChannelStreamObserver | None = None
        if (
            protocol is not None
            and recordings_dir is not None
            and event.subresource != "portforward"
        ):
            self._inbound = ChannelStreamObserver(protocol)
            self._outbound = ChannelStreamObserver(protocol)
            self._recording = self._open_recording(recordings_dir)

    def _open_recording(self, recordings_dir: Path) -> IO[str]:
        recordings_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = recordings_dir / f"{stamp}-{self._event.audit_id}.cast"
        self._event.recording = str(path)
        recording = path.open("x", encoding="utf-8", buffering=1)
        header = {
            "version": 2,
            "width": DEFAULT_SIZE.width,
            "height": DEFAULT_SIZE.height,
            "timestamp": int(time.time()),
            "title": f"{self._event.user} {self._event.subresource} "
            f"{self._event.namespace}/{self._event.name}",
            "env": {"TERM": "xterm-256color"},
        }
        recording.write(json.dumps(header) + "\n")
        return recording

    def start(self) -> None:
        self._audit.write_session("session.start", self._event, self._details)

    def from_client(self, data: bytes) -> None:
        self._event.bytes_in += len(data)
        if self._inbound is not None:
            self._observe(self._inbound, data)

    def from_cluster(self, data: bytes) -> None:
        self._event.bytes_out += len(data)
        if self._outbound is not None:
            self._observe(self._outbound, data)

    def _observe(self, observer: ChannelStreamObserver, data: bytes) -> None:
        try:
            for item in observer.feed(data):
                if isinstance(item, ChannelData):
                    kind = "i" if item.channel == Channel.STDIN else "o"
                    self._record(kind, item.data.decode("utf-8", "replace"))
                elif isinstance(item, TerminalSize):
                    self._record("r", f"{item.width}x{item.height}")
                elif isinstance(item, ExecResult):
                    self._exit = item
        except (ChannelError, WebSocketError) as exc:
            self._record("m", f"recording stopped: unreadable stream ({exc})")
            self._stop_recording()

    def _record(self, kind: str, data: str) -> None:
        if self._recording is not None:
            elapsed = round(time.monotonic() - self._started, 6)
            self._recording.write(json.dumps([elapsed, kind, data]) + "\n")

    def _stop_recording(self) -> None:
        self._inbound = self._outbound = None
        if self._recording is not None:
            self._recording.close()
            self._recording = None

    def end(self, ended_by: str) -> None:
        self._stop_recording()
        details: Mapping[str, object] = {
            "ended_by": ended_by,
            "exit_code": self._exit.exit_code if self._exit is not None else None,
            "bytes_in": self._event.bytes_in,
            "bytes_out": self._event.bytes_out,
            "duration_ms": round((time.monotonic() - self._started) * 1000, 3),
        }
        self._audit.write_session("session.end", self._event, details)
