"""`pods/log`: a synthetic access log, one line per second of the pod's life.

Line n of a pod is stamped n-1 seconds after its creation, so the history is a pure
function of the clock: `kubectl logs` shows the last lines (at most `HISTORY`), and
`logs -f` then sends the next line every second until the client leaves or the pod goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import trio

from l7proxy.tools.sandbox.resources import PODS
from l7proxy.tools.sandbox.status import ApiError, bad_request
from l7proxy.tools.sandbox.store import Store, rfc3339
from l7proxy.tools.sandbox.wire import respond
from l7proxy.wire.exchange import Exchange

HISTORY = 100
TEXT = b"text/plain"


@dataclass(frozen=True, slots=True)
class LogRequest:
    namespace: str
    pod: str
    container: str
    follow: bool
    tail_lines: int | None


def parse_request(store: Store, namespace: str, pod: str, params: dict[str, str]) -> LogRequest:
    """Validate the pod, container and options the way kube-apiserver does."""
    obj = store.get(PODS, namespace, pod)
    names = [c.get("name", "") for c in obj.get("spec", {}).get("containers") or []]
    container = params.get("container") or (names[0] if len(names) == 1 else "")
    if not container:
        raise bad_request(
            f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]"
        )
    if container not in names:
        raise bad_request(f"container {container} is not valid for pod {pod}")
    tail = params.get("tailLines")
    if tail is not None and not tail.isdigit():
        raise bad_request(f"invalid tailLines: {tail!r}")
    follow = params.get("follow", "false").lower() in ("true", "1")
    return LogRequest(namespace, pod, container, follow, None if tail is None else int(tail))


def _same_pod(store: Store, req: LogRequest, uid: str) -> bool:
    try:
        return bool(store.get(PODS, req.namespace, req.pod)["metadata"]["uid"] == uid)
    except ApiError:
        return False


def _line(req: LogRequest, n: int, stamp: float) -> bytes:
    return f"{rfc3339(stamp)} {req.pod} {req.container}: request {n} served\n".encode()


async def serve_logs(
    exchange: Exchange, store: Store, req: LogRequest, clock: Callable[[], float]
) -> None:
    meta = store.get(PODS, req.namespace, req.pod)["metadata"]
    created = datetime.fromisoformat(meta["creationTimestamp"]).timestamp()
    total = max(int(clock() - created), 0) + 1
    first = max(total - min(HISTORY, total if req.tail_lines is None else req.tail_lines), 0)
    history = b"".join(_line(req, n, created + n - 1) for n in range(first + 1, total + 1))
    if not req.follow:
        await respond(exchange, 200, history, TEXT)
        return
    await exchange.start_response(200, [(b"content-type", TEXT)])
    if history:
        await exchange.send(history)
    n = total
    while True:
        await trio.sleep(1)
        if not _same_pod(store, req, meta["uid"]):  # its containers' output ends with it
            break
        n += 1
        await exchange.send(_line(req, n, clock()))
    await exchange.finish()
