"""The store's typed errors: the request path maps them, it never sees a driver's."""

from __future__ import annotations


class StoreError(Exception):
    """The state store cannot serve; the message names no secret (no URL, no password)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or failed mid-operation: locks fail closed (503)."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer gateway than this one."""


class CorruptRecord(StoreError):
    """A stored row that does not decode: written by something other than this gateway."""
