"""The official MCP Python SDK's client, connected to a Stack's MCP endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.stack import Stack


def http_client(stack: Stack, token: str | None, *, http2: bool = False) -> httpx2.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(
        verify=stack.client_ssl_context(), headers=headers, timeout=30, http2=http2
    )


@asynccontextmanager
async def mcp(stack: Stack, token: str, *, http2: bool = False) -> AsyncIterator[ClientSession]:
    url = f"{stack.gateway_url}/mcp/dev"
    async with (
        http_client(stack, token, http2=http2) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
