"""The SQLite backend: one file beside the configuration, for one host (every worker
process opens the same file; WAL lets readers run beside the one writer)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from l7proxy.state.errors import StoreUnavailable
from l7proxy.state.store import SqlStore, Tx

# How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT = 5.0
# How often a new file's switch to WAL is tried again while another process holds it.
WAL_RETRY = 0.01


class _SqliteTx:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return self._connection.execute(sql, params).fetchall()


class SqliteBackend:
    """A fresh connection per transaction: operations run on whichever worker thread trio
    hands out, and opening a local file costs microseconds."""

    row_lock = ""  # BEGIN IMMEDIATE already holds the database's write lock

    def __init__(self, path: Path) -> None:
        self.path = path
        self._in_wal = False  # the file is in WAL mode (a setting the file keeps)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[_SqliteTx]:
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the state store {self.path}: {exc}") from exc
        try:
            if not self._in_wal:
                _switch_to_wal(connection)
                self._in_wal = True
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield _SqliteTx(connection)
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the state store {self.path} failed: {exc}") from exc
        finally:
            connection.close()  # rolls back whatever was not committed

    def lock_for_migration(self, tx: Tx) -> None:
        """The migration's BEGIN IMMEDIATE is the lock."""

    def close(self) -> None:
        """Nothing stays open between transactions."""


def _switch_to_wal(connection: sqlite3.Connection) -> None:
    """Put the file in WAL mode. Switching needs the whole file for a moment, and SQLite
    answers SQLITE_BUSY at once, not after its busy timeout, while another connection
    holds it (gateways starting at once, each migrating a new file): so try again until
    `BUSY_TIMEOUT`."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(WAL_RETRY)


def sqlite_store(path: Path) -> SqlStore:
    return SqlStore(SqliteBackend(path))
