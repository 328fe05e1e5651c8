"""A live watch is ended by the caller's token expiry or the configured maximum duration —
never by the idle or header timeouts — and the audit event says which."""

from __future__ import annotations

from pathlib import Path

import trio
import trustme

from tests.e2e.stack import Stack, start_stack, wait_for_event

READER = ("ai-agents-readonly",)
WATCH = "/k8s/dev/api/v1/namespaces/default/pods?watch=1"


async def _watch(stack: Stack, token: str) -> tuple[float, bytes]:
    """Seconds until the gateway ended the watch, and what curl received."""
    started = trio.current_time()
    result = await trio.run_process(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            str(stack.tmp / "ca.pem"),
            "-N",
            "-H",
            f"Authorization: Bearer {token}",
            f"{stack.gateway_url}{WATCH}",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return trio.current_time() - started, result.stdout


async def test_a_watch_ends_when_the_callers_token_expires(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    # Idle and header timeouts far shorter than the token's life must not cut the watch.
    limits = {"idle_timeout": 0.5, "header_read_timeout": 0.5}
    stack = await start_stack(nursery, ca, tmp_path, limits=limits)
    token = stack.token("agent-7", READER, expires_in=4)
    with trio.fail_after(20):
        elapsed, body = await _watch(stack, token)
    assert 2.5 <= elapsed <= 8
    assert body.count(b'"type":"ADDED"') == 2  # the events arrived while it lived
    event = await wait_for_event(stack, lambda e: e["verb"] == "watch")
    assert (event["ended_by"], event["status"]) == ("token expiry", 200)


async def test_a_watch_ends_at_the_maximum_stream_duration(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, limits={"max_stream_duration": 1.5})
    with trio.fail_after(20):
        elapsed, _ = await _watch(stack, stack.token("agent-7", READER))
    assert 1 <= elapsed <= 6
    event = await wait_for_event(stack, lambda e: e["verb"] == "watch")
    assert event["ended_by"] == "duration limit"
