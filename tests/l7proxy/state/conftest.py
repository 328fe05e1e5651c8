"""The store under test, once per backend: SQLite in a temporary file, and PostgreSQL on a
real server (one per test session, a fresh database per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from l7proxy.state.postgres import postgres_store
from l7proxy.state.sqlite import sqlite_store
from l7proxy.state.store import SqlStore

StoreFactory = Callable[[], SqlStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens stores on one database: each call is another gateway's store instance."""
    opened: list[SqlStore] = []
    if request.param == "sqlite":
        path = tmp_path / "state.db"

        def factory() -> SqlStore:
            opened.append(sqlite_store(path))
            return opened[-1]
    else:
        url = request.getfixturevalue("postgres").create_database()

        def factory() -> SqlStore:
            opened.append(postgres_store(url))
            return opened[-1]

    yield factory
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[SqlStore]:
    store = new_store()
    await store.migrate()
    yield store
