"""The gateway as a real `l7proxy serve` process, for what needs one: signals, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from tests.e2e.stack import Stack


@dataclass
class GatewayProcess:
    process: trio.Process
    log: list[dict[str, object]] = field(default_factory=list)  # its service log, as read
    ended: bool = False
    _logged: trio.Event = field(default_factory=trio.Event)

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait_for_log(
        self, event: str, *, after: int = 0, count: int = 1
    ) -> dict[str, object]:
        """The `count`th service log line from index `after` on whose `event` is `event`
        (a line per worker: `count` is the number of workers)."""
        with trio.move_on_after(60):
            while True:
                found = [line for line in self.log[after:] if line.get("event") == event]
                if len(found) >= count:
                    return found[count - 1]
                if self.ended:
                    break
                self._logged = trio.Event()
                await self._logged.wait()
        raise AssertionError(f"no {event!r} in the gateway's log: {self.log[after:]}")

    async def _read_log(self) -> None:
        buffered = b""
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            self.log += [json.loads(line) for line in lines if line.startswith(b"{")]
            self._logged.set()
        await self.process.stderr.aclose()
        self.ended = True
        self._logged.set()


async def close_process(process: trio.Process) -> None:
    """Its pipes closed (a pipe left open is a ResourceWarning later), then its exit."""
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            await pipe.aclose()
    await process.wait()


@asynccontextmanager
async def gateway_process(
    nursery: trio.Nursery, stack: Stack, *, workers: int = 1
) -> AsyncIterator[GatewayProcess]:
    """`l7proxy serve --config gateway.yaml` of `stack` (started with `in_process=False`),
    every one of its `workers` listening, their log read in `nursery`; `stack.gateway_url`
    points at it. Killed on the way out if still running."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "l7proxy", "serve", "--config", str(stack.tmp / "gateway.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    gateway = GatewayProcess(process)
    nursery.start_soon(gateway._read_log)
    try:
        listening = await gateway.wait_for_log("listening", count=workers)
        addresses = listening["addresses"]
        assert isinstance(addresses, list)
        stack.gateway_url = f"https://{addresses[0]}"
        yield gateway
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()  # its log reader closes the pipe at its end
