"""The `exec` tool's session: a WebSocket client (`v5.channel.k8s.io`) over an internal
upgraded request, so the gateway authorizes, splices, audits and records it as it does
`kubectl exec`. Non-interactive: no stdin, no TTY; output and time are bounded."""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass

import trio

from l7proxy.mcp.kube import ApiResource, KubeClient, KubeResponse, ToolError
from l7proxy.pipeline.internal import DuplexStream, InternalExchange
from protocols import k8s_channels, websocket
from protocols.k8s_channels import Channel, ChannelData, ChannelError
from protocols.websocket import Close, Message, Ping, WebSocketError

_OFFERED = (k8s_channels.V5.name, k8s_channels.V4.name)


@dataclass(slots=True)
class ExecOutput:
    stdout: bytearray
    stderr: bytearray
    exit_code: int | None = None
    message: str = ""
    truncated: bool = False
    timed_out: bool = False


async def run_exec(
    kube: KubeClient,
    pods: ApiResource,
    namespace: str,
    pod: str,
    command: list[str],
    *,
    container: str,
    time_limit: float,
    max_bytes: int,
) -> ExecOutput:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    query = [("command", part) for part in command] + [("stdout", "true"), ("stderr", "true")]
    if container:
        query.append(("container", container))
    exchange = kube.exchange(
        "GET",
        pods.path(namespace, pod, "exec"),
        query,
        headers=(
            (b"connection", b"Upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", websocket.VERSION),
            (b"sec-websocket-key", key.encode("ascii")),
            (b"sec-websocket-protocol", ", ".join(_OFFERED).encode("ascii")),
        ),
    )
    output = ExecOutput(bytearray(), bytearray())
    answered: list[KubeResponse] = []
    failure: ToolError | None = None
    async with trio.open_nursery() as nursery:

        async def request() -> None:
            answered.append(await kube.run(exchange))
            if exchange.stream is not None:
                await exchange.stream.aclose()  # the splice ended: so does our reading

        nursery.start_soon(request)
        await exchange.answered.wait()
        if exchange.stream is not None:
            failure = await _session(
                exchange, key, output, time_limit=time_limit, max_bytes=max_bytes
            )
    if exchange.stream is None:  # refused, by the gateway or by the cluster
        raise answered[0].failure()
    if failure is not None:
        raise failure
    return output


async def _session(
    exchange: InternalExchange, key: str, output: ExecOutput, *, time_limit: float, max_bytes: int
) -> ToolError | None:
    """Read the command's output until its exit status, the server's close or `time_limit`;
    returns (not raises, inside the nursery) what broke the session."""
    stream = exchange.stream
    assert stream is not None  # only called after the 101
    try:
        chosen = websocket.validate_server_handshake(
            key, _OFFERED, exchange.status, exchange.response_headers
        )
        protocol = k8s_channels.PROTOCOLS[chosen or k8s_channels.V4.name]
        frames = websocket.FrameParser(masked=False)
        error_channel = bytearray()
        with trio.move_on_after(time_limit) as deadline:
            while not _ended(output) and (data := await stream.receive_some()):
                for event in frames.feed(data):
                    if isinstance(event, Close):
                        return None
                    if isinstance(event, Ping):
                        pong = websocket.encode_frame(
                            websocket.Opcode.PONG, event.payload, mask_key=os.urandom(4)
                        )
                        await stream.send_all(pong)
                    elif isinstance(event, Message):
                        decoded = k8s_channels.decode(event.opcode, event.payload, protocol)
                        if isinstance(decoded, ChannelData):
                            _take(output, decoded, error_channel, max_bytes)
                if error_channel:
                    _result(output, error_channel, protocol)
        output.timed_out = deadline.cancelled_caught
        return None
    except (websocket.HandshakeError, WebSocketError, ChannelError) as exc:
        return ToolError(f"exec: the session broke: {exc}")
    finally:
        await _close(stream)


def _ended(output: ExecOutput) -> bool:
    return output.exit_code is not None or bool(output.message)


def _take(output: ExecOutput, data: ChannelData, error: bytearray, max_bytes: int) -> None:
    if data.channel == Channel.ERROR:
        error += data.data[: k8s_channels.MAX_STATUS_SIZE - len(error)]
        return
    sink = output.stdout if data.channel == Channel.STDOUT else output.stderr
    if data.channel not in (Channel.STDOUT, Channel.STDERR):
        return
    room = max_bytes - len(output.stdout) - len(output.stderr)
    sink += data.data[: max(room, 0)]
    output.truncated |= len(data.data) > room


def _result(output: ExecOutput, error: bytearray, protocol: k8s_channels.ChannelProtocol) -> None:
    try:
        result = k8s_channels.parse_result(bytes(error), protocol)
    except ChannelError:
        return  # not whole yet
    output.exit_code, output.message = result.exit_code, result.message
    if result.exit_code is None and not result.message:
        output.message = "the command could not run"


async def _close(stream: DuplexStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(websocket.encode_close(mask_key=os.urandom(4)))  # unless ended
    await stream.aclose()
