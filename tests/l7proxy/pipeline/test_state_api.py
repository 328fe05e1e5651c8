"""The expiry sweep: a lapsed request is marked expired and audited exactly once, even with
two gateways sweeping the same store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from l7proxy.pipeline.state_api import StateApi
from l7proxy.state.sqlite import sqlite_store
from l7proxy.telemetry.audit import AuditLog
from policy.access import PENDING_TTL, Grant, RequestState, Subjects, create_request
from policy.identity import Identity

NOW = 1_800_000_000.0
GRANT = Grant("prod-write", "p", Subjects(groups=("sre",)), Subjects(groups=("leads",)))


def pinned(t: float) -> Callable[[], float]:
    return lambda: t


async def test_a_lapsed_request_is_expired_and_audited_once(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "state.db")
    await store.migrate()
    request = create_request(
        GRANT, Identity("alice", ("sre",)), id="r1", reason="x", duration=60, now=NOW
    )
    await store.create_request(request)
    audit = AuditLog(str(tmp_path / "audit.jsonl"))
    later = NOW + PENDING_TTL
    apis = [
        StateApi(store, grants=[GRANT], admins=Subjects(), audit=audit, clock=pinned(t))
        for t in (NOW, later, later)
    ]
    for api in apis:  # the first is before the hour is up; the third finds nothing left
        await api.expire_due()
    audit.close()
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["type"], e["id"], e["requester"], e["state"]) for e in events] == [
        ("access_request.expired", "r1", "alice", "expired")
    ]
    stored = await store.get_request("r1")
    assert stored is not None and stored.state is RequestState.EXPIRED
