"""The one place where aiobotocore (asyncio) meets the gateway (trio).

A private asyncio event loop runs in one worker thread, started on the first call. Trio tasks
submit coroutines to it and wait for their results without holding a thread of their own; a
cancelled trio task cancels its asyncio task. Calls are rare (credentials and tokens are cached
for minutes), so this is off the hot path. `aclose` closes the AWS clients on their own loop,
stops the loop and joins its thread.

The gateway's own AWS credentials come from botocore's standard chain: environment, shared
config and profile, web identity (IRSA), container credentials (EKS Pod Identity), instance
metadata. Botocore's exceptions propagate unchanged; callers turn them into messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import trio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

_T = TypeVar("_T")
_ClientKey = tuple[str, str, str | None]  # service, region, endpoint URL
# Time allowed for closing the clients and for the loop thread to finish.
_CLOSE_TIMEOUT = 5.0


def _client_config() -> Any:
    """Short per-attempt timeouts, botocore's standard retry mode (which backs off on
    throttling; AWS_MAX_ATTEMPTS tunes it), and a user agent that names the gateway."""
    return AioConfig(
        connect_timeout=5,
        read_timeout=10,
        retries={"mode": "standard"},
        user_agent_extra="l7proxy",
    )


class AwsBridge:
    """AWS API calls for trio tasks, through aiobotocore clients cached per endpoint."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # Everything below is touched only on the bridge's loop.
        self._session: Any = None
        self._clients: dict[_ClientKey, Any] = {}
        self._client_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    async def call(
        self,
        service: str,
        region: str,
        endpoint_url: str | None,
        operation: str,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """Run one API call, e.g. `call("sts", "us-east-1", None, "assume_role", {...})`."""

        async def run() -> dict[str, Any]:
            client = await self._client(service, region, endpoint_url)
            result: dict[str, Any] = await getattr(client, operation)(**params)
            return result

        return await self._run(run)

    async def aclose(self) -> None:
        """Close the clients, stop the loop and join its thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if self._closed or loop is None or thread is None:
            self._closed = True
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            try:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await _wait(asyncio.run_coroutine_threadsafe(self._stack.aclose(), loop))
            finally:
                loop.call_soon_threadsafe(loop.stop)
                await trio.to_thread.run_sync(thread.join, _CLOSE_TIMEOUT)

    async def _run(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        loop = self._started_loop()
        return await _wait(asyncio.run_coroutine_threadsafe(make(), loop))

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("the AWS bridge is closed")
        if self._loop is None:
            loop = asyncio.new_event_loop()
            # A daemon: an owner that forgot `aclose` must not keep the process alive.
            thread = threading.Thread(target=_run_loop, args=(loop,), name="l7proxy-aws")
            thread.daemon = True
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _client(self, service: str, region: str, endpoint_url: str | None) -> Any:
        key = (service, region, endpoint_url)
        async with self._client_lock:
            if key not in self._clients:
                if self._session is None:
                    self._session = AioSession()
                context = self._session.create_client(
                    service, region_name=region, endpoint_url=endpoint_url, config=_client_config()
                )
                self._clients[key] = await self._stack.enter_async_context(context)
            return self._clients[key]


async def _wait(future: concurrent.futures.Future[_T]) -> _T:
    """Await a future completed on another thread without tying up a trio worker thread."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    try:
        await done.wait()
    finally:
        future.cancel()  # a no-op once done; otherwise it cancels the asyncio task
    return future.result()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The bridge thread: run until stopped, then finish whatever is left, as asyncio.run does."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
