"""A request body still arriving is not cut by `upstream_response_timeout`: the wait for
the cluster's answer starts once the body has been sent."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import trio
import trustme

from tests.e2e.stack import start_stack


async def test_an_upload_slower_than_the_response_timeout_succeeds(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, limits={"upstream_response_timeout": 0.5})
    token = stack.token("admin-1", ("platform-admins",))
    body = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow"}, "data": {}}
    ).encode()
    url = urlsplit(stack.gateway_url)
    assert url.hostname is not None and url.port is not None
    tcp = await trio.open_tcp_stream(url.hostname, url.port)
    stream = trio.SSLStream(
        tcp, stack.client_ssl_context(), server_hostname=url.hostname, https_compatible=True
    )
    head = (
        "POST /k8s/dev/api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    await stream.send_all(head.encode())
    for i in range(0, len(body), len(body) // 4 + 1):  # four pieces over twice the timeout
        await stream.send_all(body[i : i + len(body) // 4 + 1])
        await trio.sleep(0.25)
    answer = b""
    async with stream:
        while chunk := await stream.receive_some():
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status == 201, answer[:300]
