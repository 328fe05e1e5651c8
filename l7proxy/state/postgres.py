"""The PostgreSQL backend, for several replicas: psycopg 3's synchronous API over a
`psycopg_pool` pool, driven from worker threads (psycopg's async API is built on asyncio,
and the gateway runs on trio)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
import psycopg_pool

from l7proxy.state.errors import StoreUnavailable
from l7proxy.state.store import SqlStore, Tx

# Waiting for a pooled connection, and for a new one to connect, fails after this long:
# an unreachable database turns into StoreUnavailable, not a hung request.
CONNECT_TIMEOUT = 5
# Connections per gateway process: the poll, the expiry sweep and the API's calls.
POOL_SIZE = 4
# The advisory lock key gateways serialise their migrations on ("l7px").
MIGRATION_LOCK = 0x6C377078


class _PostgresTx:
    def __init__(self, connection: psycopg.Connection[tuple[object, ...]]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        cursor = self._connection.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description is not None else []


class PostgresBackend:
    row_lock = " FOR UPDATE"

    def __init__(self, url: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[object, ...]]] = (
            psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=timeout,
                kwargs={"connect_timeout": max(1, round(timeout))},
                open=False,
            )
        )
        self._pool.open(wait=False)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[_PostgresTx]:
        """Read committed; writers lock the rows they change (`row_lock`) and the one
        `state_revision` row, so concurrent writes serialise."""
        try:
            with self._pool.connection() as connection, connection.transaction():
                yield _PostgresTx(connection)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            # psycopg's messages name the host and user, never the password.
            raise StoreUnavailable(f"the PostgreSQL state store failed: {exc}") from exc

    def lock_for_migration(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def close(self) -> None:
        self._pool.close()


def postgres_store(url: str, *, timeout: float = CONNECT_TIMEOUT) -> SqlStore:
    return SqlStore(PostgresBackend(url, timeout=timeout))
