"""Load generators and what they report: wrk (HTTP/1.1) and h2load (HTTP/2) for request
rates and latency, curl for streaming throughput.

HTTP/2 latency percentiles come from h2load's `--log-file` (one row per request: start
time, status, microseconds until the end of the response); h2load's own summary only has
min/max/mean/sd. Percentiles are nearest-rank over the successful requests of the run.
Upgrades (exec / port-forward) use `upgraded_stream` below: a plain ssl socket.
HTTP/1.1 uses wrk, whose `--latency` prints p50/p99. h2load's HTTP/1.1 parser records a
response's status only from a non-empty reason phrase: the gateway sends it
(`HTTP/1.1 200 OK`), which `h2load_h1_successes` checks before the load runs.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_FINISHED = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_REQUESTS = re.compile(r"(\d+) requests in ")
_WRK_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    succeeded: int
    failed: int  # failed, errored or timed out, or any non-2xx status

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def h2load_h1_successes(url: str, *, token: str, requests: int) -> int:
    """How many of `requests` HTTP/1.1 GETs h2load (`--h1`) counts as 2xx successes."""
    cmd = [
        "h2load",
        "--h1",
        "-n",
        str(requests),
        "-c",
        "1",
        "-H",
        f"authorization: Bearer {token}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    counted, status = _REQUESTS.search(done.stdout), _STATUS.search(done.stdout)
    if done.returncode != 0 or not (counted and status):
        raise RuntimeError(f"h2load --h1 failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return min(int(counted[4]), int(status[1]))


def h2load(
    url: str,
    *,
    token: str,
    h1: bool,
    connections: int,
    streams: int,
    duration: float,
    warmup: float,
    log_file: Path,
) -> LoadResult:
    """One timed h2load run (`-D`, after `--warm-up-time`)."""
    cmd = [
        "h2load",
        *(["--h1"] if h1 else []),
        "-c", str(connections),
        "-m", str(streams),
        "-t", "1",
        "-D", f"{duration:g}",
        "--warm-up-time", f"{warmup:g}",
        "-H", f"authorization: Bearer {token}",
        "--log-file", str(log_file),
        url,
    ]  # fmt: skip
    log_file.unlink(missing_ok=True)  # h2load appends to an existing log
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + warmup + 60, check=False
    )
    out = done.stdout
    finished, requests, status = _FINISHED.search(out), _REQUESTS.search(out), _STATUS.search(out)
    if done.returncode != 0 or not (finished and requests and status):
        raise RuntimeError(f"h2load failed ({done.returncode}):\n{out}\n{done.stderr}")
    latencies = []
    for row in log_file.read_text().splitlines():
        fields = row.split("\t")
        if len(fields) >= 3 and fields[1].startswith("2"):
            latencies.append(int(fields[2]) / 1000)
    if not latencies:
        raise RuntimeError(f"h2load logged no successful request:\n{out}")
    succeeded = int(requests[4])
    failed = int(requests[5]) + int(requests[6]) + int(requests[7])
    non_2xx = sum(int(n) for n in status.groups()[1:])
    return LoadResult(
        rps=float(finished[1]),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        succeeded=succeeded - non_2xx,
        failed=failed + non_2xx,
    )


def wrk(url: str, *, token: str, connections: int, duration: float, warmup: float) -> LoadResult:
    """A warm-up run (discarded), then one timed wrk run over HTTP/1.1 keep-alive."""
    results = []
    for seconds in (warmup, duration):
        cmd = [
            "wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--latency", "-H", f"authorization: Bearer {token}", url,
        ]  # fmt: skip
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        results.append(done)
    out = results[-1].stdout
    rps, requests = _WRK_RPS.search(out), _WRK_REQUESTS.search(out)
    pcts = {p: float(v) * _MS_PER_UNIT[unit] for p, v, unit in _WRK_PCT.findall(out)}
    if results[-1].returncode != 0 or not (rps and requests) or set(pcts) != {"50", "99"}:
        raise RuntimeError(f"wrk failed ({results[-1].returncode}):\n{out}\n{results[-1].stderr}")
    non_2xx = _WRK_NON_2XX.search(out)
    socket_errors = _WRK_SOCKET_ERRORS.search(out)
    failed = (int(non_2xx[1]) if non_2xx else 0) + (
        sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    )
    return LoadResult(
        rps=float(rps[1]),
        p50_ms=pcts["50"],
        p99_ms=pcts["99"],
        succeeded=int(requests[1]) - (int(non_2xx[1]) if non_2xx else 0),
        failed=failed,
    )


@dataclass(frozen=True)
class StreamResult:
    mb_per_s: float
    bytes: int
    http_version: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def curl_stream(url: str, *, token: str, cafile: Path, expected_bytes: int) -> StreamResult:
    """Download `url` to /dev/null; throughput is curl's average download speed."""
    cmd = [
        "curl", "-sS", "--cacert", str(cafile), "--max-time", "180",
        "-H", f"authorization: Bearer {token}",
        "-o", "/dev/null",
        "-w", "%{http_code} %{size_download} %{speed_download} %{http_version}",
        url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=200, check=False)
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 4 or fields[0] != "200":
        raise RuntimeError(f"curl {url} failed ({done.returncode}): {done.stdout} {done.stderr}")
    size = int(fields[1])
    if size != expected_bytes:
        raise RuntimeError(f"curl {url}: got {size} bytes, expected {expected_bytes}")
    return StreamResult(
        mb_per_s=float(fields[2]) / 1e6, bytes=size, http_version=f"HTTP/{fields[3]}"
    )


@dataclass(frozen=True)
class UpgradeResult:
    mb_per_s: float
    bytes: int
    handshake_ms: float  # request sent until the 101 head arrived

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def upgraded_stream(
    port: int, path: str, *, token: str, context: ssl.SSLContext, expected_bytes: int
) -> UpgradeResult:
    """Ask for `Upgrade: bench` on an HTTP/1.1 TLS connection, expect `101`, then read
    `expected_bytes` the upstream sends after it. Throughput counts from the 101 to the last
    byte (TLS handshake and upgrade handshake excluded)."""
    buf = bytearray(1024 * 1024)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port), timeout=180) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            request = (
                f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                f"authorization: Bearer {token}\r\nconnection: Upgrade\r\nupgrade: bench\r\n\r\n"
            )
            sent = time.perf_counter()
            tls.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                n = tls.recv_into(view)
                if not n:
                    raise RuntimeError(f"closed before the response head: {head!r}")
                head += bytes(view[:n])
            switched = time.perf_counter()
            head, _, rest = head.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {head.decode(errors='replace')[:200]}")
            received = len(rest)
            while received < expected_bytes:
                n = tls.recv_into(view)
                if not n:
                    break
                received += n
            done = time.perf_counter()
    if received != expected_bytes:
        raise RuntimeError(f"upgraded stream: {received} bytes, expected {expected_bytes}")
    return UpgradeResult(
        mb_per_s=received / 1_000_000 / (done - switched),
        bytes=received,
        handshake_ms=(switched - sent) * 1000,
    )
