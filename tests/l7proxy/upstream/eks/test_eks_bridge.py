"""The asyncio bridge: calls from trio, cancellation, and a clean shutdown."""

from __future__ import annotations

import pytest
import trio
from botocore.exceptions import EndpointConnectionError

from l7proxy.upstream.eks.aws_bridge import AwsBridge
from tests.l7proxy.upstream.eks.conftest import free_port
from tests.l7proxy.upstream.eks.fakes import FakeSts


async def test_calls_run_and_the_thread_ends_on_close(moto_url: str) -> None:
    bridge = AwsBridge()
    answer = await bridge.call("sts", "us-east-1", moto_url, "get_caller_identity", {})
    assert answer["Account"] == "123456789012"
    thread = bridge._thread
    assert thread is not None and thread.is_alive()
    await bridge.aclose()
    assert not thread.is_alive()
    await bridge.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await bridge.call("sts", "us-east-1", moto_url, "get_caller_identity", {})


async def test_close_without_calls_starts_nothing() -> None:
    bridge = AwsBridge()
    await bridge.aclose()
    assert bridge._thread is None


async def test_botocore_errors_reach_trio_unchanged() -> None:
    bridge = AwsBridge()
    try:
        with pytest.raises(EndpointConnectionError):
            await bridge.call(
                "sts", "us-east-1", f"http://127.0.0.1:{free_port()}", "get_caller_identity", {}
            )
    finally:
        await bridge.aclose()


async def test_cancelling_a_trio_task_cancels_its_call(fake_sts: FakeSts) -> None:
    fake_sts.delay = 3.0
    bridge = AwsBridge()
    params = {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s1"}
    try:
        with trio.move_on_after(0.3) as scope:
            await bridge.call("sts", "us-east-1", fake_sts.url, "assume_role", params)
        assert scope.cancelled_caught
    finally:
        with trio.fail_after(2):  # closing does not wait for the abandoned call
            await bridge.aclose()
