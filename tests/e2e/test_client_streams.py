"""Exec through the gateway to the sandbox's shell, with the scripts agents send, from kubectl
and from the official Python client's WebSocket stream."""

from __future__ import annotations

import gc
import ssl
from pathlib import Path

import trio
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.stream import stream  # type: ignore[import-untyped]

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
        api.api_client.close()
        # The official client's WebSocket helper leaves one TLS socket to the gateway open
        # (a client-side socket, not the gateway's): close it, so its ResourceWarning is not
        # pinned on whichever later test runs when the collector does.
        gateway = ("127.0.0.1", int(stack.gateway_url.rsplit(":", 1)[1]))
        for leaked in [o for o in gc.get_objects() if isinstance(o, ssl.SSLSocket)]:
            if leaked.fileno() != -1 and leaked.getpeername() == gateway:
                leaked.close()
