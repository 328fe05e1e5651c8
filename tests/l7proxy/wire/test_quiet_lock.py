"""QuietLock: one holder at a time, waiters served, cancellation honoured, and no
scheduling pass when uncontended."""

from __future__ import annotations

import trio
import trio.testing

from l7proxy.wire.quiet_lock import QuietLock


async def test_holders_never_overlap_and_every_waiter_gets_a_turn() -> None:
    lock = QuietLock()
    inside = 0
    turns: list[int] = []

    async def worker(n: int) -> None:
        nonlocal inside
        for _ in range(5):
            async with lock:
                inside += 1
                assert inside == 1
                await trio.lowlevel.checkpoint()  # let the others pile up
                inside -= 1
                turns.append(n)

    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(worker, n)
    assert sorted(turns) == sorted(list(range(6)) * 5)
    assert not lock.locked


async def test_an_uncontended_acquire_does_not_yield() -> None:
    lock = QuietLock()
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        async with lock:
            pass
        assert not ran  # `other` would have run had the acquire yielded
    assert ran


async def test_a_cancelled_waiter_leaves_the_lock_to_the_others() -> None:
    lock = QuietLock()
    got: list[str] = []

    async def waiter(name: str, scope: trio.CancelScope) -> None:
        with scope:
            async with lock:
                got.append(name)

    first, second = trio.CancelScope(), trio.CancelScope()
    async with trio.open_nursery() as nursery:
        await lock.__aenter__()
        nursery.start_soon(waiter, "first", first)
        nursery.start_soon(waiter, "second", second)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # nobody enters while it is held
        first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        await lock.__aexit__(None, None, None)
    assert got == ["second"]
    assert not lock.locked


async def test_a_release_hands_the_lock_to_the_longest_waiter() -> None:
    lock = QuietLock()
    order: list[str] = []

    async def waiter(name: str) -> None:
        async with lock:
            order.append(name)

    async with trio.open_nursery() as nursery:
        await lock.__aenter__()
        nursery.start_soon(waiter, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "second")
        await trio.testing.wait_all_tasks_blocked()
        await lock.__aexit__(None, None, None)
        # Taking it straight back, without a checkpoint, must not jump the queue.
        await lock.__aenter__()
        order.append("holder again")
        await lock.__aexit__(None, None, None)
    assert order == ["first", "second", "holder again"]
