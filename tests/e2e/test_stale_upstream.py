"""Pooled connections to the cluster that die while idle (a restarted cluster, a dropped
connection): the next requests are answered, not refused with 502, and a request that
may have reached the cluster is never sent to it twice. A cluster that goes away
gracefully (HTTP/2 GOAWAY) still finishes the streams it has."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import trio
import trustme

from l7proxy.wire.exchange import Exchange
from tests.e2e.stack import kubectl, read_until, start_kubectl, start_stack, wait_for_event

ADMIN = ("platform-admins",)
PODS = "/api/v1/namespaces/default/pods"
# `kubectl --raw` takes its path from the server's root, not from the kubeconfig's URL.
VIA_GATEWAY = "/k8s/dev"
ALPNS = [("h2", "http/1.1"), ("http/1.1",)]


@pytest.mark.parametrize("alpn", ALPNS, ids=["h2", "http1"])
async def test_requests_after_the_cluster_restarts_are_answered_without_a_502(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, alpn: tuple[str, ...]
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, cluster_alpn=alpn)
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))

    async def get_pods() -> None:
        result = await kubectl(kc, "get", "--raw", VIA_GATEWAY + PODS)
        assert result.returncode == 0, result.stderr.decode()

    async with trio.open_nursery() as clients:  # several pooled connections to the cluster
        for _ in range(4):
            clients.start_soon(get_pods)
    await stack.cluster_listener.restart()
    for _ in range(4):
        result = await kubectl(kc, "get", "--raw", VIA_GATEWAY + PODS)
        assert result.returncode == 0, result.stderr.decode()
        assert json.loads(result.stdout)["kind"] == "PodList"
    assert [e["status"] for e in stack.audit_events() if e["path"].endswith(PODS)] == [200] * 8


async def test_a_watch_outlives_the_clusters_graceful_goaway_while_new_requests_go_to_its_successor(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    """As kube-apiserver shuts down gracefully (or rebalances with --goaway-chance): GOAWAY
    NO_ERROR on the gateway's HTTP/2 connection, the watch on it goes on."""
    stack = await start_stack(nursery, ca, tmp_path)
    admin = stack.kubeconfig(stack.token("admin-1", ADMIN))
    async with trio.open_nursery() as clients:
        watch = await start_kubectl(clients, admin, "get", "pods", "-w", "--no-headers")
        seen = b""
        with trio.fail_after(30):
            while seen.count(b"\n") < 2:  # the list: the watch starts after it
                seen += await watch.stdout.receive_some()
            for name in ("before-goaway", "after-goaway"):  # the first: the watch is open
                if name == "after-goaway":
                    await stack.cluster_listener.hand_over()
                await kubectl(admin, "run", name, "--image=nginx", check=True)
                await read_until(watch, name.encode())
        assert watch.returncode is None  # still streaming
        watch.kill()
    event = await wait_for_event(stack, lambda e: e["verb"] == "watch")
    assert event["status"] == 200 and event["ended_by"] == "client"
    assert [e["status"] for e in stack.audit_events() if e["verb"] == "create"] == [201, 201]


class _DroppingCluster:
    """Answers GETs, but drops the connection of the requests it is told to, without an
    answer, once it has read them whole; counts every request that reached it."""

    def __init__(self, drop: Counter[tuple[str, str]]) -> None:
        self.drop = drop
        self.received: Counter[tuple[str, str]] = Counter()
        self.bodies: list[bytes] = []

    async def handle(self, exchange: Exchange) -> None:
        key = (exchange.head.method, exchange.head.path)
        body = b""
        while chunk := await exchange.receive():
            body += chunk
        self.received[key] += 1
        self.bodies.append(body)
        if self.drop[key] > 0:
            self.drop[key] -= 1
            return  # no answer: the cluster's side of the connection is closed
        answer = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        await exchange.start_response(
            200, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        )
        await exchange.send(answer.encode())
        await exchange.finish()


# (kubectl verb, method, times the cluster drops it, requests it then received, answered)
DROPPED = [
    ("get", "GET", 1, 2, True),  # a safe request is sent once more on a fresh connection
    ("get", "GET", 2, 2, False),  # ... but only once: the fresh connection's failure counts
    ("delete", "DELETE", 1, 1, False),  # idempotent by RFC 9110, but never sent twice
]


@pytest.mark.parametrize("alpn", ALPNS, ids=["h2", "http1"])
@pytest.mark.parametrize(
    ("verb", "method", "drops", "received", "answered"),
    DROPPED,
    ids=["get-replayed", "get-replayed-once", "delete-not-replayed"],
)
async def test_a_bodyless_request_whose_reused_cluster_connection_drops_it_is_replayed_only_if_safe(
    nursery: trio.Nursery,
    ca: trustme.CA,
    tmp_path: Path,
    verb: str,
    method: str,
    drops: int,
    received: int,
    answered: bool,
    alpn: tuple[str, ...],
) -> None:
    cluster = _DroppingCluster(Counter({(method, "/flaky"): drops}))
    stack = await start_stack(nursery, ca, tmp_path, upstream=cluster.handle, cluster_alpn=alpn)
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(kc, "get", "--raw", VIA_GATEWAY + "/warm", check=True)  # a pooled connection
    result = await kubectl(kc, verb, "--raw", VIA_GATEWAY + "/flaky")
    assert (result.returncode == 0) is answered, result.stderr.decode()
    assert cluster.received[(method, "/flaky")] == received
    (event,) = [e for e in stack.audit_events() if e["path"].endswith("/flaky")]
    assert event["status"] == (200 if answered else 502)


@pytest.mark.parametrize("alpn", ALPNS, ids=["h2", "http1"])
async def test_a_post_whose_cluster_connection_drops_after_it_was_sent_gets_a_502_and_is_sent_once(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, alpn: tuple[str, ...]
) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    cluster = _DroppingCluster(Counter({("POST", path): 1}))
    stack = await start_stack(nursery, ca, tmp_path, upstream=cluster.handle, cluster_alpn=alpn)
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    await kubectl(
        kc, "get", "--raw", VIA_GATEWAY + "/warm", check=True
    )  # the POST reuses its connection
    manifest = tmp_path / "cm.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}))
    result = await kubectl(kc, "create", "--raw", VIA_GATEWAY + path, "-f", str(manifest))
    assert result.returncode != 0
    assert cluster.received[("POST", path)] == 1
    assert cluster.bodies[-1] == manifest.read_bytes()
    (event,) = [e for e in stack.audit_events() if e["method"] == "POST"]
    assert event["status"] == 502
