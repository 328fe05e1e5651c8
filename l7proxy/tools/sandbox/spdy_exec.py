"""`pods/exec` and `pods/attach` over SPDY/3.1, for kubectl ≤ 1.29 (newer ones use WebSocket).

client-go opens one stream per channel, named by its `streamType` header: error, stdin,
stdout, stderr and, with a TTY, resize. As the kubelet does, the server waits for the
streams the query asked for, runs the command, writes how it ended on the error stream
(from v4 a `metav1.Status` carrying the exit code) and closes the streams. The command runs
in the same shell as over WebSocket, so a session behaves alike whichever protocol kubectl
picked. Sources: kubelet's `cri/streaming/remotecommand/httpstream.go`, client-go's
`tools/remotecommand/{v2,v3,v4}.go`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

import trio

from l7proxy.tools.sandbox.shell import StdinReader, Stdio, Terminal, Writer
from l7proxy.tools.sandbox.spdy_session import (
    SpdySession,
    SpdyStream,
    request_header_values,
    switch_protocols,
)
from l7proxy.tools.sandbox.status import ApiError, bad_request
from l7proxy.wire.exchange import Exchange
from protocols import k8s_channels
from protocols.k8s_channels import (
    V2,
    V3,
    V4,
    ChannelError,
    ChannelProtocol,
    TerminalSize,
)

if TYPE_CHECKING:
    from l7proxy.tools.sandbox.exec import Run, StreamOptions

# What the kubelet speaks over SPDY, in the names client-go offers them; v1 (the bare
# `channel.k8s.io`) predates kubectl 1.5 and is not served.
PROTOCOLS: Final = {p.name: p for p in (V4, V3, V2)}
STREAM_CREATION_TIMEOUT: Final = 30.0  # the kubelet's default
STDIN_QUEUE: Final = 16  # stdin chunks waiting for the command to read them
MAX_RESIZE_LINE: Final = 4096  # a resize is one short JSON object per line


async def serve_spdy(
    exchange: Exchange,
    options: StreamOptions,
    run: Run,
    terminal_sizes: deque[TerminalSize],
) -> None:
    """Negotiate the channel protocol as `httpstream.Handshake` does, upgrade, and run."""
    offered = request_header_values(exchange.head, b"x-stream-protocol-version")
    if not offered:
        raise bad_request("unable to upgrade: X-Stream-Protocol-Version is required")
    protocol = next((PROTOCOLS[name] for name in offered if name in PROTOCOLS), None)
    if protocol is None:
        raise ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
            f"server accepts {list(PROTOCOLS)}",
        )
    transport = await switch_protocols(
        exchange,
        [
            (b"connection", b"Upgrade"),
            (b"upgrade", b"SPDY/3.1"),
            (b"x-stream-protocol-version", protocol.name.encode()),
        ],
    )
    session = _ExecSession(protocol, options, run, terminal_sizes)
    await SpdySession(transport).run(session.run)


async def _discard(data: bytes) -> None:
    await trio.lowlevel.checkpoint()


class _ExecSession:
    def __init__(
        self,
        protocol: ChannelProtocol,
        options: StreamOptions,
        run: Run,
        terminal_sizes: deque[TerminalSize],
    ) -> None:
        self._protocol = protocol
        self._options = options
        self._run = run
        self._terminal_sizes = terminal_sizes
        wanted = {
            "error": True,
            "stdin": options.stdin,
            "stdout": options.stdout,
            "stderr": options.stderr,
            "resize": options.tty and protocol.version >= 3,  # v2 has no resizing
        }
        self._expected = {kind for kind, on in wanted.items() if on}

    async def run(self, spdy: SpdySession) -> None:
        streams = await self._wait_for_streams(spdy)
        if streams is None:
            return  # as the kubelet: the client gave up creating its streams
        async with trio.open_nursery() as nursery:
            result = await self._run(self._stdio(nursery, streams))
            nursery.cancel_scope.cancel()  # stop pumping stdin and reading resizes
        for kind in ("stdout", "stderr", "stdin", "resize"):
            if kind in streams:
                streams[kind].stop_receiving()
                await streams[kind].close()
        status = k8s_channels.encode_result(result, self._protocol)
        if status:
            await streams["error"].send(status)
        await streams["error"].close()

    async def _wait_for_streams(self, spdy: SpdySession) -> dict[str, SpdyStream] | None:
        """The streams the query asked for, each accepted as it arrives (client-go waits
        for every reply before it opens the next); None if they do not all come in time."""
        streams: dict[str, SpdyStream] = {}
        with trio.move_on_after(STREAM_CREATION_TIMEOUT):
            while streams.keys() != self._expected:
                stream = await spdy.accept()
                await stream.reply()
                kind = stream.header(b"streamtype")
                if kind in self._expected and kind not in streams:
                    streams[kind] = stream
                else:
                    stream.stop_receiving()  # the kubelet accepts and ignores these
            return streams
        return None

    def _stdio(self, nursery: trio.Nursery, streams: dict[str, SpdyStream]) -> Stdio:
        stdin_send, stdin = trio.open_memory_channel[bytes](STDIN_QUEUE)
        if "stdin" in streams:
            nursery.start_soon(_pump, streams["stdin"], stdin_send)
        else:
            stdin_send.close()
        if "resize" in streams:
            nursery.start_soon(self._read_resizes, streams["resize"])
        stdout: Writer = streams["stdout"].send if "stdout" in streams else _discard
        if self._options.tty:
            terminal = Terminal(stdout)
            nursery.start_soon(terminal.run, stdin)
            return Stdio(terminal.stdin, terminal.write, terminal.write, terminal)
        stderr: Writer = streams["stderr"].send if "stderr" in streams else _discard
        return Stdio(StdinReader(stdin), stdout, stderr)

    async def _read_resizes(self, stream: SpdyStream) -> None:
        """client-go writes one `{"Width":…,"Height":…}` line per resize."""
        pending = b""
        while data := await stream.receive():
            *lines, pending = (pending + data).split(b"\n")
            try:
                for line in lines:
                    self._terminal_sizes.extend(k8s_channels.parse_resize(line))
            except ChannelError:
                break  # the kubelet stops reading resizes at a bad one
            if len(pending) > MAX_RESIZE_LINE:
                break
        stream.stop_receiving()


async def _pump(stream: SpdyStream, stdin: trio.MemorySendChannel[bytes]) -> None:
    """The stdin stream into the command's stdin, until the client's FIN (its EOF)."""
    async with stdin:
        while data := await stream.receive():
            await stdin.send(data)
