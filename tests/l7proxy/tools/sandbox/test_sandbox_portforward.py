"""pods/portforward, and pods/exec for old clients, over SPDY/3.1: first frame by frame in
memory, then the real kubectl straight against the sandbox over TLS — port-forward through
the WebSocket tunnel (kubectl 1.32) and over plain SPDY (1.29), exec over SPDY (1.29).

/usr/bin/kubectl runs the client matching the server's minor version, so the sandbox's
`version` picks which client — and which protocol — is exercised."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import ssl
import struct
import subprocess
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme
import yaml

from l7proxy.config.settings import Limits
from l7proxy.tools.sandbox import SandboxCluster
from l7proxy.wire.exchange import (
    ClientDisconnected,
    RequestHead,
    UpgradedStream,
    UpgradeNotPossible,
)
from l7proxy.wire.listener import serve
from protocols.k8s_channels import TerminalSize
from protocols.spdy import (
    Data,
    Frame,
    GoAway,
    GoAwayStatus,
    HeaderBlock,
    Ping,
    RstStatus,
    RstStream,
    SpdyCodec,
    SynReply,
    SynStream,
)
from protocols.websocket import Close as WsClose
from protocols.websocket import FrameParser, Opcode, encode_close, encode_frame
from protocols.websocket import Message as WsMessage
from protocols.websocket import Pong as WsPong
from tests.l7proxy.tools.sandbox.sandbox_fakes import FakeExchange, auth_headers

KUBECTL = "/usr/bin/kubectl"
LARGE = os.urandom(300_000)  # several DATA frames each way
TOKEN = "sandbox-token"

needs_kubectl = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs kubectl")


@dataclass
class Sandbox:
    cluster: SandboxCluster
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.kubeconfig.parent),
            "KUBECONFIG": str(self.kubeconfig),
        }

    def argv(self, *args: str) -> list[str]:
        cache = str(self.kubeconfig.parent / "kube-cache")
        return [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", cache, *args]

    async def kubectl(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(60):
            return await trio.run_process(
                self.argv(*args),
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env(),
            )


# -- in memory: the protocol frame by frame ---------------------------------------------

PORTFORWARD = "/api/v1/namespaces/default/pods/web-1/portforward"
SPDY_UPGRADE = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"SPDY/3.1"),
    (b"x-stream-protocol-version", b"portforward.k8s.io"),
]


class UpgradeExchange(FakeExchange):
    """A `FakeExchange` over HTTP/1.1 that can switch protocols: the test is the client
    on the other end of two bounded pipes."""

    def __init__(self, target: str, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__("POST", target, [*headers, *auth_headers()])
        self.head = RequestHead("POST", target, self.head.headers, "1.1")
        self.to_server_send, self.to_server = trio.open_memory_channel[bytes](16)
        self.to_client_send, self.to_client = trio.open_memory_channel[bytes](16)
        self.upgrade_headers: dict[bytes, bytes] = {}

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        self.response_started = True
        self.status = 101
        self.upgrade_headers = dict(headers)
        return _ServerEnd(self)


class _ServerEnd:
    def __init__(self, exchange: UpgradeExchange) -> None:
        self._exchange = exchange

    async def receive_some(self) -> bytes:
        try:
            return await self._exchange.to_server.receive()
        except trio.EndOfChannel:
            return b""

    async def send_all(self, data: bytes) -> None:
        try:
            await self._exchange.to_client_send.send(data)
        except trio.BrokenResourceError as exc:
            raise ClientDisconnected from exc


class SpdyClient:
    """The client side of the session, written with the same codec."""

    def __init__(self, exchange: UpgradeExchange) -> None:
        self.exchange = exchange
        self.codec = SpdyCodec()
        self.pending: list[Frame] = []

    async def send(self, *frames: Frame) -> None:
        for frame in frames:
            await self.exchange.to_server_send.send(self.codec.encode(frame))

    async def receive(self, *, within: float = 5) -> Frame:
        with trio.fail_after(within):
            while not self.pending:
                self.pending += self.codec.receive_data(await self.exchange.to_client.receive())
        return self.pending.pop(0)

    async def receive_all(self, count: int) -> list[Frame]:
        return [await self.receive() for _ in range(count)]

    async def close(self) -> None:
        await self.exchange.to_server_send.aclose()


def _pf_headers(stream_type: str, request_id: str = "0", port: str = "8080") -> HeaderBlock:
    return (
        (b"streamtype", stream_type.encode()),
        (b"port", port.encode()),
        (b"requestid", request_id.encode()),
    )


@asynccontextmanager
async def _session(
    cluster: SandboxCluster,
    target: str = PORTFORWARD,
    headers: list[tuple[bytes, bytes]] = SPDY_UPGRADE,
) -> AsyncIterator[SpdyClient]:
    exchange = UpgradeExchange(target, headers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        client = SpdyClient(exchange)
        yield client
        await client.close()
    assert exchange.status == 101


async def test_port_forward_upgrades_to_spdy_and_echoes_a_pair(cluster: SandboxCluster) -> None:
    async with _session(cluster) as client:
        await client.send(SynStream(1, _pf_headers("error")), SynStream(3, _pf_headers("data")))
        assert await client.receive_all(2) == [SynReply(1, ()), SynReply(3, ())]
        await client.send(Data(1, b"", fin=True), Data(3, b"ping?"), Ping(1))
        assert await client.receive_all(2) == [Data(3, b"ping?"), Ping(1)]
        await client.send(Data(3, b"", fin=True))
        assert await client.receive_all(2) == [Data(3, b"", fin=True), Data(1, b"", fin=True)]
        assert client.exchange.upgrade_headers == dict(SPDY_UPGRADE)


async def test_pairs_are_matched_by_request_id(cluster: SandboxCluster) -> None:
    async with _session(cluster) as client:
        await client.send(
            SynStream(1, _pf_headers("error", "a")),
            SynStream(3, _pf_headers("error", "b")),
            SynStream(5, _pf_headers("data", "b")),
            SynStream(7, _pf_headers("data", "a")),
        )
        assert len(await client.receive_all(4)) == 4
        await client.send(Data(5, b"to b"), Data(7, b"to a"))
        assert await client.receive_all(2) == [Data(5, b"to b"), Data(7, b"to a")]


@pytest.mark.parametrize(
    "headers",
    [
        ((b"streamtype", b"data"), (b"requestid", b"0")),
        _pf_headers("data", port="0"),
        _pf_headers("data", port="http"),
        _pf_headers("stdin"),
    ],
)
async def test_a_stream_the_kubelet_would_reject_is_reset(
    cluster: SandboxCluster, headers: HeaderBlock
) -> None:
    async with _session(cluster) as client:
        await client.send(SynStream(1, headers))
        assert await client.receive() == RstStream(1, RstStatus.CANCEL)


async def test_a_second_stream_of_one_type_for_a_request_is_an_error(
    cluster: SandboxCluster,
) -> None:
    async with _session(cluster) as client:
        await client.send(SynStream(1, _pf_headers("error")), SynStream(3, _pf_headers("error")))
        frames = await client.receive_all(5)
        assert frames[:2] == [SynReply(1, ()), SynReply(3, ())]
        message = frames[2]
        assert isinstance(message, Data) and message.stream_id == 1
        assert b"error processing stream for request 0: error stream already assigned" in (
            message.data
        )
        assert frames[3:] == [Data(1, b"", fin=True), RstStream(3, RstStatus.CANCEL)]


async def test_a_pair_left_incomplete_times_out_on_its_error_stream(
    cluster: SandboxCluster, autojump_clock: trio.abc.Clock
) -> None:
    async with _session(cluster) as client:
        await client.send(SynStream(1, _pf_headers("error")))
        assert await client.receive() == SynReply(1, ())
        start = trio.current_time()
        message = await client.receive(within=60)
        assert trio.current_time() - start == pytest.approx(30)
        assert isinstance(message, Data) and b"timed out waiting for streams" in message.data
        assert await client.receive() == Data(1, b"", fin=True)


async def test_streams_must_use_new_odd_ids(cluster: SandboxCluster) -> None:
    async with _session(cluster) as client:
        await client.send(SynStream(2, _pf_headers("error")))
        assert await client.receive() == RstStream(2, RstStatus.PROTOCOL_ERROR)


async def test_garbage_ends_the_session_with_goaway(cluster: SandboxCluster) -> None:
    exchange = UpgradeExchange(PORTFORWARD, SPDY_UPGRADE)
    client = SpdyClient(exchange)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cluster.handle, exchange)
            await exchange.to_server_send.send(b"\x80\x02\x00\x01" + b"\x00" * 12)
            assert await client.receive() == GoAway(0, GoAwayStatus.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    ("target", "headers", "status", "message"),
    [
        ("/api/v1/namespaces/default/pods/nope/portforward", SPDY_UPGRADE, 404, "not found"),
        (PORTFORWARD, [], 400, "Upgrade request required"),
        (PORTFORWARD, [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")], 400, "h2c"),
        (PORTFORWARD, SPDY_UPGRADE[:2], 403, "unable to negotiate protocol"),
    ],
)
async def test_port_forward_refusals_are_statuses(
    cluster: SandboxCluster,
    target: str,
    headers: list[tuple[bytes, bytes]],
    status: int,
    message: str,
) -> None:
    exchange = UpgradeExchange(target, headers)
    await cluster.handle(exchange)
    assert exchange.status == status
    assert message in exchange.json()["message"]


class _CannotSwitch(UpgradeExchange):
    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        raise UpgradeNotPossible("HTTP/2 cannot switch protocols")


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (PORTFORWARD, SPDY_UPGRADE),
        ("/api/v1/namespaces/default/pods/web-1/exec?command=true", None),
    ],
)
async def test_an_exchange_that_cannot_switch_is_answered_400(
    cluster: SandboxCluster, target: str, headers: list[tuple[bytes, bytes]] | None
) -> None:
    exchange = _CannotSwitch(target, headers or EXEC_UPGRADE)
    await cluster.handle(exchange)
    assert (exchange.status, exchange.json()["message"]) == (400, "Upgrade request required")


# -- in memory: SPDY tunnelled in WebSocket binary messages ------------------------------

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_UPGRADE = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-key", WS_KEY.encode()),
    (b"sec-websocket-protocol", b"SPDY/3.1+portforward.k8s.io"),
]
MASK = b"\x01\x02\x03\x04"


def _ws_exchange(headers: list[tuple[bytes, bytes]] = WS_UPGRADE) -> UpgradeExchange:
    exchange = UpgradeExchange(PORTFORWARD, headers)
    exchange.head = RequestHead("GET", PORTFORWARD, exchange.head.headers, "1.1")
    return exchange


async def _ws_events(exchange: UpgradeExchange, parser: FrameParser, count: int) -> list[object]:
    events: list[object] = []
    with trio.fail_after(5):
        while len(events) < count:
            events += parser.feed(await exchange.to_client.receive())
    return events


async def test_spdy_rides_in_binary_messages_split_anywhere(cluster: SandboxCluster) -> None:
    exchange = _ws_exchange()
    client_codec, server_frames = SpdyCodec(), FrameParser(masked=False)
    wire = client_codec.encode(SynStream(1, _pf_headers("error"))) + client_codec.encode(
        SynStream(3, _pf_headers("data"))
    )
    wire += client_codec.encode(Data(3, b"echo me"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        for start in range(0, len(wire), 7):  # SPDY frames straddle WebSocket messages
            chunk = encode_frame(Opcode.BINARY, wire[start : start + 7], mask_key=MASK)
            await exchange.to_server_send.send(chunk)
        await exchange.to_server_send.send(encode_frame(Opcode.PING, b"hi", mask_key=MASK))
        events = await _ws_events(exchange, server_frames, 4)
        assert WsPong(b"hi") in events  # the echo task may answer before or after it
        payload = b"".join(e.payload for e in events if isinstance(e, WsMessage))
        assert client_codec.receive_data(payload) == [
            SynReply(1, ()),
            SynReply(3, ()),
            Data(3, b"echo me"),
        ]
        await exchange.to_server_send.send(encode_close(1000, mask_key=MASK))
        assert await _ws_events(exchange, server_frames, 1) == [WsClose(1000, "")]
    assert exchange.upgrade_headers == {
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-accept": b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        b"sec-websocket-protocol": b"SPDY/3.1+portforward.k8s.io",
    }


async def test_a_text_message_closes_the_tunnel(cluster: SandboxCluster) -> None:
    exchange = _ws_exchange()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        await exchange.to_server_send.send(encode_frame(Opcode.TEXT, b"hello", mask_key=MASK))
        events = await _ws_events(exchange, FrameParser(masked=False), 1)
        assert events == [WsClose(1003, "invalid message type received")]


async def test_unmasked_client_frames_close_the_tunnel(cluster: SandboxCluster) -> None:
    exchange = _ws_exchange()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        await exchange.to_server_send.send(encode_frame(Opcode.BINARY, b"x"))
        events = await _ws_events(exchange, FrameParser(masked=False), 1)
        assert isinstance(events[0], WsClose) and events[0].code == 1002


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        (WS_UPGRADE[:4], 400, 'query parameter "ports" is required'),
        ([*WS_UPGRADE[:4], (b"sec-websocket-protocol", b"v5.channel.k8s.io")], 400, "supports"),
        ([*WS_UPGRADE[:2], *WS_UPGRADE[3:]], 426, "Sec-WebSocket-Version"),
    ],
)
async def test_websocket_refusals_are_statuses(
    cluster: SandboxCluster, headers: list[tuple[bytes, bytes]], status: int, message: str
) -> None:
    exchange = _ws_exchange(headers)
    await cluster.handle(exchange)
    assert exchange.status == status
    assert message in exchange.json()["message"]


# -- in memory: exec and attach over SPDY, one stream per channel ----------------------

EXEC = "/api/v1/namespaces/default/pods/web-1/exec"
EXEC_UPGRADE = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"SPDY/3.1"),
    # client-go offers its protocols newest first, one header line each
    (b"x-stream-protocol-version", b"v4.channel.k8s.io"),
    (b"x-stream-protocol-version", b"v3.channel.k8s.io"),
    (b"x-stream-protocol-version", b"v2.channel.k8s.io"),
    (b"x-stream-protocol-version", b"channel.k8s.io"),
]


async def _open_streams(client: SpdyClient, *kinds: str) -> None:
    """Open one stream per kind as client-go does: each waits for its reply."""
    for number, kind in enumerate(kinds):
        await client.send(SynStream(1 + 2 * number, ((b"streamtype", kind.encode()),)))
        assert await client.receive() == SynReply(1 + 2 * number, ())


async def test_exec_over_spdy_pipes_stdin_to_stdout_and_reports_success(
    cluster: SandboxCluster,
) -> None:
    target = f"{EXEC}?command=cat&container=app&stdin=true&stdout=true&stderr=true"
    async with _session(cluster, target, EXEC_UPGRADE) as client:
        await _open_streams(client, "error", "stdin", "stdout", "stderr")
        await client.send(Data(3, b"hello"), Data(3, b"", fin=True))
        assert await client.receive_all(7) == [
            Data(5, b"hello"),
            Data(5, b"", fin=True),
            Data(7, b"", fin=True),
            Data(3, b"", fin=True),
            Data(1, b'{"metadata":{},"status":"Success"}'),
            Data(1, b"", fin=True),
            GoAway(7),
        ]
        upgrade = client.exchange.upgrade_headers
        assert upgrade[b"x-stream-protocol-version"] == b"v4.channel.k8s.io"


async def test_exec_over_spdy_sends_the_exit_code_as_a_v4_status(
    cluster: SandboxCluster,
) -> None:
    target = f"{EXEC}?command=sh&command=-c&command=exit%203&stdout=true&stderr=true"
    async with _session(cluster, target, EXEC_UPGRADE) as client:
        await _open_streams(client, "error", "stdout", "stderr")
        frames = await client.receive_all(4)
        assert frames[:2] == [Data(3, b"", fin=True), Data(5, b"", fin=True)]
        status = frames[2]
        assert isinstance(status, Data) and status.stream_id == 1
        assert json.loads(status.data) == {
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: exit status 3",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
        }
        assert frames[3] == Data(1, b"", fin=True)


async def test_before_v4_the_error_stream_carries_text(cluster: SandboxCluster) -> None:
    target = f"{EXEC}?command=false&stdout=true&stderr=false"
    headers = [*EXEC_UPGRADE[:2], (b"x-stream-protocol-version", b"v2.channel.k8s.io")]
    async with _session(cluster, target, headers) as client:
        await _open_streams(client, "error", "stdout")
        assert await client.receive_all(3) == [
            Data(3, b"", fin=True),
            Data(1, b"command terminated with non-zero exit code: exit status 1"),
            Data(1, b"", fin=True),
        ]


async def _screen_until(client: SpdyClient, end: bytes) -> bytes:
    """What the terminal printed (the stdout stream, id 5) until it shows `end`."""
    screen = b""
    while not screen.endswith(end):
        frame = await client.receive()
        assert isinstance(frame, Data) and frame.stream_id == 5 and frame.data
        screen += frame.data
    return screen


async def test_a_tty_session_reads_resizes_and_keystrokes(cluster: SandboxCluster) -> None:
    sizes = cluster.exec.runtime("default", "web-1").terminal_sizes
    target = f"{EXEC}?command=sh&stdin=true&stdout=true&tty=true"
    async with _session(cluster, target, EXEC_UPGRADE) as client:
        await _open_streams(client, "error", "stdin", "stdout", "resize")
        await client.send(Data(7, b'{"Width":100,"Height":30}\n{"Width":132,'))
        await client.send(Data(7, b'"Height":43}\n'), Data(3, b"echo hi\r"))
        assert await _screen_until(client, b"hi\r\n$ ") == b"$ echo hi\r\nhi\r\n$ "
        await client.send(Data(3, b"exit 4\r"))
        assert await _screen_until(client, b"\r\n") == b"exit 4\r\n"
        assert await client.receive() == Data(5, b"", fin=True)
        assert list(sizes)[-2:] == [TerminalSize(100, 30), TerminalSize(132, 43)]
        frames = await client.receive_all(4)
        assert frames[:2] == [Data(3, b"", fin=True), Data(7, b"", fin=True)]
        assert isinstance(frames[2], Data) and b'"message":"4"' in frames[2].data


async def test_streams_that_never_come_end_the_session(
    cluster: SandboxCluster, autojump_clock: trio.abc.Clock
) -> None:
    target = f"{EXEC}?command=cat&stdin=true&stdout=true"
    async with _session(cluster, target, EXEC_UPGRADE) as client:
        await _open_streams(client, "error", "stdout", "unknown")
        start = trio.current_time()
        assert await client.receive(within=60) == GoAway(5)
        assert trio.current_time() - start == pytest.approx(30)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        (EXEC_UPGRADE[:2], 400, "X-Stream-Protocol-Version is required"),
        (EXEC_UPGRADE[:2] + EXEC_UPGRADE[-1:], 403, "unable to negotiate protocol"),
    ],
)
async def test_spdy_exec_refusals_are_statuses(
    cluster: SandboxCluster, headers: list[tuple[bytes, bytes]], status: int, message: str
) -> None:
    exchange = UpgradeExchange(f"{EXEC}?command=true", headers)
    await cluster.handle(exchange)
    assert exchange.status == status
    assert message in exchange.json()["message"]


# -- the real kubectl ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


StartSandbox = Callable[[tuple[int, int]], Awaitable[Sandbox]]


@pytest.fixture
def start_sandbox(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> StartSandbox:
    async def start(version: tuple[int, int]) -> Sandbox:
        cluster = SandboxCluster(tokens={TOKEN: "alice"}, version=version)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        bound = await nursery.start(
            partial(
                serve,
                cluster.handle,
                host="127.0.0.1",
                port=0,
                ssl_context=context,
                limits=Limits(),
            )
        )
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "sandbox",
                            "cluster": {
                                "server": f"https://127.0.0.1:{bound[0][1]}",
                                "certificate-authority": str(tmp_path / "ca.pem"),
                            },
                        }
                    ],
                    "users": [{"name": "alice", "user": {"token": TOKEN}}],
                    "contexts": [
                        {"name": "ctx", "context": {"cluster": "sandbox", "user": "alice"}}
                    ],
                    "current-context": "ctx",
                }
            )
        )
        return Sandbox(cluster, kubeconfig)

    return start


async def _forwarded_port(process: trio.Process) -> int:
    """The local port kubectl reports (`Forwarding from 127.0.0.1:N -> 8080`)."""
    assert process.stdout is not None
    seen = b""
    while (match := re.search(rb"127\.0\.0\.1:(\d+) ->", seen)) is None:
        chunk = await process.stdout.receive_some(4096)
        assert chunk, f"kubectl exited before forwarding: {seen!r}"
        seen += chunk
    return int(match.group(1))


async def _round_trip(port: int, payload: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        received = b""
        while len(received) < len(payload):
            chunk = await stream.receive_some(65536)
            assert chunk, f"connection closed after {len(received)} bytes"
            received += chunk
        return received


async def _port_forward(sandbox: Sandbox) -> tuple[bytes, bytes]:
    """Forward a local port to web-1:8080 and echo through two connections, one large."""
    log = sandbox.kubeconfig.parent / "port-forward.log"
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            sandbox.argv("port-forward", "pod/web-1", ":8080"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=sandbox.env(),
        )
    assert process.stdout is not None
    try:
        with trio.fail_after(30):
            port = await _forwarded_port(process)
            small = await _round_trip(port, b"hello through the tunnel\n")
            large = await _round_trip(port, LARGE)
            return small, large
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()
        await process.stdout.aclose()


@needs_kubectl
async def test_port_forward_over_plain_spdy_with_kubectl_1_29(
    start_sandbox: StartSandbox,
) -> None:
    sandbox = await start_sandbox((1, 29))
    small, large = await _port_forward(sandbox)
    assert small == b"hello through the tunnel\n"
    assert large == LARGE
    requests = [r for r in sandbox.cluster.seen if "portforward" in r.target]
    assert [(r.method, dict(r.headers).get(b"upgrade")) for r in requests] == [
        ("POST", b"SPDY/3.1")
    ]
    assert dict(requests[0].headers)[b"user-agent"].startswith(b"kubectl/v1.29.")


@needs_kubectl
async def test_port_forward_through_the_websocket_tunnel_with_kubectl_1_32(
    start_sandbox: StartSandbox,
) -> None:
    sandbox = await start_sandbox((1, 32))
    small, large = await _port_forward(sandbox)
    assert small == b"hello through the tunnel\n"
    assert large == LARGE
    requests = [r for r in sandbox.cluster.seen if "portforward" in r.target]
    assert [(r.method, dict(r.headers).get(b"upgrade")) for r in requests] == [
        ("GET", b"websocket")
    ]
    assert dict(requests[0].headers)[b"user-agent"].startswith(b"kubectl/v1.32.")


@needs_kubectl
async def test_exec_over_spdy_with_kubectl_1_29(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox((1, 29))
    echoed = await sandbox.kubectl("exec", "-i", "web-1", "--", "cat", stdin=LARGE)
    assert (echoed.returncode, echoed.stderr) == (0, b"")
    assert echoed.stdout == LARGE
    failed = await sandbox.kubectl("exec", "web-1", "--", "sh", "-c", "echo out; exit 3")
    assert (failed.returncode, failed.stdout) == (3, b"out\n")
    assert b"command terminated with exit code 3" in failed.stderr
    requests = [r for r in sandbox.cluster.seen if "/exec" in r.target]
    assert {(r.method, dict(r.headers).get(b"upgrade")) for r in requests} == {
        ("POST", b"SPDY/3.1")
    }
    assert all(dict(r.headers)[b"user-agent"].startswith(b"kubectl/v1.29.") for r in requests)


@needs_kubectl
async def test_exec_tty_over_spdy_with_kubectl_1_29(start_sandbox: StartSandbox) -> None:
    """`-it` from a pty: the window size arrives on the resize stream, keys on stdin."""
    sandbox = await start_sandbox((1, 29))
    sizes = sandbox.cluster.exec.runtime("default", "web-1").terminal_sizes
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = await trio.lowlevel.open_process(
        sandbox.argv("exec", "-it", "web-1", "--", "sh"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=sandbox.env(),
        start_new_session=True,
    )
    os.close(terminal)
    screen = trio.lowlevel.FdStream(controller)
    try:
        with trio.fail_after(30):
            await _read_until(screen, b"$ ")
            await _until(lambda: list(sizes)[-1:] == [TerminalSize(100, 30)])
            await screen.send_all(b"echo hi\r")
            await _read_until(screen, b"echo hi\r\nhi\r\n$ ")
            await screen.send_all(b"exit 7\r")
            assert await process.wait() == 7
    finally:
        process.kill()
        await screen.aclose()


async def _read_until(stream: trio.lowlevel.FdStream, text: bytes) -> None:
    seen = b""
    while text not in seen:
        seen += await stream.receive_some()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll: the sandbox records resizes in a deque, there is nothing to wait on."""
    while True:
        if condition():
            return
        await trio.sleep(0.02)
