"""The token cache: one 0600 file per (issuer, client, scopes, grant, audience).

kubectl runs the plugin for every command, so without a cache each `kubectl get` would be a new
sign-in. Files hold tokens, so the directory is 0700, files are created 0600 and replaced
atomically, and a lock file keeps two concurrent kubectl commands from both signing in.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Only these fields of a token response are kept; anything else the provider sent is dropped.
_KEPT = ("id_token", "access_token", "refresh_token", "token_type", "expires_in", "scope")


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/l7proxy`, or `~/.cache/l7proxy`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "l7proxy"


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached token response and when it was obtained (Unix time)."""

    response: Mapping[str, object]
    obtained_at: float


class TokenCache:
    def __init__(self, directory: Path, key: Sequence[str]) -> None:
        digest = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:40]
        self.directory = directory
        self.path = directory / f"{digest}.json"
        self._lock_path = directory / f"{digest}.lock"

    def load(self) -> Entry | None:
        """The cached entry; None when there is none or it cannot be read (it is rewritten)."""
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(doc, dict):
            return None
        response, obtained_at = doc.get("response"), doc.get("obtained_at")
        if not isinstance(response, dict) or not isinstance(obtained_at, int | float):
            return None
        return Entry(response=response, obtained_at=float(obtained_at))

    def store(self, response: Mapping[str, object], obtained_at: float) -> None:
        self._ensure_directory()
        doc = {
            "response": {k: response[k] for k in _KEPT if k in response},
            "obtained_at": obtained_at,
        }
        temporary = self.directory / f".{self.path.name}.{secrets.token_hex(6)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(doc, file)
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held for a whole sign-in: a second plugin run waits, then finds the new token."""
        self._ensure_directory()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            self.directory.chmod(0o700)
