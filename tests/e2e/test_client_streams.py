"""Exec through the gateway to the sandbox's shell, with the scripts agents send, from kubectl,
the official Python client's WebSocket stream and kubernetes-asyncio's `WsApiClient`; and
port-forward with the official client (`v4.channel.k8s.io`, two ports at once)."""

from __future__ import annotations

import gc
import os
import ssl
from pathlib import Path

import kubernetes_asyncio
import trio
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.stream import portforward, stream  # type: ignore[import-untyped]

from tests.e2e import python_clients
from tests.e2e.stack import Stack, kubectl

ADMIN = ("platform-admins",)
SCRIPT = "for i in 1 2 3; do echo $i; done | grep 2 && echo ok || echo no"


def _official_client(kubeconfig: Path) -> client.CoreV1Api:
    """The official client configured from the Stack's kubeconfig, as a user would."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    return client.CoreV1Api(api_client)


async def test_kubectl_exec_runs_a_loop_a_pipe_and_connectors(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    ran = await kubectl(kc, "exec", "web-1", "--", "sh", "-c", SCRIPT, check=True)
    assert ran.stdout == b"2\nok\n"
    redirected = await kubectl(kc, "exec", "web-1", "--", "sh", "-c", "cat /nope 2>&1 | grep -c No")
    assert redirected.stdout == b"1\n"


async def test_official_client_stream_exec_returns_the_scripts_output(stack: Stack) -> None:
    api = _official_client(stack.kubeconfig(stack.token("admin-1", ADMIN)))

    def run() -> str:
        # Not preloaded, so the test closes the WebSocket itself (the preloading path
        # leaves the client's socket to the garbage collector).
        ws = stream(
            api.connect_get_namespaced_pod_exec,
            "web-1",
            "default",
            command=["sh", "-c", SCRIPT],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        try:
            ws.run_forever(timeout=30)
            return str(ws.read_all())
        finally:
            ws.close()

    try:
        with trio.fail_after(60):
            assert await trio.to_thread.run_sync(run) == "2\nok\n"
    finally:
        _close_official(stack, api)


def _close_official(stack: Stack, api: client.CoreV1Api) -> None:
    """Close the client; its WebSocket helper leaves one TLS socket to the gateway open
    (a client-side socket, not the gateway's): close that too, so its ResourceWarning is
    not pinned on whichever later test runs when the collector does."""
    api.api_client.close()
    gateway = ("127.0.0.1", int(stack.gateway_url.rsplit(":", 1)[1]))
    for leaked in [o for o in gc.get_objects() if isinstance(o, ssl.SSLSocket)]:
        if leaked.fileno() != -1 and leaked.getpeername() == gateway:
            leaked.close()


async def test_official_client_port_forwards_over_the_v4_channel_protocol(stack: Stack) -> None:
    api = _official_client(stack.kubeconfig(stack.token("admin-1", ADMIN)))
    payloads = {80: b"GET / HTTP/1.0\r\n\r\n", 8080: os.urandom(100_000)}

    def run() -> dict[int, bytes]:
        forward = portforward(
            api.connect_get_namespaced_pod_portforward, "web-1", "default", ports="80,8080"
        )
        echoed: dict[int, bytes] = {}
        try:
            for port, payload in payloads.items():
                sock = forward.socket(port)
                sock.settimeout(30)
                sock.sendall(payload)
                received = b""
                while len(received) < len(payload) and (data := sock.recv(65536)):
                    received += data
                echoed[port] = received
                assert forward.error(port) is None
        finally:
            forward.close()
        return echoed

    try:
        with trio.fail_after(60):
            assert await trio.to_thread.run_sync(run) == payloads
    finally:
        _close_official(stack, api)


async def test_kubernetes_asyncio_exec_returns_the_scripts_output(stack: Stack) -> None:
    token = stack.token("admin-1", ADMIN)

    async def run() -> str:
        async with python_clients.asyncio_ws_client(stack, token) as ws_api:
            output = await kubernetes_asyncio.client.CoreV1Api(
                ws_api
            ).connect_get_namespaced_pod_exec(
                "web-1", "default", command=["sh", "-c", SCRIPT], stdout=True, stderr=True
            )
            return str(output)

    with trio.fail_after(60):
        assert await trio.to_thread.run_sync(python_clients.run_asyncio, run()) == "2\nok\n"
