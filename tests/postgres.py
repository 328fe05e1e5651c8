"""A real PostgreSQL server for tests: Debian's `postgresql` package (the Makefile installs
it when missing), `initdb` into a temporary directory and `pg_ctl` serving on a unix
socket in that directory only (no TCP port to collide with anyone's). As root, the server
runs as the `postgres` user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg


@dataclass(frozen=True)
class Postgres:
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&user=postgres"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs `postgresql`")
    return Path(found[-1]).parent


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="l7proxy-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")

    def pg(tool: str, *args: str, check: bool = True) -> None:
        argv = _as_server_user([str(bindir / tool), "-D", str(data), *args])
        subprocess.run(argv, check=check, capture_output=True)

    try:
        pg("initdb", "-U", "postgres", "-A", "trust")
        options = f"-c listen_addresses='' -k {sockets} -c fsync=off"
        pg("pg_ctl", "-o", options, "-l", str(root / "server.log"), "-w", "start")
        try:
            yield Postgres(sockets)
        finally:
            pg("pg_ctl", "-m", "fast", "-w", "stop", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
