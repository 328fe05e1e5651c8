"""`make soak`: mixed kubectl traffic through the gateway for a long while, per minute.

    .venv/bin/python bench/soak.py [--minutes 30] [--workers 1] [--keep]
                                   [--malloc jemalloc|glibc] [--tracemalloc]
                                   [--malloc-arena-max N]

Starts the sandbox cluster and the gateway (`l7proxy serve`, OIDC + policy + file audit)
as processes, and a development OIDC issuer in this one; then a few clients run the real
kubectl against the gateway until the time is up: gets, watches that come and go, execs,
port-forwards, annotations (writes the watches see), short-lived tokens that expire under a
watch, an IdP key rotation (later one that drops the old keys) and a cluster restart on the
same port. Each minute it records the kubectl operations and their outcomes, the gateway's
requests and 5xx answers (from its audit log), its error log lines, and the RSS and open
file descriptors of its processes (from /proc). The gateway's allocator is jemalloc, preloaded
as the image in Containerfile does (`--malloc glibc` for the C library's own). The gateway
runs under bench/gateway_probe.py,
which on SIGUSR2 reports what its memory is made of (live Python objects, glibc malloc in use
and free; with `--tracemalloc` the traced heap and a snapshot, whose growth after warm-up
is reported by allocation site). Writes bench/results/soak.json and bench/SOAK.md. Every
process it starts is stopped on exit.

An outcome is *expected* when the run made it so (a cluster restart in progress, a token
that was let expire); anything else that fails is *unexpected*, with a sample of messages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import fixtures
import procs
import trio

from l7proxy.tools.demo import demo_policies
from l7proxy.tools.devissuer import DevIssuer

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
L7PROXY = ROOT / ".venv" / "bin" / "l7proxy"
KUBECTL = "/usr/bin/kubectl"
CONNECTION = "soak"
AGENT = ("agent@example.com", ("ai-agents-readonly",))
ADMIN = ("admin@example.com", ("platform-admins",))
KUBECTL_TIMEOUT = 60.0
SHORT_TOKEN = 20.0  # lifetime of the tokens let expire under a watch, in seconds
TOKEN_LEEWAY = 30.0  # the gateway still accepts a token this long past its `exp`
RESTART_GRACE = 2.0  # after the restarted cluster answers: failures are unexpected again
SAMPLE_LIMIT = 30  # unexpected failure messages kept
MINUTE = 60.0
WARM_UP = 2  # the minute after which memory should stay flat
PROBE_TIMEOUT = 120.0  # for the gateway's memory reading (a tracemalloc snapshot is slow)
TOP_SITES = 15  # allocation sites reported with --tracemalloc


@dataclass
class Minute:
    """What one minute of the run saw."""

    index: int
    operations: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    errors_5xx: int = 0
    unexpected_5xx: int = 0  # answered outside a cluster restart
    error_log_lines: int = 0
    rss_mib: float = 0.0
    fds: int = 0
    probe: dict[str, Any] = field(default_factory=dict)  # gateway_probe.py's reading
    events: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "minute": self.index,
            "operations": sum(self.operations.values()),
            "by_kind": dict(self.operations),
            "unexpected": sum(self.unexpected.values()),
            "unexpected_by_kind": dict(self.unexpected),
            "expected": sum(self.expected.values()),
            "expected_by_reason": dict(self.expected),
            "gateway_requests": self.requests,
            "gateway_5xx": self.errors_5xx,
            "gateway_5xx_unexpected": self.unexpected_5xx,
            "gateway_error_log_lines": self.error_log_lines,
            "rss_mib": round(self.rss_mib, 1),
            "open_fds": self.fds,
            **{key: self.probe[key] for key in PROBE_FIGURES if key in self.probe},
            "events": self.events,
        }


# From each probe reading, per minute: live objects the gc tracks (outside the start-up set
# the gateway freezes), TLS sessions its contexts cache, glibc malloc in use and free
# (allocator-held, counted in RSS), Python's allocator arenas, the RSS of glibc's main heap
# and of other anonymous memory, the traced Python heap (with --tracemalloc).
PROBE_FIGURES = (
    "gc_objects",
    "ssl_cached_sessions",
    "malloc_in_use_mib",
    "malloc_free_mib",
    "pymalloc_arenas",
    "heap_rss_mib",
    "anon_rss_mib",
    "traced_mib",
)


class Failure(Exception):
    """An operation did not do what it should."""


@dataclass(frozen=True)
class Diagnosis:
    """How the gateway allocates and its memory is looked at: jemalloc preloaded (or glibc's
    malloc), tracemalloc on, glibc's arena count."""

    jemalloc: Path | None = None
    tracemalloc: bool = False
    malloc_arena_max: int | None = None


def jemalloc_library() -> Path:
    """Debian's libjemalloc2, the allocator the image preloads (Containerfile)."""
    found = sorted(Path("/usr/lib").glob("*-linux-gnu/libjemalloc.so.2"))
    if not found:
        raise SystemExit(
            "soak: --malloc jemalloc needs Debian's libjemalloc2 "
            "(`make soak` installs it; or run with --malloc glibc)"
        )
    return found[0]


class Soak:
    def __init__(
        self,
        minutes: float,
        workers: int,
        tmp: Path,
        processes: procs.Processes,
        diagnosis: Diagnosis = Diagnosis(),
    ):
        self.minutes = minutes
        self.workers = workers
        self.diagnosis = diagnosis
        self.probe_dir = tmp / "probe"
        self.probes: list[dict[str, Any]] = []  # the gateway's readings, 0 before any traffic
        self.tmp = tmp
        self.procs = processes
        self.certs = fixtures.make_certs(tmp)
        self.tls = ssl.create_default_context(cafile=str(self.certs.ca))
        self.issuer = DevIssuer()
        self.ports: dict[str, int] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.cluster: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.end = 0.0
        self.log: list[Minute] = []
        self.samples: list[str] = []
        # While the cluster is being restarted (and RESTART_GRACE after), failures are
        # expected; `restarts` counts restarts so a watch can tell one happened under it.
        self.restarting = False
        self.restart_done_at = -1.0
        self.restarts = 0
        self.restart_windows: list[tuple[float, float]] = []  # wall clock, grace included
        self.baseline = (0.0, 0)  # gateway RSS (MiB) and open fds before any traffic
        self._audit_offset = 0
        self._gateway_log_offset = 0

    # -- the stack ------------------------------------------------------------------------
    async def start(self, nursery: trio.Nursery) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.certs.cert), str(self.certs.key))
        await nursery.start(partial(self.issuer.serve, host="127.0.0.1", ssl_context=context))
        self.ports["gateway"] = procs.free_port()
        await trio.to_thread.run_sync(self._start_cluster, 0)
        config = fixtures.gateway_conf(
            self.tmp,
            CONNECTION,
            port=self.ports["gateway"],
            upstream_port=self.ports["cluster"],
            issuer=self.issuer.issuer,
            workers=self.workers,
            policies=demo_policies(CONNECTION),
        )
        probe = [str(PYTHON), str(BENCH / "gateway_probe.py"), str(self.probe_dir)]
        if self.diagnosis.tracemalloc:
            probe.append("--tracemalloc")
        env = dict(os.environ)
        if self.diagnosis.jemalloc is not None:
            env["LD_PRELOAD"] = str(self.diagnosis.jemalloc)
        if self.diagnosis.malloc_arena_max is not None:
            env["MALLOC_ARENA_MAX"] = str(self.diagnosis.malloc_arena_max)
        self.gateway = self.procs.start(
            "gateway", [*probe, "serve", "--config", str(config)], cwd=self.tmp, env=env
        )
        await trio.to_thread.run_sync(self._wait_for_gateway)

    def _start_cluster(self, port: int) -> None:
        self.cluster = self.procs.start(
            "sandbox",
            [str(PYTHON), str(BENCH / "sandbox_server.py"), "--cert", str(self.certs.cert),
             "--key", str(self.certs.key), "--token", fixtures.CLUSTER_TOKEN,
             "--port", str(port)],
            pipe_stdout=True,
        )  # fmt: skip
        self.ports["cluster"] = int(str(procs.read_json_line(self.cluster, 30)["port"]))

    def _wait_for_gateway(self) -> None:
        log = self.tmp / "gateway.log"
        gateway = self.gateway
        assert gateway is not None

        def ready() -> bool:
            if gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited: {log.read_text()[-2000:]}")
            port = self.ports["gateway"]
            return procs.https_get(port, "/readyz", self.tls)[0] == 200

        procs.wait_until(ready, 120 if self.diagnosis.tracemalloc else 30, "the gateway")

    # -- outcomes -------------------------------------------------------------------------
    @property
    def minute_count(self) -> int:
        return max(1, round(self.minutes))

    @property
    def minute(self) -> Minute:
        """The minute now; what ends after the last one counts in the last one."""
        index = int((trio.current_time() - self.started) // MINUTE)
        return self._minute_at(min(index, self.minute_count - 1))

    def _minute_at(self, index: int) -> Minute:
        while len(self.log) <= index:
            self.log.append(Minute(len(self.log)))
        return self.log[index]

    def _expected_now(self) -> str | None:
        if self.restarting or trio.current_time() < self.restart_done_at + RESTART_GRACE:
            return "cluster restart"
        return None

    async def run_op(self, kind: str, op: Callable[[], Awaitable[str | None]]) -> None:
        """Run one operation: it returns None (done), or why its failure was expected;
        it raises `Failure` for anything else."""
        restarts = self.restarts
        try:
            with trio.fail_after(KUBECTL_TIMEOUT * 2):
                reason = await op()
        except (Failure, trio.TooSlowError) as exc:
            reason = self._expected_now() or (
                "cluster restart" if self.restarts != restarts else None
            )
            if reason is None:
                minute = self.minute
                minute.unexpected[kind] += 1
                if len(self.samples) < SAMPLE_LIMIT:
                    elapsed = trio.current_time() - self.started
                    self.samples.append(f"{elapsed:7.1f}s {kind}: {str(exc)[:300]}")
        minute = self.minute
        minute.operations[kind] += 1
        if reason is not None:
            minute.expected[reason] += 1

    # -- kubectl --------------------------------------------------------------------------
    async def kubeconfig(
        self, name: str, who: tuple[str, tuple[str, ...]], lifetime: float
    ) -> Path:
        """Client `name`'s kubeconfig, its token file holding a freshly minted token (signed
        with the issuer's current key). kubectl itself writes the kubeconfig, once."""
        home = self.tmp / "clients" / name
        path = home / "kubeconfig"
        token_file = home / "token"
        if not path.exists():
            home.mkdir(parents=True)
            server = f"https://127.0.0.1:{self.ports['gateway']}/k8s/{CONNECTION}"
            for args in (
                (
                    "set-cluster",
                    "gw",
                    f"--server={server}",
                    f"--certificate-authority={self.certs.ca}",
                ),
                ("set", f"users.{name}.tokenFile", str(token_file)),
                ("set-context", "ctx", "--cluster=gw", f"--user={name}"),
                ("use-context", "ctx"),
            ):
                argv = [KUBECTL, "--kubeconfig", str(path), "config", *args]
                await trio.run_process(argv, capture_stdout=True, check=True)
        fresh = home / "token.new"
        fresh.write_text(self.issuer.mint(who[0], groups=who[1], expires_in=lifetime))
        fresh.replace(token_file)
        return path

    @staticmethod
    def argv(kubeconfig: Path, *args: str) -> list[str]:
        cache = kubeconfig.parent / "cache"
        return ["nice", KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args]

    @staticmethod
    def env(kubeconfig: Path) -> dict[str, str]:
        return {**os.environ, "HOME": str(kubeconfig.parent)}

    async def kubectl(self, kubeconfig: Path, *args: str, stdin: bytes = b"") -> bytes:
        """kubectl's stdout; `Failure` with its stderr when it fails."""
        with trio.move_on_after(KUBECTL_TIMEOUT) as scope:
            result = await trio.run_process(
                self.argv(kubeconfig, *args),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                stdin=stdin,
                env=self.env(kubeconfig),
            )
        if scope.cancelled_caught:
            raise Failure(f"kubectl {' '.join(args)}: no answer within {KUBECTL_TIMEOUT:g}s")
        if result.returncode != 0:
            raise Failure(f"kubectl {' '.join(args)}: {result.stderr.decode(errors='replace')}")
        return bytes(result.stdout)

    # -- the clients ----------------------------------------------------------------------
    async def _until_end(
        self, pause: tuple[float, float], step: Callable[[], Awaitable[None]]
    ) -> None:
        while trio.current_time() < self.end:
            await step()
            await trio.sleep(random.uniform(*pause))

    async def getter(self, name: str) -> None:
        reads = [
            ("get", "pods", "-A", "-o", "name"),
            ("get", "jobs", "-A"),
            ("get", "services", "-A"),
            ("get", "configmaps", "-n", "default", "-o", "json"),
            ("get", "namespaces"),
            ("get", "events", "-n", "default"),
            ("auth", "can-i", "list", "pods"),
        ]

        async def step() -> None:
            args = random.choice(reads)

            async def op() -> None:
                out = await self.kubectl(await self.kubeconfig(name, AGENT, 600), *args)
                if not out.strip():
                    raise Failure(f"kubectl {' '.join(args)}: empty output")

            await self.run_op("get", op)

        await self._until_end((0.3, 1.0), step)

    async def writer(self) -> None:
        count = 0

        async def step() -> None:
            nonlocal count
            count += 1

            async def op() -> None:
                kc = await self.kubeconfig("writer", ADMIN, 600)
                await self.kubectl(kc, "annotate", "pod", "web-1", f"soak={count}", "--overwrite")

            await self.run_op("annotate", op)

        await self._until_end((2.0, 4.0), step)

    async def watcher(self) -> None:
        async def step() -> None:
            await self.run_op("watch", partial(self._watch, random.uniform(5, 40)))

        await self._until_end((0.5, 2.0), step)

    async def _watch(self, seconds: float) -> None:
        """A watch that must still be open (and have listed the pods) after `seconds`."""
        kc = await self.kubeconfig("watcher", AGENT, 600)
        out = await self._run_for(kc, seconds, "get", "pods", "-n", "default", "-w")
        if b"web-1" not in out:
            raise Failure("the watch did not list web-1")

    async def _run_for(self, kc: Path, seconds: float, *args: str) -> bytes:
        """Run a kubectl that should keep running for `seconds`, then stop it; its stdout.
        `Failure` if it ended before."""
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    self.argv(kc, *args),
                    env=self.env(kc),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                )
            )
            out = bytearray()
            err = bytearray()
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(_collect, process.stdout, out)
            nursery.start_soon(_collect, process.stderr, err)
            with trio.move_on_after(seconds) as running:
                await process.wait()
            process.terminate()
        if not running.cancelled_caught:
            raise Failure(
                f"kubectl {' '.join(args)} ended after less than {seconds:.0f}s "
                f"(exit {process.returncode}): {err.decode(errors='replace')[-300:]}"
            )
        return bytes(out)

    async def expiring_watcher(self) -> None:
        async def step() -> None:
            await self.run_op("token expiry", self._watch_until_expiry)

        await self._until_end((10.0, 20.0), step)

    async def _watch_until_expiry(self) -> str | None:
        """A watch on a token about to expire ends when it does (not before, not much
        later), and the token is then refused with 401."""
        kc = await self.kubeconfig("expiring", AGENT, SHORT_TOKEN)
        started = trio.current_time()
        argv = self.argv(kc, "get", "pods", "-n", "default", "-w")
        with trio.move_on_after(SHORT_TOKEN + 30) as scope:
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False, env=self.env(kc)
            )
        if scope.cancelled_caught:
            raise Failure("a watch outlived its token by 30 s")
        lived = trio.current_time() - started
        if lived < SHORT_TOKEN - 2 or b"web-1" not in result.stdout:
            raise Failure(
                f"a watch on a {SHORT_TOKEN:g}s token ended after {lived:.1f}s: "
                f"{result.stderr.decode(errors='replace')[-300:]}"
            )
        # Past `exp` by the gateway's clock-skew leeway and the second `exp` is counted in.
        await trio.sleep_until(started + SHORT_TOKEN + TOKEN_LEEWAY + 2)
        refused = await trio.run_process(
            self.argv(kc, "get", "pods", "-n", "default"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=self.env(kc),
        )
        if refused.returncode == 0 or b"Unauthorized" not in refused.stderr:
            raise Failure(f"an expired token was not refused: {refused.stderr[-300:]!r}")
        return "token expired"

    async def executor(self) -> None:
        count = 0

        async def step() -> None:
            nonlocal count
            count += 1
            word = f"soak-{count}"

            async def op() -> None:
                kc = await self.kubeconfig("exec", ADMIN, 600)
                out = await self.kubectl(kc, "exec", "web-1", "--", "echo", word)
                if out.strip() != word.encode():
                    raise Failure(f"exec echoed {out[:100]!r}, not {word!r}")

            await self.run_op("exec", op)

        await self._until_end((2.0, 5.0), step)

    async def forwarder(self) -> None:
        async def step() -> None:
            await self.run_op("port-forward", self._port_forward)

        await self._until_end((5.0, 10.0), step)

    async def _port_forward(self) -> None:
        """`kubectl port-forward pod/web-1`, and 100 kB echoed back through it."""
        kc = await self.kubeconfig("forward", ADMIN, 600)
        failure: Failure | None = None
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    self.argv(kc, "port-forward", "pod/web-1", ":8080"),
                    env=self.env(kc),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
            )
            try:
                await self._echo_through(process)
            except Failure as exc:
                failure = exc  # raised outside the nursery: no exception group
            finally:
                process.terminate()
        if failure is not None:
            raise failure

    @staticmethod
    async def _echo_through(process: trio.Process) -> None:
        assert process.stdout is not None
        out = b""
        with trio.move_on_after(KUBECTL_TIMEOUT) as scope:
            while b"Forwarding from 127.0.0.1:" not in out:
                data = await process.stdout.receive_some()
                if not data:
                    raise Failure("port-forward ended before it listened")
                out += data
            port = int(out.split(b"Forwarding from 127.0.0.1:")[1].split(b" ")[0])
            conn = await trio.open_tcp_stream("127.0.0.1", port)
            async with conn:
                payload = os.urandom(100_000)
                await conn.send_all(payload)
                echoed = b""
                while len(echoed) < len(payload):
                    data = await conn.receive_some()
                    if not data:
                        raise Failure(f"port-forward echoed {len(echoed)} of {len(payload)} bytes")
                    echoed += data
                if echoed != payload:
                    raise Failure("port-forward echoed other bytes")
        if scope.cancelled_caught:
            raise Failure("port-forward did not echo within the time allowed")

    # -- the run's events -----------------------------------------------------------------
    async def events(self) -> None:
        """A key rotation at 30% of the run, a cluster restart at 50%, and a rotation that
        drops the old keys at 70%."""
        total = self.end - self.started
        for at, what in ((0.3, "rotate"), (0.5, "restart"), (0.7, "rotate, drop old keys")):
            await trio.sleep_until(self.started + total * at)
            if what == "restart":
                await self.restart_cluster()
            else:
                kid = self.issuer.rotate(drop_old=what.endswith("keys"))
                self.minute.events.append(f"IdP key {what} ({kid})")

    async def restart_cluster(self) -> None:
        self.restarting = True
        self.restarts += 1
        started = trio.current_time()
        self.restart_windows.append((time.time(), math.inf))
        cluster = self.cluster
        assert cluster is not None
        await trio.to_thread.run_sync(self.procs.stop, cluster)
        await trio.to_thread.run_sync(self._start_cluster, self.ports["cluster"])
        self.restarting = False
        self.restart_done_at = trio.current_time()
        self.restart_windows[-1] = (self.restart_windows[-1][0], time.time() + RESTART_GRACE)
        took = self.restart_done_at - started
        self.minute.events.append(f"cluster restart ({took:.1f}s down)")

    # -- per-minute readings --------------------------------------------------------------
    async def sampler(self) -> None:
        """Gateway readings at the start and at the end of each minute."""
        self.baseline = self._readings()
        await self._probe()
        for index in range(self.minute_count):
            await trio.sleep_until(self.started + (index + 1) * MINUTE)
            self._fill(self._minute_at(index))
            self._minute_at(index).probe = await self._probe()

    async def _probe(self) -> dict[str, Any]:
        """The gateway's memory reading (its first process only, when there are workers)."""
        assert self.gateway is not None
        readings = self.probe_dir / "readings.jsonl"
        self.gateway.send_signal(signal.SIGUSR2)
        with trio.fail_after(PROBE_TIMEOUT):
            while True:
                lines = readings.read_text().splitlines() if readings.exists() else []
                if len(lines) > len(self.probes) and lines[-1].endswith("}"):
                    break
                await trio.sleep(0.2)
        self.probes.append(json.loads(lines[len(self.probes)]))
        return self.probes[-1]

    def _readings(self) -> tuple[float, int]:
        assert self.gateway is not None
        rss = fds = 0
        for pid in procs.tree(self.gateway.pid):
            try:
                rss += procs.rss_kib(pid)
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
        return rss / 1024, fds

    def _fill(self, minute: Minute) -> None:
        minute.rss_mib, minute.fds = self._readings()
        with (self.tmp / f"audit-{CONNECTION}.jsonl").open("rb") as audit:
            audit.seek(self._audit_offset)
            data = audit.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._audit_offset += len(complete)
        for line in complete.splitlines():
            event = json.loads(line)
            if "type" in event:
                continue  # session events: the request they belong to is counted
            minute.requests += 1
            if int(event.get("status") or 0) >= 500:
                minute.errors_5xx += 1
                ts = datetime.datetime.fromisoformat(event["ts"]).timestamp()
                if not any(start <= ts <= end for start, end in self.restart_windows):
                    minute.unexpected_5xx += 1
        with (self.tmp / "gateway.log").open("rb") as log:
            log.seek(self._gateway_log_offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._gateway_log_offset += len(complete)
        minute.error_log_lines += sum(
            1 for line in complete.splitlines() if b'"level": "error"' in line
        )

    # -- the run --------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            await self.start(nursery)
            self.started = trio.current_time()
            self.end = self.started + self.minute_count * MINUTE
            async with trio.open_nursery() as clients:
                clients.start_soon(self.sampler)
                clients.start_soon(self.events)
                for name in ("getter-1", "getter-2"):
                    clients.start_soon(self.getter, name)
                for client in (
                    self.writer,
                    self.watcher,
                    self.expiring_watcher,
                    self.executor,
                    self.forwarder,
                ):
                    clients.start_soon(client)
            nursery.cancel_scope.cancel()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        minutes = [self._minute_at(i).as_json() for i in range(self.minute_count)]
        warm = minutes[min(WARM_UP, len(minutes) - 1)]
        figures = ("rss_mib", *PROBE_FIGURES)
        return {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": self.minutes,
            "workers": self.workers,
            "cpus": os.cpu_count(),
            "kubectl": subprocess.run(
                [KUBECTL, "version", "--client", "-o", "json"],
                capture_output=True,
                check=False,
            ).stdout.decode(),
            "start": {"rss_mib": round(self.baseline[0], 1), "open_fds": self.baseline[1]},
            "totals": {
                "operations": sum(m["operations"] for m in minutes),
                "unexpected": sum(m["unexpected"] for m in minutes),
                "expected": sum(m["expected"] for m in minutes),
                "gateway_requests": sum(m["gateway_requests"] for m in minutes),
                "gateway_5xx": sum(m["gateway_5xx"] for m in minutes),
                "gateway_5xx_unexpected": sum(m["gateway_5xx_unexpected"] for m in minutes),
                "gateway_error_log_lines": sum(m["gateway_error_log_lines"] for m in minutes),
                "rss_mib_after_warmup": warm["rss_mib"],
                "rss_mib_max": max(m["rss_mib"] for m in minutes),
                "rss_mib_last": minutes[-1]["rss_mib"],
                "open_fds_max": max(m["open_fds"] for m in minutes),
                "open_fds_last": minutes[-1]["open_fds"],
            },
            "growth_after_warmup": {
                key: _growth([m[key] for m in minutes]) for key in figures if key in minutes[0]
            },
            "allocator": "glibc" if self.diagnosis.jemalloc is None else "jemalloc",
            "malloc_arena_max": self.diagnosis.malloc_arena_max,
            "types_growth_after_warmup": self._types_growth(),
            "allocation_growth_after_warmup": (
                _allocation_growth(self.probe_dir, WARM_UP + 1, len(self.probes) - 1)
                if self.diagnosis.tracemalloc and len(self.probes) > WARM_UP + 2
                else None
            ),
            "per_minute": minutes,
            "unexpected_samples": self.samples,
        }

    def _types_growth(self) -> dict[str, int]:
        """The object types whose count grew most from the warm-up minute to the end."""
        if len(self.probes) <= WARM_UP + 2:
            return {}
        warm, last = self.probes[WARM_UP + 1]["types"], self.probes[-1]["types"]
        # A type missing from a reading had fewer than gateway_probe.TYPE_FLOOR objects.
        grown = Counter({t: n - warm.get(t, 0) for t, n in last.items()})
        return {t: n for t, n in grown.most_common(TOP_SITES) if n > 0}


def _growth(values: list[float]) -> dict[str, float] | None:
    """How much a figure rose per minute from the warm-up minute to the last one, and in
    the second half of the run alone: the figures as measured, nothing trimmed."""
    if len(values) <= WARM_UP + 1:
        return None
    half = len(values) // 2
    return {
        "per_minute": round((values[-1] - values[WARM_UP]) / (len(values) - 1 - WARM_UP), 3),
        "per_minute_second_half": round((values[-1] - values[half]) / (len(values) - 1 - half), 3),
    }


def _allocation_growth(directory: Path, first: int, last: int) -> dict[str, list[dict[str, Any]]]:
    """What tracemalloc saw grow between two snapshots: by source line and by traceback."""
    import tracemalloc

    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    old, new = (
        tracemalloc.Snapshot.load(str(directory / f"{index:03d}.snapshot")).filter_traces(ignore)
        for index in (first, last)
    )

    def site(frame: tracemalloc.Frame) -> str:
        name = frame.filename.partition("site-packages/")[2] or frame.filename
        return f"{name.removeprefix(str(ROOT) + '/')}:{frame.lineno}"

    def top(key: str, frames: int) -> list[dict[str, Any]]:
        stats = sorted(new.compare_to(old, key), key=lambda s: s.size_diff, reverse=True)
        return [
            {
                "kib": round(stat.size_diff / 1024, 1),
                "blocks": stat.count_diff,
                "kib_now": round(stat.size / 1024, 1),
                "at": [site(f) for f in list(stat.traceback)[-frames:]],
            }
            for stat in stats[:TOP_SITES]
        ]

    return {"by_line": top("lineno", 1), "by_traceback": top("traceback", 8)}


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while data := await stream.receive_some():
        into += data


def write_markdown(result: dict[str, Any], path: Path) -> None:
    totals = result["totals"]
    lines = [
        "# Soak",
        "",
        f"`make soak` on {result['date']}: {result['minutes']:g} minutes of mixed kubectl "
        f"traffic through the gateway (`workers: {result['workers']}`, "
        f"{result['allocator']} malloc, {result['cpus']} "
        "shared CPUs, everything under `nice`) in front of the sandbox cluster. "
        "Written by bench/soak.py; the figures are in bench/results/soak.json.",
        "",
        f"- kubectl operations: {totals['operations']}, **unexpected failures: "
        f"{totals['unexpected']}**, expected ones: {totals['expected']} "
        "(a cluster restart under way, tokens let expire)",
        f"- gateway requests: {totals['gateway_requests']}, of them 5xx: "
        f"{totals['gateway_5xx']} ({totals['gateway_5xx_unexpected']} outside the cluster "
        f"restart and the {RESTART_GRACE:g} s after it); error lines in the gateway's log: "
        f"{totals['gateway_error_log_lines']}",
        f"- gateway RSS: {result['start']['rss_mib']} MiB at start, "
        f"{totals['rss_mib_after_warmup']} MiB after warm-up (minute 2), "
        f"{totals['rss_mib_max']} MiB at most, {totals['rss_mib_last']} MiB at the end",
        f"- open file descriptors: {result['start']['open_fds']} at start, "
        f"{totals['open_fds_max']} at most, {totals['open_fds_last']} at the end",
        *_growth_lines(result),
        "",
    ]
    figures = [key for key in PROBE_FIGURES if key in result["per_minute"][0]]
    lines += [
        "| minute | operations | unexpected | expected | gateway requests | 5xx (unexpected) "
        "| error log lines | RSS MiB | open fds | "
        + "".join(f"{FIGURE_NAMES[key]} | " for key in figures)
        + "events |",
        "| ---: " * (9 + len(figures)) + "| --- |",
    ]
    for m in result["per_minute"]:
        lines.append(
            f"| {m['minute']} | {m['operations']} | {m['unexpected']} | {m['expected']} | "
            f"{m['gateway_requests']} | {m['gateway_5xx']} ({m['gateway_5xx_unexpected']}) | "
            f"{m['gateway_error_log_lines']} | "
            f"{m['rss_mib']} | {m['open_fds']} | "
            + "".join(f"{m[key]} | " for key in figures)
            + f"{'; '.join(m['events'])} |"
        )
    if result["types_growth_after_warmup"]:
        grown = ", ".join(f"{t} +{n}" for t, n in result["types_growth_after_warmup"].items())
        lines += ["", f"Live objects that grew most after warm-up, by type: {grown}."]
    sites = result["allocation_growth_after_warmup"]
    if sites:
        lines += ["", "tracemalloc, growth after warm-up by source line:", ""]
        lines += [
            f"- {s['kib']:+} KiB ({s['blocks']:+} blocks): `{s['at'][0]}`" for s in sites["by_line"]
        ]
    if result["unexpected_samples"]:
        lines += ["", "Unexpected failures (first ones):", ""]
        lines += ["- `" + s.replace("`", "'") + "`" for s in result["unexpected_samples"]]
    path.write_text("\n".join(lines) + "\n")


FIGURE_NAMES = {
    "gc_objects": "live objects",
    "ssl_cached_sessions": "TLS sessions cached",
    "malloc_in_use_mib": "malloc in use MiB",
    "malloc_free_mib": "malloc free MiB",
    "pymalloc_arenas": "pymalloc arenas",
    "heap_rss_mib": "heap RSS MiB",
    "anon_rss_mib": "other anonymous RSS MiB",
    "traced_mib": "traced MiB",
}


def _growth_lines(result: dict[str, Any]) -> list[str]:
    growth = result["growth_after_warmup"]
    if not growth.get("rss_mib"):
        return []
    parts = [
        f"{FIGURE_NAMES.get(key, 'RSS MiB')} {g['per_minute']:+g} "
        f"({g['per_minute_second_half']:+g} in the second half)"
        for key, g in growth.items()
        if g is not None
    ]
    arenas = result["malloc_arena_max"]
    return [
        f"- growth per minute after warm-up (minute {WARM_UP} to the end): "
        + ", ".join(parts)
        + (f"; glibc `MALLOC_ARENA_MAX={arenas}`" if arenas is not None else "")
    ]


def _terminate(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--malloc",
        choices=("jemalloc", "glibc"),
        default="jemalloc",
        help="the gateway's allocator: jemalloc preloaded, as in the image (default), or glibc's",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the gateway's allocations and report what grew after warm-up (slow)",
    )
    parser.add_argument(
        "--malloc-arena-max", type=int, metavar="N", help="MALLOC_ARENA_MAX for the gateway"
    )
    parser.add_argument(
        "--output", type=Path, default=BENCH, help="where SOAK.md and results/ are written"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="l7proxy-soak-"))
    processes = procs.Processes(tmp)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        jemalloc = jemalloc_library() if args.malloc == "jemalloc" else None
        diagnosis = Diagnosis(jemalloc, args.tracemalloc, args.malloc_arena_max)
        result = trio.run(Soak(args.minutes, args.workers, tmp, processes, diagnosis).run)
    finally:
        processes.stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    (args.output / "results").mkdir(parents=True, exist_ok=True)
    (args.output / "results" / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.output / "SOAK.md")
    totals = result["totals"]
    print(
        f"soak: {totals['operations']} operations, {totals['unexpected']} unexpected failures, "
        f"RSS {result['start']['rss_mib']} -> {totals['rss_mib_last']} MiB, "
        f"fds {result['start']['open_fds']} -> {totals['open_fds_last']}"
    )
    return 1 if totals["unexpected"] or totals["gateway_5xx_unexpected"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
