"""The store contract, run against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from l7proxy.state.errors import SchemaTooNew, StoreUnavailable
from l7proxy.state.migrations import MIGRATIONS
from l7proxy.state.postgres import postgres_store
from l7proxy.state.sqlite import sqlite_store
from l7proxy.state.store import SqlStore
from l7proxy.state.view import StateView
from policy.access import (
    AccessRefused,
    AccessRequest,
    Grant,
    Lock,
    LockKind,
    RequestState,
    Subjects,
    Verdict,
    create_request,
    review_request,
)
from policy.identity import Identity
from tests.l7proxy.state.conftest import StoreFactory

NOW = 1_800_000_000.0
ALICE = Identity("alice", ("sre",))
GRANT = Grant(
    "prod-write",
    "prod-admin",
    requesters=Subjects(groups=("sre",)),
    approvers=Subjects(groups=("sre-leads",)),
    min_approvals=5,
    max_duration=4 * 3600,
)


def a_request(id: str = "r1", now: float = NOW) -> AccessRequest:
    return create_request(GRANT, ALICE, id=id, reason="incident 42", duration=1800, now=now)


def a_lock(id: str = "l1", expires: float | None = None) -> Lock:
    return Lock(id, LockKind.USER, "agent-7", "stop", "root", NOW, expires)


def approve(by: str) -> Callable[[AccessRequest], AccessRequest]:
    def change(request: AccessRequest) -> AccessRequest:
        reviewer = Identity(by, ("sre-leads",))
        return review_request(request, GRANT, reviewer, Verdict.APPROVE, reason="ok", now=NOW)

    return change


async def test_a_created_request_reads_back_equal(store: SqlStore) -> None:
    request = a_request()
    await store.create_request(request)
    assert await store.get_request("r1") == request
    assert await store.get_request("nope") is None


async def test_requests_list_newest_first(store: SqlStore) -> None:
    for i in range(3):
        await store.create_request(a_request(f"r{i}", NOW + i))
    assert [r.id for r in await store.list_requests()] == ["r2", "r1", "r0"]


async def test_an_update_stores_what_the_rule_returns(store: SqlStore) -> None:
    await store.create_request(a_request())
    updated = await store.update_request("r1", approve("bob"))
    assert updated is not None and [r.reviewer for r in updated.reviews] == ["bob"]
    assert await store.get_request("r1") == updated


async def test_an_update_the_rule_refuses_changes_nothing(store: SqlStore) -> None:
    await store.create_request(a_request())
    revision = await store.revision()
    with pytest.raises(AccessRefused):
        await store.update_request("r1", approve("alice"))
    assert await store.get_request("r1") == a_request()
    assert await store.revision() == revision


async def test_updating_a_missing_request_finds_none(store: SqlStore) -> None:
    assert await store.update_request("nope", approve("bob")) is None


async def test_concurrent_reviews_from_two_gateways_are_all_kept(
    new_store: StoreFactory,
) -> None:
    """Each review is read-modify-write: without the row lock some would be lost."""
    first, second = new_store(), new_store()
    await first.migrate()
    await first.create_request(a_request())
    reviewers = [f"lead-{i}" for i in range(5)]
    async with trio.open_nursery() as nursery:
        for i, reviewer in enumerate(reviewers):
            store = first if i % 2 else second
            nursery.start_soon(store.update_request, "r1", approve(reviewer))
    stored = await second.get_request("r1")
    assert stored is not None
    assert sorted(r.reviewer for r in stored.reviews) == reviewers
    assert stored.state is RequestState.APPROVED  # the fifth approval decided it


async def test_lapsed_requests_expire_once(new_store: StoreFactory) -> None:
    first, second = new_store(), new_store()
    await first.migrate()
    await first.create_request(a_request("old", NOW - 7200))
    await first.create_request(a_request("new", NOW))
    expired = await first.expire_requests(NOW)
    assert [(r.id, r.state) for r in expired] == [("old", RequestState.EXPIRED)]
    assert await second.expire_requests(NOW) == []
    stored = await second.get_request("old")
    assert stored is not None and stored.state is RequestState.EXPIRED


async def test_locks_are_listed_while_in_force_and_deleted_once(store: SqlStore) -> None:
    await store.create_lock(a_lock("forever"))
    await store.create_lock(a_lock("brief", expires=NOW + 60))
    assert sorted(lock.id for lock in await store.list_locks(NOW)) == ["brief", "forever"]
    assert [lock.id for lock in await store.list_locks(NOW + 61)] == ["forever"]
    assert await store.delete_lock("forever") == a_lock("forever")
    assert await store.delete_lock("forever") is None
    assert [lock.id for lock in await store.list_locks(NOW)] == ["brief"]


async def test_every_write_moves_the_revision(store: SqlStore) -> None:
    revisions = [await store.revision()]
    await store.create_request(a_request())
    revisions.append(await store.revision())
    await store.update_request("r1", approve("bob"))
    revisions.append(await store.revision())
    await store.create_lock(a_lock())
    revisions.append(await store.revision())
    await store.delete_lock("l1")
    revisions.append(await store.revision())
    assert revisions == sorted(set(revisions))


async def test_the_snapshot_holds_grants_in_force_and_locks(store: SqlStore) -> None:
    grant = Grant("g", "p", Subjects(groups=("sre",)), Subjects(users=("bob",)))
    pending = create_request(grant, ALICE, id="p", reason="r", duration=60, now=NOW)
    await store.create_request(pending)
    approved = review_request(
        dataclasses.replace(pending, id="a"),
        grant,
        Identity("bob"),
        Verdict.APPROVE,
        reason="ok",
        now=NOW,
    )
    await store.create_request(approved)
    await store.create_lock(a_lock())
    snapshot = await store.snapshot(NOW + 1)
    assert snapshot.approved == (approved,)
    assert snapshot.locks == (a_lock(),)
    assert snapshot.revision == await store.revision()
    assert (await store.snapshot(NOW + 61)).approved == ()  # its 60 s are over


async def test_migrating_again_changes_nothing(store: SqlStore) -> None:
    await store.create_lock(a_lock())
    await store.migrate()
    assert await store.list_locks(NOW) == [a_lock()]


async def test_gateways_starting_at_once_migrate_once(new_store: StoreFactory) -> None:
    stores = [new_store() for _ in range(4)]
    async with trio.open_nursery() as nursery:
        for store in stores:
            nursery.start_soon(store.migrate)
    await stores[0].create_lock(a_lock())
    assert await stores[3].list_locks(NOW) == [a_lock()]


async def test_a_schema_newer_than_the_gateway_is_refused(store: SqlStore) -> None:
    newer = len(MIGRATIONS) + 1
    await store._run(lambda: _insert_version(store, newer))
    with pytest.raises(SchemaTooNew, match=f"version {newer}"):
        await store.migrate()


def _insert_version(store: SqlStore, version: int) -> None:
    with store._backend.transaction(write=True) as tx:
        tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


async def test_a_lock_written_by_one_gateway_reaches_the_others_feed(
    new_store: StoreFactory,
) -> None:
    writer, reader = new_store(), new_store()
    await writer.migrate()
    view = StateView(reader, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(view.run)
        seen = view.revision
        assert view.locks_for(Identity("agent-7"), "dev") == ()
        await writer.create_lock(Lock("l1", LockKind.USER, "agent-7", "stop", "root", 0.0))
        with trio.fail_after(30):  # generous: this waits on the feed, it does not time it
            await view.wait_for_change(seen)
        assert [lock.id for lock in view.locks_for(Identity("agent-7"), "dev")] == ["l1"]
        assert view.locks_for(Identity("someone-else"), "dev") == ()
        nursery.cancel_scope.cancel()


async def test_an_unreachable_sqlite_store_is_a_typed_error() -> None:
    store = sqlite_store(Path("/nonexistent/dir/state.db"))
    with pytest.raises(StoreUnavailable, match="cannot open the state store"):
        await store.migrate()


async def test_a_new_sqlite_file_held_by_another_writer_is_waited_for(tmp_path: Path) -> None:
    """Switching a new file to WAL while another process writes it: SQLite says busy at
    once there (no busy timeout), as when gateways start at once on a new file."""
    path = tmp_path / "state.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE theirs (x)")
    releaser = threading.Timer(0.3, other.execute, ("COMMIT",))
    releaser.start()
    try:
        store = sqlite_store(path)
        await store.migrate()
        await store.create_lock(a_lock())
        assert await store.list_locks(NOW) == [a_lock()]
    finally:
        releaser.join()
        other.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_an_unreachable_postgres_store_is_a_typed_error_without_the_password() -> None:
    store = postgres_store(
        "postgresql://l7proxy:s3cret-pw@/l7proxy?host=/nonexistent&connect_timeout=1",
        timeout=1.0,
    )
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.revision()
        assert "s3cret-pw" not in str(caught.value)
    finally:
        await store.aclose()


async def test_a_view_of_an_unreachable_store_refuses_to_vouch_for_locks() -> None:
    store = sqlite_store(Path("/nonexistent/dir/state.db"))
    view = StateView(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(view.run)
        with pytest.raises(StoreUnavailable):
            view.locks_for(ALICE, "dev")
        assert view.grants_for(ALICE) == ()
        nursery.cancel_scope.cancel()


async def test_an_approval_through_one_gateway_grants_on_the_others_view(
    new_store: StoreFactory,
) -> None:
    writer, reader = new_store(), new_store()
    await writer.migrate()
    grant = Grant("g", "p", Subjects(groups=("sre",)), Subjects(users=("bob",)))
    request = create_request(grant, ALICE, id="r", reason="x", duration=3600, now=time.time())
    await writer.create_request(request)
    view = StateView(reader, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(view.run)
        seen = view.revision
        assert view.grants_for(ALICE) == ()  # pending grants nothing
        approved = await writer.update_request(
            "r",
            lambda r: review_request(
                r, grant, Identity("bob"), Verdict.APPROVE, reason="ok", now=time.time()
            ),
        )
        with trio.fail_after(30):  # generous: this waits on the feed, it does not time it
            await view.wait_for_change(seen)
        assert view.grants_for(ALICE) == (approved,)
        assert view.grants_for(Identity("bob")) == ()
        nursery.cancel_scope.cancel()
