"""Serving a watch: newline-delimited JSON events, each sent the moment it happens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from l7proxy.tools.sandbox.resources import ResourceType
from l7proxy.tools.sandbox.selectors import Selector
from l7proxy.tools.sandbox.status import ApiError
from l7proxy.tools.sandbox.store import Store, WatchEvent
from l7proxy.tools.sandbox.tables import table
from l7proxy.tools.sandbox.wire import JSON, encode
from l7proxy.wire.exchange import Exchange

Obj = dict[str, Any]

# kube-apiserver ends a watch without timeoutSeconds after its --min-request-timeout (1800 s).
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True, slots=True)
class TableFormat:
    """Events carry one-row Tables instead of objects (`kubectl get -w`)."""

    include: str  # includeObject
    clock: Callable[[], float]


@dataclass(frozen=True, slots=True)
class WatchRequest:
    rtype: ResourceType
    namespace: str | None
    selector: Selector
    since: int | None  # None: start with ADDED events for what exists now
    timeout: float
    tables: TableFormat | None


def _frame(event_type: str, obj: Obj) -> bytes:
    return encode({"type": event_type, "object": obj}) + b"\n"


async def serve_watch(exchange: Exchange, store: Store, req: WatchRequest) -> None:
    """Stream events until the timeout, the client leaving, or the store ending a watcher
    that fell behind (the client then resumes from its last resourceVersion)."""
    try:
        watcher = store.watch(req.rtype, req.namespace, req.selector, req.since)
    except ApiError as err:  # kube reports a too-old resourceVersion as an ERROR event
        await exchange.start_response(200, [(b"content-type", JSON)])
        await exchange.send(_frame("ERROR", err.status()))
        await exchange.finish()
        return
    with watcher:
        await exchange.start_response(200, [(b"content-type", JSON)])
        first = True

        async def emit(event: WatchEvent) -> None:
            nonlocal first
            obj = event.obj
            if req.tables is not None:
                obj = table(
                    req.rtype,
                    [obj],
                    now=req.tables.clock(),
                    include=req.tables.include,
                    metadata={"resourceVersion": obj["metadata"]["resourceVersion"]},
                    columns=first,
                )
            first = False
            await exchange.send(_frame(event.type, obj))

        with trio.move_on_after(req.timeout):
            for event in watcher.initial:
                await emit(event)
            async for event in watcher.events:
                await emit(event)
    await exchange.finish()
