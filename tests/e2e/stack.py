"""A complete local stack for end-to-end tests, and a kubectl runner."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import ssl
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio
import trustme
import yaml

from l7proxy.config.loader import load_config
from l7proxy.config.settings import Config, Limits
from l7proxy.runtime.server import run_gateway
from l7proxy.tools.demo import demo_policies
from l7proxy.tools.devissuer import DevIssuer
from l7proxy.tools.sandbox import SandboxCluster
from l7proxy.wire.listener import Handle, ListenerControl, serve
from policy.model import Policy, Rule

KUBECTL = "/usr/bin/kubectl"
CLUSTER_TOKEN = "sandbox-service-token"  # the gateway's static credential for the sandbox
GATEWAY_USER = "system:serviceaccount:l7proxy:gateway"  # who the sandbox takes it for
# `routing.host_suffix` of stacks started with `host_routing=True`; the gateway's
# certificate carries the wildcard for it.
HOST_SUFFIX = ".k8s.l7proxy.test"


@dataclass
class ClusterListener:
    """The cluster's TLS listener. `restart` ends it, and every connection to it, and
    listens again on the same port: a kube-apiserver restart as the gateway sees it.
    `hand_over` is a graceful one: the old server stops accepting and sends GOAWAY but
    finishes its open streams, while a new one listens on the same port."""

    handle: Handle
    ssl_context: ssl.SSLContext
    nursery: trio.Nursery
    port: int = 0
    _scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    _stopped: trio.Event = field(default_factory=trio.Event)
    _control: ListenerControl | None = None

    async def start(self) -> None:
        self._scope, self._stopped = trio.CancelScope(), trio.Event()
        self._control = ListenerControl(self.ssl_context)
        bound = await self.nursery.start(self._serve, self._scope, self._control, self._stopped)
        self.port = bound[0][1]

    async def restart(self) -> None:
        self._scope.cancel()
        await self._stopped.wait()
        await self.start()

    async def hand_over(self) -> None:
        assert self._control is not None
        self._control.draining.set()
        with trio.fail_after(5):
            while True:  # the old listening socket closes once draining is seen
                try:
                    await self.start()
                    return
                except OSError:
                    await trio.sleep(0.01)

    async def _serve(
        self,
        scope: trio.CancelScope,
        control: ListenerControl,
        stopped: trio.Event,
        task_status: trio.TaskStatus[list[tuple[str, int]]],
    ) -> None:
        try:
            with scope:
                await serve(
                    self.handle,
                    host="127.0.0.1",
                    port=self.port,
                    ssl_context=self.ssl_context,
                    limits=Limits(),
                    control=control,
                    task_status=task_status,
                )
        finally:
            stopped.set()


@dataclass
class Stack:
    tmp: Path
    ca: trustme.CA
    issuer: DevIssuer
    cluster: SandboxCluster
    cluster_listener: ClusterListener
    gateway_url: str
    audit_path: Path
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def token(self, user: str, groups: tuple[str, ...], **kwargs: object) -> str:
        return self.issuer.mint(user, groups=groups, **kwargs)  # type: ignore[arg-type]

    def kubeconfig(
        self, token: str, *, connection: str = "dev", name: str = "user", by_host: bool = False
    ) -> Path:
        """A kubeconfig with `token`; `by_host` reaches the connection by host name as
        `l7proxy kubeconfig --routing host` writes it for a gateway reached by IP address:
        the server is the gateway's root and `tls-server-name` names the connection."""
        path = self.tmp / f"kubeconfig-{name}"
        cluster: dict[str, str] = {
            "server": f"{self.gateway_url}/k8s/{connection}",
            "certificate-authority": str(self.tmp / "ca.pem"),
        }
        if by_host:
            cluster["server"] = self.gateway_url
            cluster["tls-server-name"] = connection + HOST_SUFFIX
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "gw", "cluster": cluster}],
                    "users": [{"name": name, "user": {"token": token}}],
                    "contexts": [{"name": "ctx", "context": {"cluster": "gw", "user": name}}],
                    "current-context": "ctx",
                }
            )
        )
        return path

    def audit_events(self) -> list[dict[str, object]]:
        """The per-request audit events (session events carry a `type` and are apart)."""
        return [e for e in self._audit_lines() if "type" not in e]

    def session_events(self) -> list[dict[str, object]]:
        return [e for e in self._audit_lines() if "type" in e]

    def _audit_lines(self) -> list[dict[str, object]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]

    def client_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


async def wait_for_event(
    stack: Stack, matches: Callable[[dict[str, object]], bool], *, kind: str = "request"
) -> dict[str, object]:
    """The newest audit event that `matches`, waiting (10 s at most) for it to be written:
    a request's event, or a session's (`kind` "session.start" or "session.end")."""
    with trio.fail_after(10):
        while True:
            events = (
                stack.audit_events()
                if kind == "request"
                else [e for e in stack.session_events() if e["type"] == kind]
            )
            found = [e for e in events if matches(e)]
            if found:
                return found[-1]
            await trio.sleep(0.05)  # the audit log is a file: there is nothing to wait on


async def event_for(stack: Stack, audit_id: str) -> dict[str, object]:
    """The audit event of the response that carried `Audit-Id: audit_id`."""
    return await wait_for_event(stack, lambda e: e["audit_id"] == audit_id)


def kubectl_env(kubeconfig: Path, *, http1: bool = False) -> dict[str, str]:
    env = {**os.environ, "HOME": str(kubeconfig.parent), "KUBECONFIG": str(kubeconfig)}
    if http1:
        env["DISABLE_HTTP2"] = "true"  # client-go's switch: the same kubectl over HTTP/1.1
    return env


def kubectl_argv(kubeconfig: Path, *args: str) -> list[str]:
    cache = kubeconfig.parent / "kube-cache"
    return [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args]


async def kubectl(
    kubeconfig: Path, *args: str, check: bool = False, stdin: bytes = b"", http1: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """Run the real kubectl against the gateway, with its own discovery cache."""
    env = kubectl_env(kubeconfig, http1=http1)
    with trio.fail_after(60):
        return await trio.run_process(
            kubectl_argv(kubeconfig, *args),
            capture_stdout=True,
            capture_stderr=True,
            check=check,
            stdin=stdin,
            env=env,
        )


async def start_kubectl(
    nursery: trio.Nursery, kubeconfig: Path, *args: str, http1: bool = False
) -> trio.Process:
    """A kubectl that keeps running (watch, port-forward) in `nursery`, its stdout piped."""
    process: trio.Process = await nursery.start(
        lambda task_status: trio.run_process(  # noqa: ASYNC105 - awaited by nursery.start
            kubectl_argv(kubeconfig, *args),
            env=kubectl_env(kubeconfig, http1=http1),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            check=False,
            task_status=task_status,
        )
    )
    return process


async def read_until(process: trio.Process, text: bytes) -> None:
    """Read a running kubectl's output until `text` has come (what came before is read too)."""
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(20):
        while text not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, f"the stream ended before {text!r}: {seen!r}"
            seen += chunk


async def port_forward_round_trip(kc: Path) -> None:
    """`kubectl port-forward pod/web-1` and 100 kB echoed back through it."""
    async with trio.open_nursery() as nursery:
        process = await start_kubectl(nursery, kc, "port-forward", "pod/web-1", ":8080")
        out = b""
        with trio.fail_after(30):
            while b"Forwarding from 127.0.0.1:" not in out:
                out += await process.stdout.receive_some()
            port = int(out.split(b"Forwarding from 127.0.0.1:")[1].split(b" ")[0])
            conn = await trio.open_tcp_stream("127.0.0.1", port)
            payload = os.urandom(100_000)
            await conn.send_all(payload)
            echoed = b""
            while len(echoed) < len(payload):
                echoed += await conn.receive_some()
            assert echoed == payload
            await conn.aclose()
        process.kill()


def _closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tls_context(
    cert: trustme.LeafCert, alpn: Sequence[str] = ("h2", "http/1.1")
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(list(alpn))
    return context


async def start_stack(
    nursery: trio.Nursery,
    ca: trustme.CA,
    tmp: Path,
    *,
    limits: dict[str, float] | None = None,
    upstream: Handle | None = None,
    cluster_rbac: Mapping[str, Sequence[Rule]] | None = None,
    cluster_version: tuple[int, int] = (1, 32),
    provider: Mapping[str, object] | None = None,
    host_routing: bool = False,
    configure: Callable[[Config], Config] | None = None,
    in_process: bool = True,
    extra_policies: Sequence[Policy] = (),
    cluster_alpn: Sequence[str] = ("h2", "http/1.1"),
) -> Stack:
    """The sandbox cluster (or `upstream` in its place), the issuer and the gateway.

    `provider` overrides fields of the gateway's identity provider entry, e.g. `issuer` and
    `audiences` to trust another OpenID provider than the development issuer; `configure`
    changes the loaded configuration (for settings the loader does not read yet), and
    `extra_policies` are added as built. Without `in_process`, the gateway is not started:
    its configuration is in `gateway.yaml`. `cluster_alpn` is what the cluster offers the
    gateway (HTTP/1.1 only, say)."""
    leaf = ca.issue_cert("127.0.0.1", "localhost", "*" + HOST_SUFFIX)
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "gateway.pem"))
    leaf.private_key_pem.write_to_path(str(tmp / "gateway-key.pem"))

    issuer = DevIssuer()
    await nursery.start(partial(issuer.serve, ssl_context=_tls_context(leaf)))

    cluster = SandboxCluster(
        tokens={CLUSTER_TOKEN: GATEWAY_USER}, rbac=cluster_rbac, version=cluster_version
    )
    listener = ClusterListener(
        upstream or cluster.handle, _tls_context(leaf, cluster_alpn), nursery
    )
    await listener.start()
    cluster_port = listener.port
    (tmp / "cluster-token").write_text(CLUSTER_TOKEN + "\n")

    config = {
        "listen": {
            "address": "127.0.0.1:0",
            "tls": {"cert_file": "gateway.pem", "key_file": "gateway-key.pem"},
        },
        "workers": 1,
        "identity": {
            "providers": [
                {
                    "name": "dev-sso",
                    "issuer": issuer.issuer,
                    "audiences": ["l7proxy"],
                    "username_claim": "sub",
                    "groups_claim": "groups",
                    "signing_algs": ["RS256", "PS256", "ES256"],
                    "ca_file": "ca.pem",
                    **(provider or {}),
                }
            ]
        },
        "connections": [
            {
                "name": "dev",
                "type": "static",
                "server": f"https://127.0.0.1:{cluster_port}",
                "certificate_authority_file": "ca.pem",
                "token_file": "cluster-token",
            },
            {
                "name": "down",
                "type": "static",
                "server": f"https://127.0.0.1:{_closed_port()}",
                "certificate_authority_file": "ca.pem",
                "token_file": "cluster-token",
            },
        ],
        "policies": [
            *demo_policies("dev"),
            {
                "name": "admins-down",
                "groups": ["platform-admins"],
                "connection": "down",
                "allow": [{"verbs": ["*"], "non_resource_urls": ["*"]}],
            },
        ],
        "audit": {"sink": "audit.jsonl", "recordings_dir": "recordings"},
        "limits": limits or {},
        "routing": {"host_suffix": HOST_SUFFIX} if host_routing else {},
    }
    config_path = tmp / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    gateway_url = ""
    if in_process:
        loaded = load_config(config_path)
        loaded = dataclasses.replace(loaded, policies=(*loaded.policies, *extra_policies))
        bound = await nursery.start(
            partial(run_gateway, configure(loaded) if configure else loaded)
        )
        gateway_url = f"https://127.0.0.1:{bound[0][1]}"
    return Stack(
        tmp=tmp,
        ca=ca,
        issuer=issuer,
        cluster=cluster,
        cluster_listener=listener,
        gateway_url=gateway_url,
        audit_path=tmp / "audit.jsonl",
    )
