"""Each worker's view of the store: the grants and locks in force, for the request path.

The change feed is a bounded poll of the store's change counter (`Store.revision`) every
`POLL_INTERVAL`; when it moved, the worker reloads one `Snapshot`. The same code serves
SQLite (which has no notifications across processes) and PostgreSQL, costs one indexed
single-row read per poll, and cannot miss a change the way a notification lost while a
listening connection reconnects can. See the README, "Living access".
"""

from __future__ import annotations

import time

import structlog
import trio

from l7proxy.state.errors import StoreError, StoreUnavailable
from l7proxy.state.store import Snapshot, Store
from policy.access import AccessRequest, Lock, active_grants, locks_matching
from policy.identity import Identity

log = structlog.get_logger("l7proxy.state")

# Every change reaches every worker within one poll and one reload: well inside 2 s.
POLL_INTERVAL = 0.5
# Without a successful poll for this long, the view no longer vouches for its locks.
STALE_AFTER = 3.0


class StateView:
    """Read by the request path; refreshed by `run` in the gateway's nursery."""

    def __init__(self, store: Store, *, poll_interval: float = POLL_INTERVAL) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._snapshot = Snapshot(revision=-1, approved=(), locks=())
        self._fresh_at = -float("inf")  # trio time of the last successful poll
        self._changed = trio.Event()

    @property
    def revision(self) -> int:
        """The revision of the snapshot held; -1 before the first load."""
        return self._snapshot.revision

    def locks_for(self, who: Identity, connection: str) -> tuple[Lock, ...]:
        """The locks in force on `who` or `connection`. Raises `StoreUnavailable` when
        the view is stale: a lock placed meanwhile would go unseen, so locks fail closed."""
        if trio.current_time() - self._fresh_at > STALE_AFTER:
            raise StoreUnavailable("the state store has not answered: locks cannot be checked")
        return locks_matching(self._snapshot.locks, who, connection, time.time())

    def grants_for(self, who: Identity) -> tuple[AccessRequest, ...]:
        """The approved requests of `who` in force now; none while the view is stale
        (grants fail closed by not being added)."""
        if trio.current_time() - self._fresh_at > STALE_AFTER:
            return ()
        return active_grants(self._snapshot.approved, who, time.time())

    async def wait_for_change(self, seen: int) -> int:
        """Block until the view holds a revision other than `seen`; returns it. A live
        stream loops on this to re-check its lock and grant after every change."""
        while self._snapshot.revision == seen:
            await self._changed.wait()
        return self._snapshot.revision

    async def refresh(self) -> None:
        """One poll: reload the snapshot when the store's revision moved."""
        revision = await self._store.revision()
        if revision != self._snapshot.revision:
            self._snapshot = await self._store.snapshot(time.time())
            self._changed.set()
            self._changed = trio.Event()
        self._fresh_at = trio.current_time()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled; reports started after the first attempt."""
        failing = False
        started = False
        while True:
            try:
                await self.refresh()
                if failing:
                    log.info("state store reachable again")
                failing = False
            except StoreError as exc:
                if not failing:
                    log.warning("state store unreachable", error=str(exc))
                failing = True
            if not started:
                task_status.started()
                started = True
            await trio.sleep(self._poll_interval)
