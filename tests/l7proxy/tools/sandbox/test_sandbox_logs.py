"""pods/log: history, tailLines, and follow streaming a line a second."""

from __future__ import annotations

import trio

from l7proxy.tools.sandbox import SandboxCluster
from tests.l7proxy.tools.sandbox.sandbox_fakes import Call, FakeClock, FakeExchange, auth_headers

LOG = "/api/v1/namespaces/default/pods/web-1/log"


async def test_log_shows_a_line_per_second_since_the_pod_started(
    call: Call, clock: FakeClock
) -> None:
    clock.now += 2
    response = await call("GET", LOG)
    assert response.response_headers[b"content-type"] == b"text/plain"
    assert response.body.decode().splitlines() == [
        "2023-11-14T22:13:20Z web-1 app: request 1 served",
        "2023-11-14T22:13:21Z web-1 app: request 2 served",
        "2023-11-14T22:13:22Z web-1 app: request 3 served",
    ]


async def test_tail_lines_keeps_the_last_lines(call: Call, clock: FakeClock) -> None:
    clock.now += 60
    lines = (await call("GET", f"{LOG}?tailLines=2&container=app")).body.decode().splitlines()
    assert [line.split()[-2] for line in lines] == ["60", "61"]


async def test_log_of_unknown_container_is_400(call: Call) -> None:
    response = await call("GET", f"{LOG}?container=sidecar")
    assert (response.status, response.json()["message"]) == (
        400,
        "container sidecar is not valid for pod web-1",
    )


async def test_log_of_missing_pod_is_404(call: Call) -> None:
    response = await call("GET", "/api/v1/namespaces/default/pods/nope/log")
    assert response.status == 404


async def test_follow_streams_a_new_line_every_second(
    cluster: SandboxCluster, clock: FakeClock, autojump_clock: trio.abc.Clock
) -> None:
    send, lines = trio.open_memory_channel[bytes](0)
    exchange = FakeExchange("GET", f"{LOG}?follow=true&tailLines=0", auth_headers(), stream=send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        start = trio.current_time()
        received = []
        for _ in range(3):
            received.append(await lines.receive())
            clock.now += 1
        assert trio.current_time() - start == 3  # paced at one line a second
        assert not exchange.finished  # follow goes on until the client leaves
        nursery.cancel_scope.cancel()
    assert [line.decode().split()[-2] for line in received] == ["2", "3", "4"]


async def test_follow_ends_when_the_pod_is_deleted(
    cluster: SandboxCluster, call: Call, autojump_clock: trio.abc.Clock
) -> None:
    exchange = FakeExchange("GET", f"{LOG}?follow=true", auth_headers())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        await trio.sleep(2.5)
        await call("DELETE", "/api/v1/namespaces/default/pods/web-1")
    assert exchange.finished
    assert len(exchange.body.splitlines()) == 3  # the history line and two followed
