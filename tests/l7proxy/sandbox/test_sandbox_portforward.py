"""The real kubectl straight against the sandbox over TLS: port-forward through the WebSocket
tunnel (kubectl 1.32) and over plain SPDY/3.1 (kubectl 1.29), and exec over SPDY (1.29).

/usr/bin/kubectl runs the client matching the server's minor version, so the sandbox's
`version` picks which client — and which protocol — is exercised."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme
import yaml

from l7proxy.listener import serve
from l7proxy.sandbox import SandboxCluster
from l7proxy.settings import Limits

KUBECTL = "/usr/bin/kubectl"
LARGE = os.urandom(300_000)  # several DATA frames each way
TOKEN = "sandbox-token"

pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs kubectl")


@dataclass
class Sandbox:
    cluster: SandboxCluster
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.kubeconfig.parent), "KUBECONFIG": str(self.kubeconfig)}

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


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


SandboxFactory = Callable[[tuple[int, int]], "trio.lowlevel.Task | object"]


@pytest.fixture
async def start_sandbox(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> AsyncIterator[Callable[[tuple[int, int]], object]]:
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

    yield start


async def _forwarded_port(process: trio.Process) -> int:
    """The local port kubectl reports (`Forwarding from 127.0.0.1:N -> 8080`)."""
    assert process.stdout is not None
    seen = b""
    while b"\n" not in seen or not re.search(rb"127\.0\.0\.1:(\d+)", seen):
        chunk = await process.stdout.receive_some(4096)
        assert chunk, f"kubectl exited before forwarding: {seen!r}"
        seen += chunk
    match = re.search(rb"127\.0\.0\.1:(\d+)", seen)
    assert match is not None
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
            sandbox.argv("port-forward", "pod/web-1", ":8080", "-v=4"),
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


async def test_port_forward_over_plain_spdy_with_kubectl_1_29(start_sandbox) -> None:
    sandbox = await start_sandbox((1, 29))
    small, large = await _port_forward(sandbox)
    assert small == b"hello through the tunnel\n"
    assert large == LARGE
    upgrades = [
        dict(r.headers).get(b"upgrade") for r in sandbox.cluster.seen if "portforward" in r.target
    ]
    assert upgrades and set(upgrades) == {b"SPDY/3.1"}
