"""The store interface, and its one SQL implementation over a backend (SQLite or
PostgreSQL) that only knows how to open a transaction.

Drivers are synchronous (psycopg's async API is asyncio-only; sqlite3 has none), so every
operation runs whole in a worker thread (`trio.to_thread.run_sync`): one transaction per
call, committed or rolled back before the thread returns. Every write also bumps the single
`state_revision` counter in the same transaction; that counter is the change feed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import trio

from l7proxy.state.codec import decode_lock, decode_request, encode_lock, encode_request
from l7proxy.state.errors import SchemaTooNew
from l7proxy.state.migrations import MIGRATIONS
from policy.access import AccessRequest, Lock, RequestState

T = TypeVar("T")

# `list_requests` returns at most this many, newest first: the API's lists stay bounded.
LIST_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the request path needs, read in one transaction: the approved requests that
    have not ended and the locks in force, as of `revision`."""

    revision: int
    approved: tuple[AccessRequest, ...]
    locks: tuple[Lock, ...]


class Store(Protocol):
    """Every operation raises `StoreUnavailable` when the store cannot be reached."""

    async def migrate(self) -> None:
        """Create or upgrade the schema; safe when several gateways start at once."""

    async def aclose(self) -> None: ...

    async def create_request(self, request: AccessRequest) -> None: ...

    async def get_request(self, id: str) -> AccessRequest | None: ...

    async def list_requests(self) -> list[AccessRequest]:
        """The newest `LIST_LIMIT` requests, newest first, as stored."""

    async def update_request(
        self, id: str, change: Callable[[AccessRequest], AccessRequest]
    ) -> AccessRequest | None:
        """Apply `change` (a pure rule, which may raise) to the stored request and store its
        result, atomically: no other review or revoke interleaves. None: no such request."""

    async def expire_requests(self, now: float) -> list[AccessRequest]:
        """Mark pending and approved requests whose time has passed expired; returns those
        this call expired (each exactly once across every gateway)."""

    async def create_lock(self, lock: Lock) -> None: ...

    async def list_locks(self, now: float) -> list[Lock]:
        """The locks in force at `now`."""

    async def delete_lock(self, id: str) -> Lock | None: ...

    async def revision(self) -> int:
        """The change counter: it grows on every write."""

    async def snapshot(self, now: float) -> Snapshot: ...


class Tx(Protocol):
    """One open transaction of a backend."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run one statement (`?` placeholders); its rows, or [] for none."""


class Backend(Protocol):
    # Appended to a SELECT that must lock its rows until the transaction ends.
    row_lock: str

    def transaction(self, *, write: bool) -> AbstractContextManager[Tx]:
        """A transaction, committed when the block ends, rolled back if it raises; driver
        errors leave it as `StoreUnavailable`. `write` takes the write lock up front."""

    def lock_for_migration(self, tx: Tx) -> None:
        """Hold off other gateways' migrations until `tx` ends."""

    def close(self) -> None: ...


class SqlStore:
    """`Store` over a `Backend`; the SQL is written once for both databases."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def _run(self, operation: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(operation)

    async def migrate(self) -> None:
        await self._run(self._migrate)

    def _migrate(self) -> None:
        with self._backend.transaction(write=True) as tx:
            self._backend.lock_for_migration(tx)
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = tx.execute("SELECT MAX(version) FROM schema_version")
            current = int(str(rows[0][0])) if rows and rows[0][0] is not None else 0
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the state store's schema is version {current}; this gateway knows "
                    f"versions up to {len(MIGRATIONS)}: upgrade the gateway"
                )
            for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    async def aclose(self) -> None:
        await self._run(self._backend.close)

    async def create_request(self, request: AccessRequest) -> None:
        await self._run(partial(self._write, _insert_request, request))

    async def get_request(self, id: str) -> AccessRequest | None:
        return await self._run(partial(self._get_request, id))

    def _get_request(self, id: str) -> AccessRequest | None:
        with self._backend.transaction(write=False) as tx:
            rows = tx.execute("SELECT body FROM access_requests WHERE id = ?", (id,))
        return decode_request(str(rows[0][0])) if rows else None

    async def list_requests(self) -> list[AccessRequest]:
        return await self._run(self._list_requests)

    def _list_requests(self) -> list[AccessRequest]:
        with self._backend.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT body FROM access_requests ORDER BY created DESC, id LIMIT ?",
                (LIST_LIMIT,),
            )
        return [decode_request(str(row[0])) for row in rows]

    async def update_request(
        self, id: str, change: Callable[[AccessRequest], AccessRequest]
    ) -> AccessRequest | None:
        return await self._run(partial(self._update_request, id, change))

    def _update_request(
        self, id: str, change: Callable[[AccessRequest], AccessRequest]
    ) -> AccessRequest | None:
        with self._backend.transaction(write=True) as tx:
            rows = tx.execute(
                "SELECT body FROM access_requests WHERE id = ?" + self._backend.row_lock, (id,)
            )
            if not rows:
                return None
            changed = change(decode_request(str(rows[0][0])))
            _update_row(tx, changed)
            _bump(tx)
        return changed

    async def expire_requests(self, now: float) -> list[AccessRequest]:
        return await self._run(partial(self._expire_requests, now))

    def _expire_requests(self, now: float) -> list[AccessRequest]:
        due = "SELECT body FROM access_requests WHERE state IN (?, ?) AND expires <= ?"
        live = (RequestState.PENDING.value, RequestState.APPROVED.value, now)
        with self._backend.transaction(write=False) as tx:
            if not tx.execute(due + " LIMIT 1", live):
                return []  # the usual case: no write lock taken
        with self._backend.transaction(write=True) as tx:
            expired = [
                decode_request(str(row[0])).effective(now)
                for row in tx.execute(due + self._backend.row_lock, live)
            ]
            for request in expired:
                _update_row(tx, request)
            if expired:
                _bump(tx)
        return expired

    async def create_lock(self, lock: Lock) -> None:
        await self._run(partial(self._write, _insert_lock, lock))

    async def list_locks(self, now: float) -> list[Lock]:
        return await self._run(partial(self._list_locks, now))

    def _list_locks(self, now: float) -> list[Lock]:
        with self._backend.transaction(write=False) as tx:
            return _locks_in_force(tx, now)

    async def delete_lock(self, id: str) -> Lock | None:
        return await self._run(partial(self._delete_lock, id))

    def _delete_lock(self, id: str) -> Lock | None:
        with self._backend.transaction(write=True) as tx:
            rows = tx.execute("SELECT body FROM locks WHERE id = ?" + self._backend.row_lock, (id,))
            if not rows:
                return None
            tx.execute("DELETE FROM locks WHERE id = ?", (id,))
            _bump(tx)
        return decode_lock(str(rows[0][0]))

    async def revision(self) -> int:
        return await self._run(self._revision)

    def _revision(self) -> int:
        with self._backend.transaction(write=False) as tx:
            return _read_revision(tx)

    async def snapshot(self, now: float) -> Snapshot:
        return await self._run(partial(self._snapshot, now))

    def _snapshot(self, now: float) -> Snapshot:
        with self._backend.transaction(write=False) as tx:
            revision = _read_revision(tx)
            rows = tx.execute(
                "SELECT body FROM access_requests WHERE state = ? AND expires > ?",
                (RequestState.APPROVED.value, now),
            )
            locks = _locks_in_force(tx, now)
        approved = tuple(decode_request(str(row[0])) for row in rows)
        return Snapshot(revision, approved, tuple(locks))

    def _write(self, insert: Callable[[Tx, T], None], value: T) -> None:
        with self._backend.transaction(write=True) as tx:
            insert(tx, value)
            _bump(tx)


def _insert_request(tx: Tx, request: AccessRequest) -> None:
    tx.execute(
        "INSERT INTO access_requests (id, state, created, expires, body) VALUES (?, ?, ?, ?, ?)",
        (
            request.id,
            request.state.value,
            request.created,
            request.expires,
            encode_request(request),
        ),
    )


def _update_row(tx: Tx, request: AccessRequest) -> None:
    tx.execute(
        "UPDATE access_requests SET state = ?, expires = ?, body = ? WHERE id = ?",
        (request.state.value, request.expires, encode_request(request), request.id),
    )


def _insert_lock(tx: Tx, lock: Lock) -> None:
    tx.execute(
        "INSERT INTO locks (id, created, expires, body) VALUES (?, ?, ?, ?)",
        (lock.id, lock.created, lock.expires, encode_lock(lock)),
    )


def _locks_in_force(tx: Tx, now: float) -> list[Lock]:
    rows = tx.execute(
        "SELECT body FROM locks WHERE expires IS NULL OR expires > ? ORDER BY created, id", (now,)
    )
    return [decode_lock(str(row[0])) for row in rows]


def _bump(tx: Tx) -> None:
    tx.execute("UPDATE state_revision SET revision = revision + 1 WHERE id = 1")


def _read_revision(tx: Tx) -> int:
    rows = tx.execute("SELECT revision FROM state_revision WHERE id = 1")
    return int(str(rows[0][0]))
