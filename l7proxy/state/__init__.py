"""The state store: access requests and locks, shared by every worker and replica.

`Store` is the one interface (`store.py`); `open_store` picks SQLite or PostgreSQL from the
configuration. `StateView` (`view.py`) is what the request path reads: each worker's copy of
the grants and locks in force, refreshed by a bounded poll of the store's change counter.
The rules themselves are pure and live in `policy.access`.
"""

from l7proxy.state.errors import SchemaTooNew, StoreError, StoreUnavailable
from l7proxy.state.open import open_store
from l7proxy.state.store import Snapshot, Store
from l7proxy.state.view import StateView

__all__ = [
    "SchemaTooNew",
    "Snapshot",
    "StateView",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]
