"""The schema, as ordered migrations: migration N (1-based) takes the schema from version
N-1 to N. Append new ones; never edit a released one. The SQL is the common subset of
SQLite and PostgreSQL. Each record's JSON `body` is the whole record; the other columns are
copies kept for the queries."""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE access_requests (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX access_requests_live ON access_requests (state, expires)",
        """CREATE TABLE locks (
            id TEXT PRIMARY KEY,
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION,
            body TEXT NOT NULL
        )""",
        """CREATE TABLE state_revision (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            revision BIGINT NOT NULL
        )""",
        "INSERT INTO state_revision (id, revision) VALUES (1, 0)",
    ),
)
