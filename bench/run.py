"""`make bench`: l7proxy against nginx proxy_pass and mitmproxy, in front of the same TLS
upstream.

    .venv/bin/python bench/run.py [--rounds 3] [--duration 10] [--quick]
                                  [--only small_get_h1,profile_h1] [--sides gateway,reference]

Starts an nginx upstream, nginx as the reference proxy, mitmproxy (reverse mode, from
bench/.peers) as the Python peer, a development OIDC issuer and the gateway (OIDC + policy +
file audit, `workers: 2`), then runs every scenario with rounds interleaved (gateway,
reference, peer, gateway, ...) and reports medians: a table on the terminal,
bench/results/latest.json and bench/RESULTS.md. Each measured load run also reads the CPU
time (utime + stime, all processes) of the proxy under load from /proc before and after,
and divides it by the requests it served. `--only` runs the named scenarios (and
`profile_h2`, `profile_h1`, `profile_h1_h1`) and prints their results without rewriting
the committed files. Every process it starts is stopped on exit, and the temporary
directory removed (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
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
MITMDUMP = BENCH / ".peers" / "bin" / "mitmdump"
SIDES = ("gateway", "reference", "mitmproxy")
H1_CHECK_REQUESTS = 20  # h2load --h1 requests that must all count as successes
TARGETS = {
    "min_rps_ratio": 0.25,  # of nginx
    "min_peer_ratio": 3.0,  # of mitmproxy
    "max_cpu_ms": 1.0,  # gateway CPU per small GET
    "max_p99_over_p50": 3.0,  # under load
    "min_stream_ratio": 0.5,
    "max_added_ms": 1.0,
    "max_kib": 64,
}
SMALL_GETS = ("small_get_h1", "small_get_h1_h2load", "small_get_h2")
PROFILES = ("profile_h2", "profile_h1", "profile_h1_h1")
SCENARIOS = (
    *SMALL_GETS,
    "small_get_h1_upstream_h1",
    "latency_1conn",
    "streaming",
    *PROFILES,
    "exec_port_forward",
    "idle_watches",
    "floor",
)


@dataclass(frozen=True)
class Load:
    """One kind of load: `tool` is wrk, `h2load --h1` or h2load (HTTP/2)."""

    tool: str
    connections: int
    streams: int = 1

    @property
    def label(self) -> str:
        if self.tool == "h2load":
            return f"h2load -c {self.connections} -m {self.streams}"
        return f"{self.tool} -c {self.connections}"


H1_WRK = Load("wrk", 32)
H1_H2LOAD = Load("h2load --h1", 32)
H2_LOAD = Load("h2load", 8, 16)


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
    only: tuple[str, ...]  # scenarios to run; all of SCENARIOS when empty
    sides: tuple[str, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        only = tuple(name for name in args.only.split(",") if name)
        sides = tuple(name for name in args.sides.split(",") if name)
        unknown = [n for n in only if n not in SCENARIOS] + [n for n in sides if n not in SIDES]
        if unknown or "gateway" not in sides:
            raise SystemExit(
                f"unknown scenario or side: {', '.join(unknown) or 'gateway missing'} "
                f"(scenarios: {', '.join(SCENARIOS)}; sides: {', '.join(SIDES)})"
            )
        if args.quick:
            return cls(1, 3, 1, 2, 20, 20, (100, 500), args.workers, 3, only, sides)
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
            only,
            sides,
        )

    def runs(self, scenario: str) -> bool:
        return not self.only or scenario in self.only


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
        self.proxies: dict[str, subprocess.Popen[bytes]] = {}  # by side, for /proc readings

    # -- the stack ------------------------------------------------------------------------
    def start(self) -> None:
        self.ports = {
            name: procs.free_port()
            for name in ("upstream", "upstream_h1", "reference", "mitmproxy", "gateway")
        }
        upgrade_server = self.procs.start(
            "upgrade-server",
            [str(PYTHON), str(BENCH / "upgrade_server.py"), "--cert", str(self.certs.cert),
             "--key", str(self.certs.key)],
            pipe_stdout=True,
        )  # fmt: skip
        self.ports["upgrade_upstream"] = int(str(procs.read_json_line(upgrade_server, 30)["port"]))
        upstream_conf = fixtures.upstream_nginx_conf(
            self.tmp, self.ports["upstream"], self.ports["upstream_h1"], self.certs, self.files
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
        self.proxies["reference"] = self._nginx(
            "reference", reference_conf, self.ports["reference"], fixtures.PREFIX + "/api"
        )
        if "mitmproxy" in self.s.sides:
            self.proxies["mitmproxy"] = self._mitmproxy()
        issuer = self.procs.start(
            "issuer",
            [str(PYTHON), str(BENCH / "issuer.py"), "--cert", str(self.certs.cert),
             "--key", str(self.certs.key), "--groups", fixtures.GROUP],
            pipe_stdout=True,
        )  # fmt: skip
        info = procs.read_json_line(issuer, 30)
        self.issuer, self.token = str(info["issuer"]), str(info["token"])
        self.gateway = self.start_gateway(
            "bench", self.ports["gateway"], self.ports["upstream"], self.ports["upstream_h1"]
        )
        self.proxies["gateway"] = self.gateway

    def _nginx(self, name: str, conf: Path, port: int, probe: str) -> subprocess.Popen[bytes]:
        proc = self.procs.start(
            f"nginx-{name}",
            ["nginx", "-e", str(self.tmp / f"{name}-error.log"), "-p", str(self.tmp),
             "-c", str(conf)],
        )  # fmt: skip
        procs.wait_until(
            lambda: procs.https_get(port, probe, self.tls)[0] == 200, 15, f"nginx {name}"
        )
        return proc

    def _mitmproxy(self) -> subprocess.Popen[bytes]:
        port = self.ports["mitmproxy"]
        cmd = fixtures.mitmproxy_command(
            MITMDUMP,
            port=port,
            upstream_port=self.ports["upstream"],
            certs=self.certs,
            addon=BENCH / "mitmproxy_addon.py",
        )
        proc = self.procs.start("mitmproxy", cmd, cwd=self.tmp)
        probe = fixtures.PREFIX + "/api"
        procs.wait_until(lambda: procs.https_get(port, probe, self.tls)[0] == 200, 30, "mitmproxy")
        return proc

    def start_gateway(
        self, connection: str, port: int, upstream_port: int, h1_upstream_port: int | None = None
    ) -> subprocess.Popen[bytes]:
        conf = fixtures.gateway_conf(
            self.tmp,
            connection,
            port=port,
            upstream_port=upstream_port,
            issuer=self.issuer,
            workers=self.s.workers,
            h1_upstream_port=h1_upstream_port,
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

    def url(self, side: str, path: str, prefix: str = fixtures.PREFIX) -> str:
        return f"https://127.0.0.1:{self.ports[side]}{prefix}{path}"

    # -- checks ---------------------------------------------------------------------------
    def check(self) -> dict[str, object]:
        """Every proxy answers every document byte for byte (the gateway over both of its
        upstream connections); the gateway enforces policy."""
        checked = [(side, fixtures.PREFIX) for side in self.s.sides]
        checked.append(("gateway", fixtures.H1_PREFIX))
        for path in (fixtures.PODS_PATH, *fixtures.DISCOVERY_PATHS):
            expected = self.files[path].read_bytes()
            for side, prefix in checked:
                status, body = procs.https_get(
                    self.ports[side], prefix + path, self.tls, self.token
                )
                if status != 200 or body != expected:
                    raise RuntimeError(f"{side} {prefix}{path}: {status}, {len(body)} bytes")
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
    def load(
        self,
        side: str,
        kind: Load,
        *,
        duration: float,
        warmup: float,
        prefix: str = fixtures.PREFIX,
    ) -> measure.LoadResult:
        """A warm-up run (discarded), then one measured run, with the CPU time the side's
        processes spent during it divided by the requests it served."""
        url = self.url(side, fixtures.PODS_PATH, prefix)
        if warmup > 0:
            self._load(url, kind, warmup, warm_up=True)
        before = self._cpu(side)
        result = self._load(url, kind, duration)
        spent = {pid: sec - before.get(pid, 0.0) for pid, sec in self._cpu(side).items()}
        if side == "gateway":
            for pid, seconds in spent.items():
                self.cpu[pid] = self.cpu.get(pid, 0.0) + seconds
        self.failures[side] += result.failed
        per_request = 1000 * sum(spent.values()) / max(1, result.requests)
        return dataclasses.replace(result, cpu_ms_per_request=per_request)

    def _load(
        self, url: str, kind: Load, duration: float, *, warm_up: bool = False
    ) -> measure.LoadResult:
        if kind.tool == "wrk":
            return measure.wrk(
                url,
                token=self.token,
                connections=kind.connections,
                duration=duration,
                warm_up=warm_up,
            )
        return measure.h2load(
            url,
            token=self.token,
            h1=kind.tool == "h2load --h1",
            connections=kind.connections,
            streams=kind.streams,
            duration=duration,
            log_file=self.tmp / "h2load.log",
            warm_up=warm_up,
        )

    def _cpu(self, side: str) -> dict[int, float]:
        """CPU seconds of each process of the side's tree (nginx master and workers, the
        gateway and its worker children, mitmdump)."""
        return {pid: procs.cpu_seconds(pid) for pid in procs.tree(self.proxies[side].pid)}

    def rounds(
        self, run_one: Callable[[str], measure.LoadResult], sides: tuple[str, ...]
    ) -> dict[str, Any]:
        runs: dict[str, list[measure.LoadResult]] = {side: [] for side in sides}
        for _ in range(self.s.rounds):
            for side in sides:
                runs[side].append(run_one(side))
        out: dict[str, Any] = {}
        for side in sides:
            out[side] = {
                "rounds": [r.as_dict() for r in runs[side]],
                "median": {
                    key: statistics.median(getattr(r, key) for r in runs[side])
                    for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
                },
                "all_2xx": all(r.all_2xx for r in runs[side]),
            }
        return out

    def small_get(self, kind: Load, *, prefix: str = fixtures.PREFIX) -> dict[str, Any]:
        """The PodList under `kind` of load; through the gateway only when `prefix` is not
        the shared one (the HTTP/1.1-only upstream)."""
        sides = self.s.sides if prefix == fixtures.PREFIX else ("gateway",)
        result = self.rounds(
            lambda side: self.load(
                side, kind, duration=self.s.duration, warmup=self.s.warmup, prefix=prefix
            ),
            sides,
        )
        _add_ratios(result, "rps")
        result["load"] = kind.label
        return result

    def latency(self) -> dict[str, Any]:
        result = self.rounds(
            lambda side: self.load(
                side, Load("h2load", 1), duration=self.s.latency_duration, warmup=1
            ),
            self.s.sides,
        )
        gw = result["gateway"]["median"]
        for side in self.s.sides[1:]:
            other = result[side]["median"]
            result[f"added_p50_ms_vs_{side}"] = gw["p50_ms"] - other["p50_ms"]
            result[f"added_p99_ms_vs_{side}"] = gw["p99_ms"] - other["p99_ms"]
        return result

    def warm_up(self) -> None:
        for side in self.s.sides:
            for kind in (Load("h2load", 8, 4), Load("wrk", 8)):
                self._load(self.url(side, fixtures.PODS_PATH), kind, 2, warm_up=True)
        self._load(self.url("gateway", fixtures.PODS_PATH, fixtures.H1_PREFIX), Load("wrk", 8), 2)
        self.failures = {side: 0 for side in SIDES}
        self.cpu = {}

    # -- streaming ------------------------------------------------------------------------
    def streaming(self) -> dict[str, Any]:
        size = self.files[fixtures.LOG_PATH].stat().st_size
        sides = self.s.sides
        runs: dict[str, list[measure.StreamResult]] = {side: [] for side in sides}
        for _ in range(self.s.rounds):
            for side in sides:
                runs[side].append(
                    measure.curl_stream(
                        self.url(side, fixtures.LOG_PATH),
                        token=self.token,
                        cafile=self.certs.ca,
                        expected_bytes=size,
                    )
                )
        out: dict[str, Any] = {"megabytes": size // 1_000_000}
        for side in sides:
            out[side] = {
                "rounds": [r.as_dict() for r in runs[side]],
                "median": {"mb_per_s": statistics.median(r.mb_per_s for r in runs[side])},
            }
        _add_ratios(out, "mb_per_s")
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
        gateway = self.start_gateway("upgrade", port, self.ports["upgrade_upstream"])
        ports = {"gateway": port, "reference": self.ports["reference"]}
        sides = ("gateway", "reference")
        runs: dict[str, list[measure.UpgradeResult]] = {side: [] for side in sides}
        try:
            for side in sides:  # warm-up: connections, TLS, code paths
                measure.upgraded_stream(
                    ports[side], path.replace(str(size), "1000000"), token=self.token,
                    context=context, expected_bytes=1_000_000,
                )  # fmt: skip
            for _ in range(self.s.rounds):
                for side in sides:
                    runs[side].append(
                        measure.upgraded_stream(
                            ports[side], path, token=self.token, context=context,
                            expected_bytes=size,
                        )
                    )  # fmt: skip
        finally:
            self.procs.stop(gateway)
        out: dict[str, Any] = {"megabytes": self.s.upgrade_mb, "direction": "upstream to client"}
        for side in sides:
            out[side] = {
                "rounds": [r.as_dict() for r in runs[side]],
                "median": {
                    "mb_per_s": statistics.median(r.mb_per_s for r in runs[side]),
                    "handshake_ms": statistics.median(r.handshake_ms for r in runs[side]),
                },
            }
        _add_ratios(out, "mb_per_s")
        return out

    # -- profile --------------------------------------------------------------------------
    def profile(self, name: str) -> dict[str, Any]:
        """py-spy on the gateway's workers during one small-GET load (`profile_h2`: HTTP/2;
        `profile_h1`: HTTP/1.1 from the client, h2 to the upstream; `profile_h1_h1`: HTTP/1.1
        on both legs): raw stacks from one worker (summarised), a flame graph from the
        other (`profile_h2` and `profile_h1` only)."""
        if not PY_SPY.exists():
            return {"samples": 0}
        assert self.gateway is not None
        workers = procs.tree(self.gateway.pid)
        kind, prefix = {
            "profile_h2": (H2_LOAD, fixtures.PREFIX),
            "profile_h1": (H1_WRK, fixtures.PREFIX),
            "profile_h1_h1": (H1_WRK, fixtures.H1_PREFIX),
        }[name]
        stem = name.replace("_", "-")
        raw = self.tmp / f"{stem}.raw"
        svg = (self.tmp if self.s.only else RESULTS) / f"{stem}.svg"
        outputs = [(raw, "raw")] + ([(svg, "flamegraph")] if name != "profile_h1_h1" else [])
        rate, seconds = 100, self.s.profile_seconds
        spies = [
            subprocess.Popen(
                [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(rate),
                 "--duration", str(seconds), "--format", fmt, "--output", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, (out, fmt) in zip(workers, outputs, strict=False)
        ]  # fmt: skip
        try:
            time.sleep(1)  # let py-spy attach
            self._load(self.url("gateway", fixtures.PODS_PATH, prefix), kind, seconds + 1)
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
        summary.update(
            pid=workers[0],
            rate=rate,
            seconds=seconds,
            load=kind.label,
            flamegraph=svg.name if len(outputs) > 1 else "",
        )
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
            gateway = self.start_gateway("sandbox", port, sandbox_port)
            path = "/k8s/sandbox/api/v1/namespaces/default/pods"
            for kind in (Load("h2load", 8, 4), Load("wrk", 8)):  # both protocols' code paths
                self._load(f"https://127.0.0.1:{port}{path}", kind, 1)
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


def _add_ratios(result: dict[str, Any], key: str) -> None:
    """The gateway's median `key` over nginx's (`ratio`) and over mitmproxy's
    (`ratio_mitmproxy`), for the sides that ran."""
    gateway = result["gateway"]["median"][key]
    if "reference" in result:
        result["ratio"] = gateway / result["reference"]["median"][key]
    if "mitmproxy" in result:
        result["ratio_mitmproxy"] = gateway / result["mitmproxy"]["median"][key]


def _targets(scenarios: dict[str, Any]) -> dict[str, Any]:
    """Each target of issue 16 for the scenarios that ran: its bound and whether it holds."""
    t = TARGETS
    out: dict[str, Any] = {}
    for key in SMALL_GETS:
        if key not in scenarios:
            continue
        s = scenarios[key]
        gw = s["gateway"]["median"]
        p99_over_p50 = gw["p99_ms"] / gw["p50_ms"]
        checks: dict[str, Any] = {
            "min_ratio": t["min_rps_ratio"],
            "pass_ratio": s.get("ratio", 0) >= t["min_rps_ratio"],
            "max_p99_over_p50": t["max_p99_over_p50"],
            "p99_over_p50": p99_over_p50,
            "pass_p99": p99_over_p50 <= t["max_p99_over_p50"],
            "max_cpu_ms": t["max_cpu_ms"],
            "pass_cpu": gw["cpu_ms_per_request"] <= t["max_cpu_ms"],
        }
        if "ratio_mitmproxy" in s:
            checks["min_ratio_mitmproxy"] = t["min_peer_ratio"]
            checks["pass_ratio_mitmproxy"] = s["ratio_mitmproxy"] >= t["min_peer_ratio"]
        checks["pass"] = all(v for k, v in checks.items() if k.startswith("pass_"))
        out[key] = checks
    if "latency_1conn" in scenarios:
        added = scenarios["latency_1conn"].get("added_p50_ms_vs_reference", math.inf)
        out["latency_1conn"] = {
            "max_added_ms": t["max_added_ms"],
            "pass": added <= t["max_added_ms"],
        }
    for key in ("streaming", "exec_port_forward"):
        if key in scenarios:
            ratio = scenarios[key].get("ratio", 0)
            out[key] = {"min_ratio": t["min_stream_ratio"], "pass": ratio >= t["min_stream_ratio"]}
    if "idle_watches" in scenarios:
        kib = t["max_kib"]
        watches = scenarios["idle_watches"].values()
        out["idle_watches"] = {
            "max_kib": kib,
            "pass": all(w["kib_per_watch"] <= kib for w in watches),
        }
    return out


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
    _step(f"starting upstream nginx, issuer and the proxies: {', '.join(settings.sides)}")
    bench.start()
    checks = bench.check()
    bench.warm_up()
    scenarios: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    for key, kind, prefix in (
        ("small_get_h1", H1_WRK, fixtures.PREFIX),
        ("small_get_h1_h2load", H1_H2LOAD, fixtures.PREFIX),
        ("small_get_h2", H2_LOAD, fixtures.PREFIX),
        ("small_get_h1_upstream_h1", H1_WRK, fixtures.H1_PREFIX),
    ):
        if settings.runs(key):
            _step(f"small GET: {kind.label} through {prefix}")
            scenarios[key] = bench.small_get(kind, prefix=prefix)
    if settings.runs("latency_1conn"):
        _step("added latency at low load")
        scenarios["latency_1conn"] = bench.latency()
    if settings.runs("streaming"):
        _step(f"streaming {settings.stream_mb} MB")
        scenarios["streaming"] = bench.streaming()
    for key in PROFILES:
        if settings.runs(key):
            _step(f"profiling the gateway: {key}")
            profiles[key] = bench.profile(key)
    assert bench.gateway is not None
    processes.stop(bench.gateway)
    if settings.runs("exec_port_forward"):
        _step(f"exec / port-forward: {settings.upgrade_mb} MB through an upgraded connection")
        scenarios["exec_port_forward"] = bench.upgrade_stream()
    if settings.runs("idle_watches"):
        scenarios["idle_watches"] = {}
        for count in settings.watch_counts:
            _step(f"{count:,} idle watches")
            scenarios["idle_watches"][str(count)] = bench.idle_watches(count)
    floor: dict[str, Any] = {}
    if settings.runs("floor"):
        _step("the floor: TLS round trips, HTTP/2 and HTTP/1.1 coding, in-process")
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
        "failures": {side: bench.failures[side] for side in settings.sides},
        "workers": {
            "cpu_seconds": {str(pid): round(sec, 2) for pid, sec in bench.cpu.items()},
            "verdict": _workers_verdict(bench.cpu, settings.workers),
        },
        "profiles": profiles,
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
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run (results printed, committed files untouched): "
        + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--sides", default=",".join(SIDES), help="comma-separated proxies to measure"
    )
    args = parser.parse_args()
    missing = [tool for tool in ("nginx", "h2load", "wrk", "curl") if shutil.which(tool) is None]
    if "mitmproxy" in args.sides and not MITMDUMP.exists():
        missing.append(f"mitmdump in {MITMDUMP.parent}")
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
    print()
    print(report.table(results))
    print()
    print(report.cpu_table(results))
    if settings.only:
        print(json.dumps({key: results[key] for key in ("failures", "targets", "scenarios")}))
        print(f"\n--only: bench/RESULTS.md and latest.json left as they were "
              f"({results['wall_seconds']} s)")  # fmt: skip
        return 0
    report.write_json(results, RESULTS / "latest.json")
    report.write_markdown(results, BENCH / "RESULTS.md")
    print(f"\n{results['workers']['verdict']}; results in bench/RESULTS.md and "
          f"bench/results/latest.json ({results['wall_seconds']} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
