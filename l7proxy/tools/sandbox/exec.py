"""`pods/exec` and `pods/attach`: kubectl's remote commands, run by the built-in shell.

kubectl ≥ 1.30 upgrades these requests to WebSocket and speaks `v5.channel.k8s.io`: stdin,
stdout, stderr, the exit Status and terminal resizes multiplexed as channels (see
`protocols.k8s_channels`). exec runs its command in a fresh shell; attach joins the
container's main process, a shell whose state lives as long as the pod (an ephemeral
container's too: its command is not run). Older kubectl upgrades
to SPDY/3.1 instead, served by `spdy_exec` with the same shell.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import trio

from l7proxy.tools.sandbox.api import Target
from l7proxy.tools.sandbox.resources import PODS
from l7proxy.tools.sandbox.shell import Container, Shell, StdinReader, Stdio, Terminal, Writer
from l7proxy.tools.sandbox.spdy_exec import serve_spdy
from l7proxy.tools.sandbox.status import ApiError, bad_request, method_not_allowed
from l7proxy.tools.sandbox.store import Store
from l7proxy.wire.exchange import ClientDisconnected, Exchange, UpgradedStream, UpgradeNotPossible
from l7proxy.wire.h1_server import wants_upgrade
from protocols import k8s_channels, websocket
from protocols.k8s_channels import (
    Channel,
    ChannelData,
    ChannelError,
    ChannelProtocol,
    CloseSignal,
    ExecResult,
    TerminalSize,
)
from protocols.websocket import Close, CloseCode, Message, Opcode, Ping, WebSocketError

EXEC_SUBRESOURCES: Final = frozenset({"exec", "attach"})
STDIN_QUEUE: Final = 16  # client messages waiting for the command to read its stdin
OUTPUT_CHUNK: Final = 32 * 1024  # bytes per message sent, as kubelet's io.Copy writes them
CLOSE_TIMEOUT: Final = 5.0  # how long the client gets to answer our close frame
POD_CHECK_INTERVAL: Final = 1.0
MAX_RUNTIMES: Final = 256  # pods whose files and main process are kept (least recent go)
RESIZE_HISTORY: Final = 64
# client-go before 1.33 reads the connection before it has made its streams and drops what
# arrives meanwhile (kubernetes#131189). A real apiserver first sets up the kubelet's streams;
# the sandbox answers at once, so it waits this long, as that setup would, before writing.
STREAM_SETUP_DELAY: Final = 0.1
KILLED: Final = 137  # a command's exit status when its pod goes away (SIGKILL)

Program = Callable[[Stdio], Awaitable[int]]  # a command: its exit status
Run = Callable[[Stdio], Awaitable[ExecResult]]  # a command raced with its pod's deletion


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """PodExecOptions / PodAttachOptions from the query string."""

    container: str
    command: tuple[str, ...]  # empty for attach
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _flag(params: dict[str, str], name: str, default: bool) -> bool:
    """A boolean parameter as Go's strconv.ParseBool reads it."""
    value = params.get(name)
    if value is None:
        return default
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise bad_request(f"{name}: invalid boolean value {value!r}")


def _container(pod: dict[str, Any], requested: str) -> str:
    name = pod["metadata"]["name"]
    spec = pod.get("spec", {})
    names = [c.get("name", "") for c in spec.get("containers") or []]
    ephemeral = [c.get("name", "") for c in spec.get("ephemeralContainers") or []]
    container = requested or (names[0] if len(names) == 1 else "")
    if not container:
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        )
    if container not in names + ephemeral:
        raise bad_request(f"container {container} is not valid for pod {name}")
    return container


def parse_options(pod: dict[str, Any], subresource: str, query: str) -> StreamOptions:
    """Validate as kube does. stdout and stderr default to true (kubectl leaves false
    values out of the query), and a TTY has no separate stderr."""
    params: dict[str, str] = {}
    command: list[str] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "command":
            command.append(value)
        else:
            params.setdefault(key, value)
    tty = _flag(params, "tty", False)
    options = StreamOptions(
        container=_container(pod, params.get("container", "")),
        command=tuple(command) if subresource == "exec" else (),
        stdin=_flag(params, "stdin", False),
        stdout=_flag(params, "stdout", True),
        stderr=_flag(params, "stderr", True) and not tty,
        tty=tty,
    )
    if subresource == "exec" and not options.command:
        raise bad_request("you must specify at least 1 command")
    if not (options.stdin or options.stdout or options.stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    return options


class PodRuntime:
    """What lives as long as a pod: its containers' files (one file system for all), each
    container's main process (which attach joins) and the terminal sizes its sessions
    were given."""

    def __init__(self, pod: dict[str, Any], clock: Callable[[], float]) -> None:
        spec = (pod.get("spec", {}).get("containers") or [{}])[0]
        env = {
            e["name"]: e["value"]
            for e in spec.get("env") or []
            if isinstance(e.get("name"), str) and isinstance(e.get("value"), str)
        }
        env.update(KUBERNETES_SERVICE_HOST="10.96.0.1", KUBERNETES_SERVICE_PORT="443")
        self.uid: str = pod["metadata"]["uid"]
        self.container = Container(pod["metadata"]["name"], env, clock)
        self._mains: dict[str, Shell] = {}
        self.terminal_sizes: deque[TerminalSize] = deque(maxlen=RESIZE_HISTORY)

    def program(self, subresource: str, options: StreamOptions) -> Program:
        if subresource == "attach":
            if options.container not in self._mains:
                self._mains[options.container] = Shell(self.container)
            return self._mains[options.container].session
        env = {**self.container.env, "TERM": "xterm"} if options.tty else None
        shell = Shell(self.container, env=env)
        return functools.partial(shell.run, list(options.command))


class ExecApi:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._runtimes: OrderedDict[str, PodRuntime] = OrderedDict()

    def runtime(self, namespace: str, name: str) -> PodRuntime:
        """The pod's runtime (404 if there is no such pod), made on first use."""
        return self._runtime(self._store.get(PODS, namespace, name))

    def _runtime(self, pod: dict[str, Any]) -> PodRuntime:
        uid = pod["metadata"]["uid"]
        runtime = self._runtimes.pop(uid, None) or PodRuntime(pod, self._clock)
        self._runtimes[uid] = runtime
        while len(self._runtimes) > MAX_RUNTIMES:
            self._runtimes.popitem(last=False)
        return runtime

    async def serve(self, exchange: Exchange, target: Target) -> None:
        head = exchange.head
        if head.method not in ("GET", "POST"):
            raise method_not_allowed()
        assert target.namespace is not None  # pods are namespaced: parse_target saw a name
        pod = self._store.get(PODS, target.namespace, target.name)
        runtime = self._runtime(pod)
        options = parse_options(pod, target.subresource, head.query)
        program = runtime.program(target.subresource, options)
        gone = functools.partial(self._until_gone, target.namespace, target.name, runtime.uid)
        run = functools.partial(_run_until, program, gone)
        upgrade = (head.header(b"upgrade") or b"").decode("latin-1").strip().lower()
        if wants_upgrade(head) and upgrade == "websocket":
            await serve_websocket(exchange, options, run, runtime.terminal_sizes)
        elif wants_upgrade(head) and upgrade == "spdy/3.1":  # kubectl <= 1.29
            await serve_spdy(exchange, options, run, runtime.terminal_sizes)
        else:
            raise bad_request("Upgrade request required")

    async def _until_gone(self, namespace: str, name: str, uid: str) -> None:
        """Returns once the pod is deleted (or replaced by one of the same name)."""
        while True:
            await trio.sleep(POD_CHECK_INTERVAL)
            try:
                if self._store.get(PODS, namespace, name)["metadata"]["uid"] != uid:
                    return
            except ApiError:
                return


async def _run_until(
    program: Program, gone: Callable[[], Awaitable[None]], stdio: Stdio
) -> ExecResult:
    """The command's exit status, or `KILLED` if its pod goes first."""
    code = KILLED
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_after, gone, nursery.cancel_scope)
        code = await program(stdio)
        nursery.cancel_scope.cancel()
    return ExecResult(code)


async def serve_websocket(
    exchange: Exchange, options: StreamOptions, run: Run, terminal_sizes: deque[TerminalSize]
) -> None:
    """Answer the handshake with the first channel subprotocol the client offered, then
    run the session on the upgraded connection."""
    head = exchange.head
    try:
        handshake = websocket.validate_client_handshake(head.method, head.headers)
    except websocket.HandshakeError as err:
        raise bad_request(f"invalid WebSocket handshake: {err}") from err
    protocol = k8s_channels.select_protocol(handshake.protocols)
    if protocol is None:
        raise bad_request(
            f"requested protocol(s) are not supported: {list(handshake.protocols)}; "
            f"supports {list(k8s_channels.PROTOCOLS)}"
        )
    headers = websocket.server_handshake_headers(handshake.key, protocol.name)
    try:
        stream = await exchange.upgrade(headers)
    except UpgradeNotPossible as err:
        raise bad_request("Upgrade request required") from err
    await _WebSocketSession(stream, protocol, options, terminal_sizes).run(run)


async def _discard(data: bytes) -> None:
    await trio.lowlevel.checkpoint()


class _WebSocketSession:
    """One upgraded connection: the client's frames in, the command's channels out.

    The reader and the command run as paired tasks: the client closing ends the command,
    the command ending sends its Status and closes the connection."""

    def __init__(
        self,
        stream: UpgradedStream,
        protocol: ChannelProtocol,
        options: StreamOptions,
        terminal_sizes: deque[TerminalSize],
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._options = options
        self._terminal_sizes = terminal_sizes
        self._frames = websocket.FrameParser(masked=True)
        self._send_lock = trio.Lock()
        self._closed = False  # our close frame is sent: nothing may follow it
        self._stdin_send, self._stdin = trio.open_memory_channel[bytes](STDIN_QUEUE)
        self._scope = trio.CancelScope()

    async def run(self, run: Run) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive)
                if not self._options.stdin:
                    self._stdin_send.close()
                await trio.sleep(STREAM_SETUP_DELAY)
                # As kube-apiserver: an empty message on the first output channel says the
                # streams are ready.
                await self._send(self._first_output(), b"")
                result = await self._run_command(run)
                self._stdin.close()  # the command reads no more: drop what the client sends
                status = k8s_channels.encode_result(result, self._protocol)
                if status:
                    await self._send(Channel.ERROR, status)
                await self._send_close(CloseCode.NORMAL)
                # `_receive` ends the session when the client answers the close.
                await trio.sleep(CLOSE_TIMEOUT)
                nursery.cancel_scope.cancel()

    def _first_output(self) -> Channel:
        if self._options.stdout:
            return Channel.STDOUT
        return Channel.STDERR if self._options.stderr else Channel.ERROR

    def _stdio(self, nursery: trio.Nursery) -> Stdio:
        options = self._options
        stdout: Writer = functools.partial(self._send, Channel.STDOUT)
        if not options.stdout:
            stdout = _discard
        if options.tty:
            terminal = Terminal(stdout)
            nursery.start_soon(terminal.run, self._stdin)
            return Stdio(terminal.stdin, terminal.write, terminal.write, terminal)
        stderr: Writer = functools.partial(self._send, Channel.STDERR)
        return Stdio(StdinReader(self._stdin), stdout, stderr if options.stderr else _discard)

    async def _run_command(self, run: Run) -> ExecResult:
        """How the command ended; a terminal's line discipline runs alongside it."""
        async with trio.open_nursery() as nursery:
            result = await run(self._stdio(nursery))
            nursery.cancel_scope.cancel()
        return result

    async def _receive(self) -> None:
        """Read the client until it closes or breaks the protocol, then end the session
        (and the command, if it still runs: nobody is left to see its output)."""
        try:
            async with self._stdin_send:
                while data := await self._stream.receive_some():
                    if not await self._handle(data):
                        return
        finally:
            self._scope.cancel()

    async def _handle(self, data: bytes) -> bool:
        """Act on the frames in `data`; False once the connection is to end."""
        try:
            for event in self._frames.feed(data):
                if isinstance(event, Close):
                    await self._send_close(event.code)  # echo it, as RFC 6455 §5.5.1 asks
                    return False
                if isinstance(event, Ping):
                    await self._send_frame(websocket.encode_frame(Opcode.PONG, event.payload))
                elif isinstance(event, Message):
                    await self._deliver(event)
        except WebSocketError as err:
            await self._send_close(err.close_code, str(err))
            return False
        except ChannelError as err:
            await self._send_close(CloseCode.PROTOCOL_ERROR, str(err))
            return False
        return True

    async def _deliver(self, message: Message) -> None:
        event = k8s_channels.decode(message.opcode, message.payload, self._protocol)
        if isinstance(event, CloseSignal) and event.channel == Channel.STDIN:
            self._stdin_send.close()
        elif isinstance(event, ChannelData) and event.channel == Channel.STDIN and event.data:
            # Dropped if stdin was not asked for, was closed, or the command has ended.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await self._stdin_send.send(event.data)
        elif isinstance(event, ChannelData) and event.channel == Channel.RESIZE:
            # kube stops reading resizes at a bad one; the session goes on.
            with contextlib.suppress(ChannelError):
                self._terminal_sizes.extend(k8s_channels.parse_resize(event.data))
        # Anything else (output channels, unknown ones) is ignored, as kube does.

    async def _send(self, channel: Channel, data: bytes) -> None:
        for start in range(0, max(len(data), 1), OUTPUT_CHUNK):
            chunk = data[start : start + OUTPUT_CHUNK]
            opcode, payload = k8s_channels.encode(channel, chunk, self._protocol)
            await self._send_frame(websocket.encode_frame(opcode, payload))

    async def _send_close(self, code: int | None, reason: str = "") -> None:
        await self._send_frame(websocket.encode_close(code, reason), closing=True)

    async def _send_frame(self, frame: bytes, *, closing: bool = False) -> None:
        async with self._send_lock:
            if self._closed:
                return
            self._closed = closing
            try:
                await self._stream.send_all(frame)
            except ClientDisconnected:
                self._scope.cancel()  # the client is gone: the session ends here
        await trio.lowlevel.checkpoint()


async def _cancel_after(wait: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
