"""The store the configuration names."""

from __future__ import annotations

from pathlib import Path

from l7proxy.config.settings import StateStore
from l7proxy.state.store import SqlStore


def open_store(settings: StateStore, base: Path) -> SqlStore:
    """PostgreSQL when `postgres` is set, else SQLite at `sqlite` (relative to `base`, the
    configuration file's folder). psycopg is imported only for PostgreSQL."""
    if settings.postgres:
        from l7proxy.state.postgres import postgres_store

        return postgres_store(settings.postgres)
    from l7proxy.state.sqlite import sqlite_store

    return sqlite_store(base / settings.sqlite)
