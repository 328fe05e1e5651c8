"""Watches: events in order, each sent as it happens, bounded per watcher."""

from __future__ import annotations

import json
from typing import Any

import trio

from l7proxy.tools.sandbox import SandboxCluster
from l7proxy.tools.sandbox.resources import CONFIGMAPS
from l7proxy.tools.sandbox.resources import PODS as POD_TYPE
from tests.l7proxy.tools.sandbox.sandbox_fakes import Call, FakeExchange, auth_headers

PODS = "/api/v1/namespaces/default/pods"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "c"}]}}


def watch(target: str, stream: trio.MemorySendChannel[bytes], accept: str = "") -> FakeExchange:
    headers = auth_headers(**({"accept": accept} if accept else {}))
    return FakeExchange("GET", target, headers, stream=stream)


async def next_event(events: trio.MemoryReceiveChannel[bytes]) -> dict[str, Any]:
    with trio.fail_after(1):
        event: dict[str, Any] = json.loads(await events.receive())
        return event


async def current_rv(call: Call) -> str:
    rv: str = (await call("GET", PODS)).json()["metadata"]["resourceVersion"]
    return rv


async def test_watch_without_resource_version_starts_with_added_for_existing(
    cluster: SandboxCluster,
) -> None:
    send, events = trio.open_memory_channel[bytes](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, watch(f"{PODS}?watch=true", send))
        first, second = await next_event(events), await next_event(events)
        nursery.cancel_scope.cancel()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in (first, second)] == [
        ("ADDED", "web-1"),
        ("ADDED", "web-2"),
    ]


async def test_watch_event_is_sent_as_soon_as_the_change_happens(
    cluster: SandboxCluster, call: Call
) -> None:
    send, events = trio.open_memory_channel[bytes](0)
    exchange = watch(f"{PODS}?watch=1&resourceVersion={await current_rv(call)}", send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        await call("POST", PODS, pod("fresh"))
        event = await next_event(events)
        assert not exchange.finished  # the event came while the watch is still open
        nursery.cancel_scope.cancel()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "fresh")
    assert exchange.status == 200
    assert b"content-length" not in exchange.response_headers  # streamed


async def test_watch_events_arrive_in_order_one_json_line_per_send(
    cluster: SandboxCluster, call: Call
) -> None:
    send, events = trio.open_memory_channel[bytes](0)
    exchange = watch(f"{PODS}?watch=true&resourceVersion={await current_rv(call)}", send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        await call("POST", PODS, pod("p"))
        await call(
            "PATCH",
            f"{PODS}/p",
            {"metadata": {"labels": {"v": "2"}}},
            content_type="application/merge-patch+json",
        )
        await call("DELETE", f"{PODS}/p")
        seen = [await next_event(events) for _ in range(3)]
        nursery.cancel_scope.cancel()
    assert [e["type"] for e in seen] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert all(chunk.endswith(b"\n") and chunk.count(b"\n") == 1 for chunk in exchange.chunks)


async def test_watch_of_a_cluster_scoped_resource_sees_its_changes(
    cluster: SandboxCluster, call: Call
) -> None:
    send, events = trio.open_memory_channel[bytes](0)
    target = f"/api/v1/namespaces?watch=true&resourceVersion={await current_rv(call)}"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, watch(target, send))
        await call("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
        event = await next_event(events)
        nursery.cancel_scope.cancel()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "team")


async def test_watch_from_resource_version_replays_only_later_changes(
    cluster: SandboxCluster, call: Call
) -> None:
    await call("POST", PODS, pod("before"))
    since = await current_rv(call)
    await call("POST", PODS, pod("after"))
    send, events = trio.open_memory_channel[bytes](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            cluster.handle, watch(f"{PODS}?watch=true&resourceVersion={since}", send)
        )
        event = await next_event(events)
        nursery.cancel_scope.cancel()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "after")


async def test_watch_from_expired_resource_version_gets_a_410_error_event(
    cluster: SandboxCluster,
) -> None:
    for i in range(1001):  # more changes than the store's history keeps
        cluster.store.create(CONFIGMAPS, "default", {"metadata": {"name": f"c{i}"}})
    exchange = FakeExchange("GET", f"{PODS}?watch=true&resourceVersion=1", auth_headers())
    await cluster.handle(exchange)
    [event] = exchange.events()
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert exchange.finished


async def test_watch_with_name_field_selector_sees_only_that_object(
    cluster: SandboxCluster, call: Call
) -> None:
    send, events = trio.open_memory_channel[bytes](0)
    target = f"{PODS}?watch=true&fieldSelector=metadata.name%3Dweb-2&resourceVersion=0"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, watch(target, send))
        initial = await next_event(events)
        await call("DELETE", f"{PODS}/web-1")
        await call("DELETE", f"{PODS}/web-2")
        deleted = await next_event(events)
        nursery.cancel_scope.cancel()
    assert (initial["type"], initial["object"]["metadata"]["name"]) == ("ADDED", "web-2")
    assert (deleted["type"], deleted["object"]["metadata"]["name"]) == ("DELETED", "web-2")


async def test_object_leaving_the_label_selection_is_a_deleted_event(
    cluster: SandboxCluster, call: Call
) -> None:
    send, events = trio.open_memory_channel[bytes](0)
    target = f"{PODS}?watch=true&labelSelector=app%3Dweb&resourceVersion={await current_rv(call)}"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, watch(target, send))
        await call(
            "PATCH",
            f"{PODS}/web-1",
            {"metadata": {"labels": {"app": "old"}}},
            content_type="application/merge-patch+json",
        )
        left = await next_event(events)
        await call(
            "PATCH",
            f"{PODS}/web-1",
            {"metadata": {"labels": {"app": "web"}}},
            content_type="application/merge-patch+json",
        )
        back = await next_event(events)
        nursery.cancel_scope.cancel()
    assert (left["type"], back["type"]) == ("DELETED", "ADDED")


async def test_table_watch_sends_one_row_tables_with_columns_only_first(
    cluster: SandboxCluster, call: Call
) -> None:
    # kubectl get -w sends its Table Accept on the watch too and prints each event's row.
    send, events = trio.open_memory_channel[bytes](0)
    target = f"{PODS}?watch=true&resourceVersion={await current_rv(call)}"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, watch(target, send, TABLE_ACCEPT))
        await call("POST", PODS, pod("t1"))
        await call("POST", PODS, pod("t2"))
        first, second = await next_event(events), await next_event(events)
        nursery.cancel_scope.cancel()
    for event, name in ((first, "t1"), (second, "t2")):
        assert event["object"]["kind"] == "Table"
        assert [row["cells"][0] for row in event["object"]["rows"]] == [name]
    assert first["object"]["columnDefinitions"][0]["name"] == "Name"
    assert second["object"]["columnDefinitions"] == []


async def test_slow_watcher_is_ended_instead_of_buffered_without_bound(
    cluster: SandboxCluster, call: Call
) -> None:
    gate = trio.Event()
    exchange = FakeExchange(
        "GET",
        f"{PODS}?watch=true&resourceVersion={await current_rv(call)}",
        auth_headers(),
        gate=gate,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(300):  # the client reads nothing meanwhile
            cluster.store.create(POD_TYPE, "default", pod(f"p{i}"))
        gate.set()
    assert exchange.finished  # the watch ended by itself
    delivered = exchange.events()
    assert 0 < len(delivered) < 300
    names = [e["object"]["metadata"]["name"] for e in delivered]
    assert names == [f"p{i}" for i in range(len(names))]  # a prefix, in order


async def test_watch_ends_after_timeout_seconds(
    cluster: SandboxCluster, call: Call, autojump_clock: trio.abc.Clock
) -> None:
    exchange = FakeExchange(
        "GET",
        f"{PODS}?watch=true&timeoutSeconds=5&resourceVersion={await current_rv(call)}",
        auth_headers(),
    )
    start = trio.current_time()
    await cluster.handle(exchange)
    assert exchange.finished
    assert 5 <= trio.current_time() - start < 6
