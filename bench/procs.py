"""Processes the benchmark starts: each in its own process group, all stopped on exit;
plus readiness checks and /proc readings (RSS, CPU time) of a process tree."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

STOP_TIMEOUT = 10.0


class Processes:
    """Starts processes in new sessions so that stopping one stops its whole group
    (nginx and its workers, the gateway and its worker children)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        cmd: list[str],
        *,
        pipe_stdout: bool = False,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log,
            stderr=log,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        log.close()
        self._running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc in self._running:
            self._running.remove(proc)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Children that outlived their parent (a gateway worker) go with the group.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self) -> None:
        for proc in reversed(list(self._running)):
            self.stop(proc)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    """The first line a helper prints on stdout, parsed as JSON."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no output from {proc.args!r} within {timeout:g}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args!r} exited with {proc.wait()} before reporting")
    result: dict[str, object] = json.loads(line)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def https_get(
    port: int, path: str, context: ssl.SSLContext, token: str | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check()` until it returns true."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout:g}s (last error: {last})")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found = [pid]
    for current in found:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            found.extend(int(c) for c in children)
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
