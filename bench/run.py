"""`make bench`: l7proxy against nginx proxy_pass, in front of the same TLS upstream.

    .venv/bin/python bench/run.py [--rounds 3] [--duration 10] [--quick]

Starts an nginx upstream, nginx as the reference proxy, a development OIDC issuer and the
gateway (OIDC + policy + file audit, `workers: 2`), then runs every scenario with rounds
interleaved (gateway, reference, gateway, ...) and reports medians: a table on the
terminal, bench/results/latest.json and bench/RESULTS.md. Every process it starts is
stopped on exit, and the temporary directory removed (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import fixtures
import hotspots
import measure
import procs
import report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
L7PROXY = VENV_BIN / "l7proxy"
PY_SPY = VENV_BIN / "py-spy"
SIDES = ("gateway", "reference")
H1_CHECK_REQUESTS = 20  # h2load --h1 requests that must all count as successes
TARGETS = {"min_rps_ratio": 0.25, "min_stream_ratio": 0.5, "max_added_ms": 0.5, "max_kib": 64}


@dataclass(frozen=True)
class Settings:
    rounds: int
    duration: float
    warmup: float
    latency_duration: float
    stream_mb: int
    upgrade_mb: int
    watch_counts: tuple[int, ...]
    workers: int
    profile_seconds: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if args.quick:
            return cls(1, 3, 1, 2, 20, 20, (100, 500), args.workers, 3)
        return cls(
            args.rounds,
            args.duration,
            2,
            args.duration / 2,
            200,
            100,
            (1000, 10000),
            args.workers,
            10,
        )


class Bench:
    """The running stack and the scenarios measured against it."""

    def __init__(self, settings: Settings, tmp: Path, processes: procs.Processes) -> None:
        self.s = settings
        self.tmp = tmp
        self.procs = processes
        self.certs = fixtures.make_certs(tmp)
        self.tls = ssl.create_default_context(cafile=str(self.certs.ca))
        self.files = fixtures.write_documents(tmp, settings.stream_mb * 1_000_000)
        self.cpu: dict[int, float] = {}
        self.failures = {side: 0 for side in SIDES}
        self.issuer = ""
        self.token = ""
        self.ports: dict[str, int] = {}
        self.gateway: subprocess.Popen[bytes] | None = None

    # -- the stack ------------------------------------------------------------------------
    def start(self) -> None:
        self.ports = {name: procs.free_port() for name in ("upstream", "reference", "gateway")}
        upgrade_server = self.procs.start(
            "upgrade-server",
            [str(PYTHON), str(BENCH / "upgrade_server.py"), "--cert", str(self.certs.cert),
             "--key", str(self.certs.key)],
            pipe_stdout=True,
        )  # fmt: skip
        self.ports["upgrade_upstream"] = int(str(procs.read_json_line(upgrade_server, 30)["port"]))
        upstream_conf = fixtures.upstream_nginx_conf(
            self.tmp, self.ports["upstream"], self.certs, self.files
        )
        self._nginx("upstream", upstream_conf, self.ports["upstream"], "/api")
        reference_conf = fixtures.reference_nginx_conf(
            self.tmp,
            self.ports["reference"],
            self.ports["upstream"],
            self.ports["upgrade_upstream"],
            self.certs,
            self.s.workers,
        )
        self._nginx("reference", reference_conf, self.ports["reference"], fixtures.PREFIX + "/api")
        issuer = self.procs.start(
            "issuer",
            [str(PYTHON), str(BENCH / "issuer.py"), "--cert", str(self.certs.cert),
             "--key", str(self.certs.key), "--groups", fixtures.GROUP],
            pipe_stdout=True,
        )  # fmt: skip
        info = procs.read_json_line(issuer, 30)
        self.issuer, self.token = str(info["issuer"]), str(info["token"])
        self.gateway = self._gateway("bench", self.ports["gateway"], self.ports["upstream"])

    def _nginx(self, name: str, conf: Path, port: int, probe: str) -> None:
        self.procs.start(
            f"nginx-{name}",
            ["nginx", "-e", str(self.tmp / f"{name}-error.log"), "-p", str(self.tmp),
             "-c", str(conf)],
        )  # fmt: skip
        procs.wait_until(
            lambda: procs.https_get(port, probe, self.tls)[0] == 200, 15, f"nginx {name}"
        )

    def _gateway(self, connection: str, port: int, upstream_port: int) -> subprocess.Popen[bytes]:
        conf = fixtures.gateway_conf(
            self.tmp,
            connection,
            port=port,
            upstream_port=upstream_port,
            issuer=self.issuer,
            workers=self.s.workers,
        )
        log_name = f"gateway-{connection}-{port}"
        gateway = self.procs.start(
            log_name, [str(L7PROXY), "serve", "--config", str(conf)], cwd=self.tmp
        )
        log = self.tmp / f"{log_name}.log"

        def ready() -> bool:
            if gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited: {log.read_text()[-2000:]}")
            listening = log.read_text().count('"event": "listening"')
            return (
                listening >= self.s.workers and procs.https_get(port, "/readyz", self.tls)[0] == 200
            )

        procs.wait_until(ready, 30, "the gateway")
        workers = procs.tree(gateway.pid)
        if len(workers) != self.s.workers:
            raise RuntimeError(f"expected {self.s.workers} gateway processes, found {workers}")
        return gateway

    def url(self, side: str, path: str) -> str:
        return f"https://127.0.0.1:{self.ports[side]}{fixtures.PREFIX}{path}"

    # -- checks ---------------------------------------------------------------------------
    def check(self) -> dict[str, object]:
        """Both proxies answer every document byte for byte; the gateway enforces policy."""
        for path in (fixtures.PODS_PATH, *fixtures.DISCOVERY_PATHS):
            expected = self.files[path].read_bytes()
            for side in SIDES:
                status, body = procs.https_get(
                    self.ports[side], fixtures.PREFIX + path, self.tls, self.token
                )
                if status != 200 or body != expected:
                    raise RuntimeError(f"{side} {path}: {status}, {len(body)} bytes")
        denied, _ = procs.https_get(
            self.ports["gateway"],
            fixtures.PREFIX + "/api/v1/namespaces/default/secrets",
            self.tls,
            self.token,
        )
        anonymous, _ = procs.https_get(
            self.ports["gateway"], fixtures.PREFIX + fixtures.PODS_PATH, self.tls
        )
        if (denied, anonymous) != (403, 401):
            raise RuntimeError(f"policy not enforced: secrets {denied}, anonymous {anonymous}")
        url = self.url("gateway", fixtures.PODS_PATH)
        h1_ok = measure.h2load_h1_successes(url, token=self.token, requests=H1_CHECK_REQUESTS)
        if h1_ok != H1_CHECK_REQUESTS:  # h2load needs the reason phrase to count a response
            raise RuntimeError(f"h2load --h1 counted {h1_ok}/{H1_CHECK_REQUESTS} successes")
        return {
            "documents_identical": True,
            "secrets_status": denied,
            "anonymous_status": anonymous,
            "h2load_h1_successes": h1_ok,
        }

    # -- request-rate scenarios -----------------------------------------------------------
    def load(self, side: str, *, h1: bool, connections: int, streams: int, duration: float,
             warmup: float) -> measure.LoadResult:  # fmt: skip
        before = self._gateway_cpu() if side == "gateway" else {}
        result = self._load(
            self.url(side, fixtures.PODS_PATH),
            h1=h1,
            connections=connections,
            streams=streams,
            duration=duration,
            warmup=warmup,
        )
        if side == "gateway":
            for pid, seconds in self._gateway_cpu().items():
                self.cpu[pid] = self.cpu.get(pid, 0.0) + seconds - before.get(pid, 0.0)
        self.failures[side] += result.failed
        return result

    def _load(self, url: str, *, h1: bool, connections: int, streams: int, duration: float,
              warmup: float) -> measure.LoadResult:  # fmt: skip
        """HTTP/1.1 through wrk, HTTP/2 through h2load (see measure.py for why)."""
        if h1:
            return measure.wrk(
                url, token=self.token, connections=connections, duration=duration, warmup=warmup
            )
        return measure.h2load(
            url,
            token=self.token,
            h1=False,
            connections=connections,
            streams=streams,
            duration=duration,
            warmup=warmup,
            log_file=self.tmp / "h2load.log",
        )

    def _gateway_cpu(self) -> dict[int, float]:
        assert self.gateway is not None
        return {pid: procs.cpu_seconds(pid) for pid in procs.tree(self.gateway.pid)}

    def rounds(self, run_one: Callable[[str], measure.LoadResult]) -> dict[str, Any]:
        runs: dict[str, list[measure.LoadResult]] = {side: [] for side in SIDES}
        for _ in range(self.s.rounds):
            for side in SIDES:
                runs[side].append(run_one(side))
        out: dict[str, Any] = {}
        for side in SIDES:
            out[side] = {
                "rounds": [r.as_dict() for r in runs[side]],
                "median": {
                    key: statistics.median(getattr(r, key) for r in runs[side])
                    for key in ("rps", "p50_ms", "p99_ms")
                },
            }
        return out

    def small_get(self, *, h1: bool) -> dict[str, Any]:
        connections, streams = (32, 1) if h1 else (8, 16)
        result = self.rounds(
            lambda side: self.load(
                side,
                h1=h1,
                connections=connections,
                streams=streams,
                duration=self.s.duration,
                warmup=self.s.warmup,
            )
        )
        result["ratio"] = result["gateway"]["median"]["rps"] / result["reference"]["median"]["rps"]
        result["load"] = f"wrk -c {connections}" if h1 else f"h2load -c {connections} -m {streams}"
        return result

    def latency(self) -> dict[str, Any]:
        result = self.rounds(
            lambda side: self.load(
                side,
                h1=False,
                connections=1,
                streams=1,
                duration=self.s.latency_duration,
                warmup=1,
            )
        )
        gw, ref = result["gateway"]["median"], result["reference"]["median"]
        result["added_p50_ms"] = gw["p50_ms"] - ref["p50_ms"]
        result["added_p99_ms"] = gw["p99_ms"] - ref["p99_ms"]
        return result

    def warm_up(self) -> None:
        for side in SIDES:
            self.load(side, h1=False, connections=8, streams=4, duration=1, warmup=1)
        self.failures = {side: 0 for side in SIDES}
        self.cpu = {}

    # -- streaming ------------------------------------------------------------------------
    def streaming(self) -> dict[str, Any]:
        size = self.files[fixtures.LOG_PATH].stat().st_size
        runs: dict[str, list[measure.StreamResult]] = {side: [] for side in SIDES}
        for _ in range(self.s.rounds):
            for side in SIDES:
                runs[side].append(
                    measure.curl_stream(
                        self.url(side, fixtures.LOG_PATH),
                        token=self.token,
                        cafile=self.certs.ca,
                        expected_bytes=size,
                    )
                )
        out: dict[str, Any] = {"megabytes": size // 1_000_000}
        for side in SIDES:
            out[side] = {
                "rounds": [r.as_dict() for r in runs[side]],
                "median_mb_per_s": statistics.median(r.mb_per_s for r in runs[side]),
            }
        out["ratio"] = out["gateway"]["median_mb_per_s"] / out["reference"]["median_mb_per_s"]
        out["http_version"] = runs["gateway"][0].http_version
        return out

    # -- upgrades -------------------------------------------------------------------------
    def upgrade_stream(self) -> dict[str, Any]:
        """exec / port-forward: an HTTP/1.1 upgrade through each proxy to upgrade_server.py,
        which answers 101 and sends `upgrade_mb` MB; a fresh gateway (connection `upgrade`)
        so that its prefix reaches the upgrade server. GET on pods/log with an Upgrade header
        is authorized as `get pods/log`, which the read-only bench policy allows."""
        size = self.s.upgrade_mb * 1_000_000
        path = f"{fixtures.UPGRADE_PREFIX}/api/v1/namespaces/default/pods/web-1/log?bytes={size}"
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        context.set_alpn_protocols(["http/1.1"])
        port = procs.free_port()
        gateway = self._gateway("upgrade", port, self.ports["upgrade_upstream"])
        ports = {"gateway": port, "reference": self.ports["reference"]}
        runs: dict[str, list[measure.UpgradeResult]] = {side: [] for side in SIDES}
        try:
            for side in SIDES:  # warm-up: connections, TLS, code paths
                measure.upgraded_stream(
                    ports[side], path.replace(str(size), "1000000"), token=self.token,
                    context=context, expected_bytes=1_000_000,
                )  # fmt: skip
            for _ in range(self.s.rounds):
                for side in SIDES:
                    runs[side].append(
                        measure.upgraded_stream(
                            ports[side], path, token=self.token, context=context,
                            expected_bytes=size,
                        )
                    )  # fmt: skip
        finally:
            self.procs.stop(gateway)
        out: dict[str, Any] = {"megabytes": self.s.upgrade_mb, "direction": "upstream to client"}
        for side in SIDES:
            out[side] = {
                "rounds": [r.as_dict() for r in runs[side]],
                "median_mb_per_s": statistics.median(r.mb_per_s for r in runs[side]),
                "median_handshake_ms": statistics.median(r.handshake_ms for r in runs[side]),
            }
        out["ratio"] = out["gateway"]["median_mb_per_s"] / out["reference"]["median_mb_per_s"]
        return out

    # -- profile --------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        """py-spy on the gateway's workers during the HTTP/2 small-GET load: raw stacks from
        one worker (summarised), a flame graph from the other."""
        if not PY_SPY.exists():
            return {"samples": 0}
        assert self.gateway is not None
        workers = procs.tree(self.gateway.pid)
        raw = self.tmp / "profile-h2.raw"
        svg = RESULTS / "profile-h2.svg"
        rate, seconds = 100, self.s.profile_seconds
        spies = [
            subprocess.Popen(
                [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(rate),
                 "--duration", str(seconds), "--format", fmt, "--output", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, fmt, out in zip(workers, ("raw", "flamegraph"), (raw, svg), strict=False)
        ]  # fmt: skip
        try:
            time.sleep(1)  # let py-spy attach
            measure.h2load(
                self.url("gateway", fixtures.PODS_PATH),
                token=self.token,
                h1=False,
                connections=8,
                streams=16,
                duration=seconds + 1,
                warmup=0,
                log_file=self.tmp / "h2load.log",
            )
        finally:
            for spy in spies:
                try:
                    spy.wait(seconds + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        if not raw.exists():
            return {"samples": 0}
        summary = hotspots.summarise(raw)
        summary.update(pid=workers[0], rate=rate, seconds=seconds)
        return summary

    # -- idle watches ---------------------------------------------------------------------
    def idle_watches(self, count: int) -> dict[str, Any]:
        """A fresh gateway in front of the SandboxCluster; RSS before and with `count`
        watches held open."""
        sandbox = self.procs.start(
            f"sandbox-{count}",
            [str(PYTHON), str(BENCH / "sandbox_server.py"), "--cert", str(self.certs.cert),
             "--key", str(self.certs.key), "--token", fixtures.CLUSTER_TOKEN],
            pipe_stdout=True,
        )  # fmt: skip
        client: subprocess.Popen[bytes] | None = None
        gateway: subprocess.Popen[bytes] | None = None
        try:
            sandbox_port = int(str(procs.read_json_line(sandbox, 30)["port"]))
            port = procs.free_port()
            gateway = self._gateway("sandbox", port, sandbox_port)
            path = "/k8s/sandbox/api/v1/namespaces/default/pods"
            for h1 in (False, True):  # warm both protocols' code paths in every worker
                self._load(
                    f"https://127.0.0.1:{port}{path}",
                    h1=h1,
                    connections=8,
                    streams=4,
                    duration=1,
                    warmup=1,
                )
            time.sleep(1)
            pids = procs.tree(gateway.pid)
            before = {pid: procs.rss_kib(pid) for pid in pids}
            client = self.procs.start(
                f"watch-client-{count}",
                [str(PYTHON), str(BENCH / "watch_client.py"), "--port", str(port),
                 "--path", path, "--token", self.token, "--cafile", str(self.certs.ca),
                 "--count", str(count)],
                pipe_stdout=True,
            )  # fmt: skip
            opened = procs.read_json_line(client, 300)
            if opened.get("statuses") != {"200": count}:
                raise RuntimeError(f"watches not all open: {opened}")
            time.sleep(3)
            after = {pid: procs.rss_kib(pid) for pid in pids}
        finally:
            for proc in (client, gateway, sandbox):
                if proc is not None:
                    self.procs.stop(proc)
        delta = sum(after.values()) - sum(before.values())
        return {
            "count": count,
            "connections": opened["connections"],
            "open_seconds": opened["seconds"],
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_delta_kib": delta,
            "kib_per_watch": delta / count,
        }


def _targets(scenarios: dict[str, Any]) -> dict[str, Any]:
    rps, stream = TARGETS["min_rps_ratio"], TARGETS["min_stream_ratio"]
    added, kib = TARGETS["max_added_ms"], TARGETS["max_kib"]
    watches = scenarios["idle_watches"].values()
    return {
        "small_get_h1": {"min_ratio": rps, "pass": scenarios["small_get_h1"]["ratio"] >= rps},
        "small_get_h2": {"min_ratio": rps, "pass": scenarios["small_get_h2"]["ratio"] >= rps},
        "latency_1conn": {
            "max_added_ms": added,
            "pass": scenarios["latency_1conn"]["added_p50_ms"] <= added,
        },
        "streaming": {"min_ratio": stream, "pass": scenarios["streaming"]["ratio"] >= stream},
        "idle_watches": {"max_kib": kib, "pass": all(w["kib_per_watch"] <= kib for w in watches)},
        "exec_port_forward": {
            "min_ratio": stream,
            "pass": scenarios["exec_port_forward"]["ratio"] >= stream,
        },
    }


def _workers_verdict(cpu: dict[int, float], workers: int) -> str:
    busy = [sec for sec in cpu.values() if sec >= 0.2 * max(cpu.values(), default=0)]
    if len(cpu) == workers and len(busy) == workers:
        return f"all {workers} processes served traffic"
    return f"only {len(busy)} of {workers} processes served traffic"


def _step(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(settings: Settings, tmp: Path, processes: procs.Processes) -> dict[str, Any]:
    host = report.machine()
    bench = Bench(settings, tmp, processes)
    _step("starting upstream nginx, reference nginx, issuer and gateway")
    bench.start()
    checks = bench.check()
    bench.warm_up()
    scenarios: dict[str, Any] = {}
    _step("small GET over HTTP/1.1")
    scenarios["small_get_h1"] = bench.small_get(h1=True)
    _step("small GET over HTTP/2")
    scenarios["small_get_h2"] = bench.small_get(h1=False)
    _step("added latency at low load")
    scenarios["latency_1conn"] = bench.latency()
    _step(f"streaming {settings.stream_mb} MB")
    scenarios["streaming"] = bench.streaming()
    _step("profiling the gateway under the HTTP/2 small-GET load")
    profile = bench.profile()
    assert bench.gateway is not None
    processes.stop(bench.gateway)
    _step(f"exec / port-forward: {settings.upgrade_mb} MB through an upgraded connection")
    scenarios["exec_port_forward"] = bench.upgrade_stream()
    scenarios["idle_watches"] = {}
    for count in settings.watch_counts:
        _step(f"{count:,} idle watches")
        scenarios["idle_watches"][str(count)] = bench.idle_watches(count)
    _step("the floor: TLS round trips and HTTP/2 coding, in-process")
    floor = json.loads(
        subprocess.run(
            [str(PYTHON), str(BENCH / "floor.py")], check=True, capture_output=True, text=True
        ).stdout
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": host,
        "settings": settings.__dict__ | {"watch_counts": list(settings.watch_counts)},
        "checks": checks,
        "pod_list_bytes": bench.files[fixtures.PODS_PATH].stat().st_size,
        "scenarios": scenarios,
        "targets": _targets(scenarios),
        "failures": bench.failures,
        "workers": {
            "cpu_seconds": {str(pid): round(sec, 2) for pid, sec in bench.cpu.items()},
            "verdict": _workers_verdict(bench.cpu, settings.workers),
        },
        "profile": profile,
        "floor": floor,
    }


def _terminate(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one short round, small counts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    missing = [tool for tool in ("nginx", "h2load", "curl") if shutil.which(tool) is None]
    if missing:
        print(f"missing tools: {', '.join(missing)} (make bench installs them)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    settings = Settings.from_args(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="l7proxy-bench-"))
    processes = procs.Processes(tmp)
    started = time.monotonic()
    try:
        results = run(settings, tmp, processes)
    finally:
        processes.stop_all()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started)
    results["loadavg_at_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    report.write_json(results, RESULTS / "latest.json")
    report.write_markdown(results, BENCH / "RESULTS.md")
    print()
    print(report.table(results))
    print(f"\n{results['workers']['verdict']}; results in bench/RESULTS.md and "
          f"bench/results/latest.json ({results['wall_seconds']} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
