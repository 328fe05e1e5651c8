"""pods/exec and pods/attach: the real kubectl straight against the sandbox over TLS, then
the WebSocket session frame by frame in memory.

/usr/bin/kubectl runs the client matching the server's minor version: at 1.32 exec, attach
and cp go over WebSocket (`v5.channel.k8s.io`); at 1.29 over SPDY."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import signal
import ssl
import struct
import subprocess
import termios
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme
import yaml

from l7proxy.config.settings import Limits
from l7proxy.tools.sandbox import SandboxCluster
from l7proxy.tools.sandbox.exec import CLOSE_TIMEOUT, KILLED
from l7proxy.tools.sandbox.resources import PODS
from l7proxy.wire.exchange import (
    ClientDisconnected,
    RequestHead,
    UpgradedStream,
    UpgradeNotPossible,
)
from l7proxy.wire.listener import serve
from protocols import k8s_channels
from protocols.k8s_channels import (
    V1,
    V4_BASE64,
    V5,
    Channel,
    ChannelData,
    ChannelProtocol,
    TerminalSize,
)
from protocols.websocket import (
    Close,
    CloseCode,
    Event,
    FrameParser,
    Message,
    Opcode,
    Pong,
    accept_key,
    encode_close,
    encode_frame,
)
from tests.l7proxy.tools.sandbox.sandbox_fakes import TOKEN, FakeExchange, auth_headers

KUBECTL = "/usr/bin/kubectl"

needs_kubectl = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs kubectl")


@dataclass
class Sandbox:
    cluster: SandboxCluster
    kubeconfig: Path

    def argv(self, *args: str) -> list[str]:
        cache = str(self.kubeconfig.parent / "kube-cache")
        return [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", cache, *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.kubeconfig.parent)}

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


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def start_sandbox(
    nursery: trio.Nursery, ca: trustme.CA, tmp: Path, version: tuple[int, int] = (1, 32)
) -> Sandbox:
    """The sandbox on a loopback port over TLS, and a kubeconfig naming it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    cluster = SandboxCluster(tokens={TOKEN: "alice"}, version=version)
    bound = await nursery.start(
        partial(
            serve, cluster.handle, host="127.0.0.1", port=0, ssl_context=context, limits=Limits()
        )
    )
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    kubeconfig = tmp / "kubeconfig"
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
                            "certificate-authority": str(tmp / "ca.pem"),
                        },
                    }
                ],
                "users": [{"name": "alice", "user": {"token": TOKEN}}],
                "contexts": [{"name": "c", "context": {"cluster": "sandbox", "user": "alice"}}],
                "current-context": "c",
            }
        )
    )
    return Sandbox(cluster, kubeconfig)


@pytest.fixture
async def sandbox(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> Sandbox:
    return await start_sandbox(nursery, ca, tmp_path)


# -- kubectl ----------------------------------------------------------------------------


@needs_kubectl
async def test_exec_stdin_round_trips_through_cat(sandbox: Sandbox) -> None:
    data = b"".join(b"line %d of the input\n" % i for i in range(5000))  # several messages
    result = await sandbox.kubectl("exec", "-i", "web-1", "--", "cat", stdin=data)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == data
    exec_request = next(s for s in sandbox.cluster.seen if "/exec?" in s.target)
    assert dict(exec_request.headers)[b"sec-websocket-protocol"] == b"v5.channel.k8s.io"


@needs_kubectl
async def test_exec_exit_code_and_stderr_reach_kubectl(sandbox: Sandbox) -> None:
    result = await sandbox.kubectl(
        "exec", "web-1", "--", "sh", "-c", "echo out; cat /missing; hostname && exit 3"
    )
    assert result.returncode == 3
    assert result.stdout == b"out\nweb-1\n"
    assert result.stderr.decode().splitlines() == [
        "cat: /missing: No such file or directory",
        "command terminated with exit code 3",
    ]


@needs_kubectl
async def test_exec_of_an_unknown_command_exits_127(sandbox: Sandbox) -> None:
    result = await sandbox.kubectl("exec", "web-1", "--", "no-such-tool", "--help")
    assert result.returncode == 127
    assert b"no-such-tool: command not found" in result.stderr


@needs_kubectl
async def test_exec_tty_sends_resizes_and_runs_an_interactive_shell(sandbox: Sandbox) -> None:
    sizes = sandbox.cluster.exec.runtime("default", "web-1").terminal_sizes
    controller, terminal = pty.openpty()
    _set_window(terminal, columns=100, rows=30)
    process = await trio.lowlevel.open_process(
        sandbox.argv("exec", "-it", "web-1", "--", "sh"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=sandbox.env(),
        start_new_session=True,
    )
    os.close(terminal)
    screen = _Screen(trio.lowlevel.FdStream(controller))
    try:
        with trio.fail_after(30):
            await screen.wait_for(b"$ ")
            assert sizes[-1] == TerminalSize(100, 30)
            _set_window(controller, columns=132, rows=43)
            process.send_signal(signal.SIGWINCH)
            await _until(lambda: sizes[-1] == TerminalSize(132, 43))
            await screen.type(b"echo $ hi\r")
            await screen.wait_for(b"echo $ hi\r\n$ hi\r\n$ ")  # the echo, then the output
            await screen.type(b"exit 7\r")
            assert await process.wait() == 7
    finally:
        process.kill()
        await screen.stream.aclose()


@needs_kubectl
async def test_attach_joins_the_main_shell_which_outlives_the_session(sandbox: Sandbox) -> None:
    first = await sandbox.kubectl("attach", "-i", "web-1", stdin=b"cd /tmp\npwd\n")
    assert (first.returncode, first.stdout) == (0, b"/tmp\n")
    second = await sandbox.kubectl("attach", "-i", "web-1", "-c", "app", stdin=b"pwd\n")
    assert (second.returncode, second.stdout) == (0, b"/tmp\n")  # the same process
    attach = [s for s in sandbox.cluster.seen if "/attach?" in s.target]
    assert len(attach) == 2 and dict(attach[0].headers)[b"upgrade"] == b"websocket"


@needs_kubectl
async def test_cp_uploads_and_downloads_through_tar(sandbox: Sandbox, tmp_path: Path) -> None:
    local = tmp_path / "notes.txt"
    content = os.urandom(100_000)
    local.write_bytes(content)
    up = await sandbox.kubectl("cp", str(local), "web-1:/tmp/notes.txt")
    assert (up.returncode, up.stderr) == (0, b"")
    fs = sandbox.cluster.exec.runtime("default", "web-1").container.fs
    assert fs.read("/tmp/notes.txt") == content
    down = await sandbox.kubectl("cp", "web-1:/tmp/notes.txt", str(tmp_path / "back.txt"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.txt").read_bytes() == content


@needs_kubectl
async def test_cp_of_a_directory_brings_back_its_files(sandbox: Sandbox, tmp_path: Path) -> None:
    result = await sandbox.kubectl("cp", "web-1:/usr/share/nginx", str(tmp_path / "nginx"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "nginx/html/index.html").read_bytes().startswith(b"<h1>")


@needs_kubectl
async def test_kubectl_1_29_execs_over_spdy(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    old = await start_sandbox(nursery, ca, tmp_path, version=(1, 29))
    result = await old.kubectl("exec", "-i", "web-1", "--", "sh", "-c", "cat; exit 5", stdin=b"x")
    assert (result.returncode, result.stdout) == (5, b"x")
    assert dict(old.cluster.seen[-1].headers)[b"upgrade"] == b"SPDY/3.1"


def _set_window(fd: int, *, columns: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


async def _until(condition: Callable[[], bool]) -> None:
    """Poll: the sandbox records resizes in a deque, there is nothing to wait on."""
    while True:
        if condition():
            return
        await trio.sleep(0.02)


class _Screen:
    """The controller side of a pty: what kubectl printed so far, and keystrokes."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self.stream = stream
        self.seen = b""

    async def wait_for(self, text: bytes) -> None:
        while text not in self.seen:
            self.seen += await self.stream.receive_some()
        self.seen = self.seen.split(text, 1)[1]

    async def type(self, keys: bytes) -> None:
        await self.stream.send_all(keys)


# -- in memory: the WebSocket session frame by frame ------------------------------------

EXEC = "/api/v1/namespaces/default/pods/web-1/exec"
ATTACH = "/api/v1/namespaces/default/pods/web-1/attach"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"


def _handshake(*protocols: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", KEY.encode()),
        *((b"sec-websocket-protocol", p.encode()) for p in protocols),
    ]


class WsExchange(FakeExchange):
    """An HTTP/1.1 `FakeExchange` that can switch to WebSocket: the test is the client at
    the other end of two bounded pipes."""

    def __init__(
        self, target: str, headers: list[tuple[bytes, bytes]], version: str, method: str = "GET"
    ) -> None:
        super().__init__(method, target, [*headers, *auth_headers()])
        self.head = RequestHead(method, target, self.head.headers, version)
        self.to_server_send, self.to_server = trio.open_memory_channel[bytes](16)
        self.to_client_send, self.to_client = trio.open_memory_channel[bytes](16)
        self.upgrade_headers: dict[bytes, bytes] = {}

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        if self.head.http_version != "1.1":
            raise UpgradeNotPossible("HTTP/2")
        self.response_started = True
        self.status = 101
        self.upgrade_headers = dict(headers)
        return _ServerEnd(self)


class _ServerEnd:
    def __init__(self, exchange: WsExchange) -> None:
        self._exchange = exchange

    async def receive_some(self) -> bytes:
        try:
            return await self._exchange.to_server.receive()
        except trio.EndOfChannel:
            return b""

    async def send_all(self, data: bytes) -> None:
        try:
            await self._exchange.to_client_send.send(data)
        except trio.BrokenResourceError as err:
            raise ClientDisconnected from err


class WsClient:
    """The client's side of one session, speaking `protocol` with masked frames."""

    def __init__(self, exchange: WsExchange, protocol: ChannelProtocol) -> None:
        self.exchange = exchange
        self.protocol = protocol
        self.frames = FrameParser(masked=False)
        self.pending: deque[Event] = deque()

    async def send(self, channel: int, data: bytes) -> None:
        opcode, payload = k8s_channels.encode(channel, data, self.protocol)
        await self.send_raw(encode_frame(opcode, payload, mask_key=MASK))

    async def close_stdin(self) -> None:
        opcode, payload = k8s_channels.encode_close_signal(Channel.STDIN, self.protocol)
        await self.send_raw(encode_frame(opcode, payload, mask_key=MASK))

    async def send_raw(self, data: bytes) -> None:
        await self.exchange.to_server_send.send(data)

    async def event(self) -> Event:
        while not self.pending:
            self.pending.extend(self.frames.feed(await self.exchange.to_client.receive()))
        return self.pending.popleft()

    async def until_close(self) -> tuple[dict[int, bytes], Close]:
        """Every channel's bytes up to the server's close frame, which is answered."""
        output: dict[int, bytes] = {}
        while not isinstance(event := await self.event(), Close):
            assert isinstance(event, Message)
            decoded = k8s_channels.decode(event.opcode, event.payload, self.protocol)
            assert isinstance(decoded, ChannelData)
            output[decoded.channel] = output.get(decoded.channel, b"") + decoded.data
        await self.send_raw(encode_close(event.code, mask_key=MASK))
        return output, event


@dataclass
class Session:
    client: WsClient
    done: trio.Event  # the cluster's handler has returned


async def _session(
    cluster: SandboxCluster,
    nursery: trio.Nursery,
    target: str,
    protocols: tuple[str, ...] = (V5.name,),
) -> Session:
    exchange = WsExchange(target, _handshake(*protocols), "1.1")
    done = trio.Event()

    async def handle() -> None:
        await cluster.handle(exchange)
        done.set()

    nursery.start_soon(handle)
    return Session(WsClient(exchange, k8s_channels.select_protocol(protocols) or V5), done)


async def test_the_handshake_picks_the_clients_first_spoken_protocol(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    offered = ("v9.channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io")
    client = (await _session(cluster, nursery, f"{EXEC}?command=true", offered)).client
    output, close = await client.until_close()
    assert client.exchange.upgrade_headers == {
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-accept": accept_key(KEY).encode(),
        b"sec-websocket-protocol": b"v4.channel.k8s.io",
    }
    assert output == {1: b"", 3: b'{"metadata":{},"status":"Success"}'}
    assert close.code == CloseCode.NORMAL


async def test_v5_stdin_close_signal_ends_cat(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    session = await _session(cluster, nursery, f"{EXEC}?command=cat&stdin=true&stdout=true")
    await session.client.send(Channel.STDIN, b"hello ")
    await session.client.send(Channel.STDIN, b"world")
    await session.client.close_stdin()
    output, _ = await session.client.until_close()
    assert output[Channel.STDOUT] == b"hello world"
    await session.done.wait()


async def test_exit_code_rides_the_error_channel_as_kubelets_status(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    session = await _session(cluster, nursery, f"{EXEC}?command=sh&command=-c&command=exit+3")
    output, _ = await session.client.until_close()
    assert json.loads(output[Channel.ERROR]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }


async def test_base64_protocol_sends_text_frames(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    target = f"{EXEC}?command=echo&command=hi"
    client = (await _session(cluster, nursery, target, (V4_BASE64.name,))).client
    assert await client.event() == Message(Opcode.TEXT, b"1")  # the empty "ready" message
    assert await client.event() == Message(Opcode.TEXT, b"1" + base64.b64encode(b"hi\n"))


async def test_unversioned_protocol_reports_failures_as_text(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    client = (await _session(cluster, nursery, f"{EXEC}?command=false", (V1.name,))).client
    output, _ = await client.until_close()
    assert output[Channel.ERROR] == b"command terminated with non-zero exit code: exit status 1"


async def test_stderr_off_is_discarded_and_tty_merges_it(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    quiet = (await _session(cluster, nursery, f"{EXEC}?command=nope&stderr=false")).client
    assert Channel.STDERR not in (await quiet.until_close())[0]
    tty = (await _session(cluster, nursery, f"{EXEC}?command=nope&tty=true")).client
    output, _ = await tty.until_close()
    assert output[Channel.STDOUT] == b"nope: command not found\r\n"


async def test_pings_are_answered_and_resizes_recorded(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    client = (await _session(cluster, nursery, f"{EXEC}?command=sh&stdin=true&tty=true")).client
    assert await client.event() == Message(Opcode.BINARY, b"\x01")
    assert await client.event() == Message(Opcode.BINARY, b"\x01$ ")
    await client.send(Channel.RESIZE, b'{"Width":80,"Height":24}\n{"width":81,"height":25}')
    await client.send(Channel.RESIZE, b"not json")  # skipped, as kube does
    await client.send_raw(encode_frame(Opcode.PING, b"beat", mask_key=MASK))
    assert await client.event() == Pong(b"beat")
    sizes = cluster.exec.runtime("default", "web-1").terminal_sizes
    assert list(sizes) == [TerminalSize(80, 24), TerminalSize(81, 25)]
    await client.send(Channel.STDIN, b"exit 4\r")
    output, _ = await client.until_close()
    assert output[Channel.STDOUT] == b"exit 4\r\n"
    assert k8s_channels.parse_result(output[Channel.ERROR], V5).exit_code == 4


async def test_the_client_closing_ends_a_running_command(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    session = await _session(cluster, nursery, f"{EXEC}?command=sleep&command=3600")
    assert await session.client.event() == Message(Opcode.BINARY, b"\x01")
    await session.client.send_raw(encode_close(CloseCode.GOING_AWAY, mask_key=MASK))
    assert await session.client.event() == Close(CloseCode.GOING_AWAY, "")  # echoed
    with trio.fail_after(5):
        await session.done.wait()


async def test_a_client_that_never_answers_the_close_is_let_go(
    cluster: SandboxCluster, nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    session = await _session(cluster, nursery, f"{EXEC}?command=true")
    while not isinstance(await session.client.event(), Close):
        pass
    start = trio.current_time()
    await session.done.wait()
    assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT)


async def test_protocol_errors_close_the_connection_with_their_code(
    cluster: SandboxCluster, nursery: trio.Nursery
) -> None:
    session = await _session(cluster, nursery, f"{EXEC}?command=cat&stdin=true")
    await session.client.event()
    await session.client.send_raw(encode_frame(Opcode.BINARY, b"\x00unmasked"))
    event = await session.client.event()
    assert isinstance(event, Close) and event.code == CloseCode.PROTOCOL_ERROR
    with trio.fail_after(5):
        await session.done.wait()


async def test_deleting_the_pod_kills_the_command(
    cluster: SandboxCluster, nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    session = await _session(cluster, nursery, f"{ATTACH}?stdin=true")
    await session.client.event()
    cluster.store.delete(PODS, "default", "web-1")
    output, _ = await session.client.until_close()
    assert k8s_channels.parse_result(output[Channel.ERROR], V5).exit_code == KILLED


@pytest.mark.parametrize(
    ("target", "headers", "code", "message"),
    [
        (f"{EXEC}?command=ls", [], 400, "Upgrade request required"),
        (
            f"{EXEC}?command=ls",
            [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")],
            400,
            "Upgrade request required",
        ),
        (
            f"{EXEC}?command=ls",
            _handshake("v5.channel.k8s.io")[:-2],
            400,
            "invalid WebSocket handshake: the request needs exactly one Sec-WebSocket-Key",
        ),
        (
            f"{EXEC}?command=ls",
            _handshake("chat"),
            400,
            "requested protocol(s) are not supported: ['chat']; supports "
            "['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io', "
            "'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io', "
            "'base64.channel.k8s.io']",
        ),
        (EXEC, _handshake("v5.channel.k8s.io"), 400, "you must specify at least 1 command"),
        (
            f"{EXEC}?command=ls&stdout=false&stderr=0",
            _handshake("v5.channel.k8s.io"),
            400,
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
        (f"{EXEC}?command=ls&tty=maybe", [], 400, "tty: invalid boolean value 'maybe'"),
        (f"{ATTACH}?container=db", [], 400, "container db is not valid for pod web-1"),
        (
            "/api/v1/namespaces/default/pods/gone/exec?command=ls",
            [],
            404,
            'pods "gone" not found',
        ),
    ],
)
async def test_requests_that_cannot_start_a_session_get_a_status(
    cluster: SandboxCluster,
    target: str,
    headers: list[tuple[bytes, bytes]],
    code: int,
    message: str,
) -> None:
    exchange = WsExchange(target, headers, "1.1")
    await cluster.handle(exchange)
    assert (exchange.status, exchange.json()["message"]) == (code, message)


async def test_http2_cannot_upgrade_and_other_methods_are_refused(cluster: SandboxCluster) -> None:
    over_h2 = WsExchange(f"{EXEC}?command=ls", _handshake(V5.name), "2")
    await cluster.handle(over_h2)
    assert (over_h2.status, over_h2.json()["message"]) == (400, "Upgrade request required")
    put = WsExchange(f"{EXEC}?command=ls", [], "1.1", method="PUT")
    await cluster.handle(put)
    assert put.status == 405
