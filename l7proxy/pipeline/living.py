"""Living access on the request path: locks refuse before authorization, approved access
requests add their policy for the requester, and both reach the streams already open."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import trio

from l7proxy.pipeline.errors import Fault, GatewayRefusal
from l7proxy.pipeline.live import Live
from l7proxy.pipeline.shutdown import OpenStream, Shutdown
from l7proxy.state.errors import StoreUnavailable
from l7proxy.state.view import StateView
from policy.access import Lock, format_duration
from policy.identity import Identity
from protocols.attributes import Attributes

# Grants end by the clock as well as by a change in the store: open streams are checked at
# least this often, besides at every change.
RECHECK_INTERVAL = 1.0


def with_access(live: Live, view: StateView | None, who: Identity, connection: str) -> Live:
    """`live` as it decides for `who` now: refused outright by a lock, or with the
    policies of `who`'s approved requests added. Locks fail closed: a store the view
    cannot vouch for refuses the request (503) rather than serve it unchecked."""
    if view is None:
        return live
    try:
        locks = view.locks_for(who, connection)
    except StoreUnavailable as exc:
        raise GatewayRefusal(Fault.STATE_UNAVAILABLE, f"cannot check locks: {exc}") from exc
    if locks:
        raise GatewayRefusal(Fault.FORBIDDEN, locked_message(who, connection, locks[0]))
    requests = view.grants_for(who)
    if not requests:
        return live
    return dataclasses.replace(live, policies=live.grants.with_requests(who, requests))


def locked_message(who: Identity, connection: str, lock: Lock) -> str:
    on = {"user": f'user "{lock.target}"', "group": f'group "{lock.target}"'}.get(
        lock.kind.value, f'connection "{lock.target}"'
    )
    until = (
        f", for {format_duration(lock.expires - time.time())} more"
        if lock.expires is not None
        else ""
    )
    return (
        f'User "{who.username}" is locked out of connection "{connection}": {lock.message} '
        f"(lock {lock.id} on {on} by {lock.created_by}{until})"
    )


def lift_hint(live: Live, who: Identity, connection: str, attributes: Attributes) -> str:
    """What a 403 adds when an access request the caller may file would allow it."""
    grant = live.grants.lift(who, connection, attributes)
    if grant is None:
        return ""
    return f" (request it: l7proxy request create --grant {grant} --reason TEXT --duration 30m)"


def _why_end(view: StateView, *, changed: bool) -> Callable[[OpenStream], str]:
    """Why a stream must end now. Locks are only placed by a change of the store, so they
    are looked up when it `changed`; grants also end by the clock, so they always are."""

    def why(stream: OpenStream) -> str:
        try:
            if changed and view.locks_for(stream.identity, stream.connection):
                return "lock"
        except StoreUnavailable:
            pass  # an outage refuses new requests; it does not cut what runs
        if stream.grant and all(r.id != stream.grant for r in view.grants_for(stream.identity)):
            return "grant ended"
        return ""

    return why


async def enforce_on_streams(view: StateView, shutdown: Shutdown) -> None:
    """End the open streams that a new lock matches or whose grant has ended, on every
    change of the store and every `RECHECK_INTERVAL`."""
    seen = view.revision
    while True:
        previous = seen
        with trio.move_on_after(RECHECK_INTERVAL):
            seen = await view.wait_for_change(seen)
        shutdown.end_where(_why_end(view, changed=seen != previous))
