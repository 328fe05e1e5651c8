"""The three Python Kubernetes clients agents use, each configured for a Stack: the gateway's
connection URL, a bearer token and the test CA."""

from __future__ import annotations

import kubernetes
import kubernetes_asyncio
import lightkube
from kubernetes_asyncio.stream import WsApiClient

from tests.e2e.stack import Stack


def _server(stack: Stack, connection: str) -> str:
    return f"{stack.gateway_url}/k8s/{connection}"


def official(stack: Stack, token: str, connection: str = "dev") -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    config.host = _server(stack, connection)
    config.ssl_ca_cert = str(stack.tmp / "ca.pem")
    config.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.ApiClient(config)


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
