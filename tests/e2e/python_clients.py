"""The three Python Kubernetes clients agents use, each configured for a Stack: the gateway's
connection URL, a bearer token and the test CA."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import kubernetes
import kubernetes_asyncio
import lightkube
from kubernetes_asyncio.stream import WsApiClient

from tests.e2e.stack import Stack

T = TypeVar("T")
AIOHTTP_TLS_SHUTDOWN = 0.25  # seconds; aiohttp's docs: "Graceful Shutdown"


def _server(stack: Stack, connection: str) -> str:
    return f"{stack.gateway_url}/k8s/{connection}"


def official(stack: Stack, token: str, connection: str = "dev") -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    config.host = _server(stack, connection)
    config.ssl_ca_cert = str(stack.tmp / "ca.pem")
    config.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.ApiClient(config)


def close_official(api: kubernetes.client.ApiClient) -> None:
    """Close the official client and its connections (`ApiClient.close` leaves its urllib3
    pool open, and the sockets then warn whenever the collector finds them)."""
    api.close()
    api.rest_client.pool_manager.clear()


def run_asyncio(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for kubernetes-asyncio: after `main`, the loop runs on for aiohttp's
    documented graceful-shutdown pause, so the TLS connections it closed finish closing
    before the loop does (else their transports warn when collected, in a later test)."""

    async def run() -> T:
        try:
            return await main
        finally:
            await asyncio.sleep(AIOHTTP_TLS_SHUTDOWN)

    return asyncio.run(run())


def _asyncio_config(
    stack: Stack, token: str, connection: str
) -> kubernetes_asyncio.client.Configuration:
    config = kubernetes_asyncio.client.Configuration()
    config.host = _server(stack, connection)
    config.ssl_ca_cert = str(stack.tmp / "ca.pem")
    config.api_key = {"BearerToken": f"Bearer {token}"}  # this client's name for the key
    return config


def asyncio_client(
    stack: Stack, token: str, connection: str = "dev"
) -> kubernetes_asyncio.client.ApiClient:
    return kubernetes_asyncio.client.ApiClient(_asyncio_config(stack, token, connection))


def asyncio_ws_client(stack: Stack, token: str, connection: str = "dev") -> WsApiClient:
    """kubernetes-asyncio's client for exec, over `v4.channel.k8s.io`."""
    return WsApiClient(_asyncio_config(stack, token, connection))


def lightkube_client(stack: Stack, token: str, connection: str = "dev") -> lightkube.Client:
    config = lightkube.KubeConfig.from_dict(
        {
            "clusters": [
                {
                    "name": "gw",
                    "cluster": {
                        "server": _server(stack, connection),
                        "certificate-authority": str(stack.tmp / "ca.pem"),
                    },
                }
            ],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "gw", "user": "u"}}],
            "current-context": "c",
        }
    )
    return lightkube.Client(config, namespace="default")
