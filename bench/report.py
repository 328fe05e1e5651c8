"""The results table (terminal and Markdown), bench/results/latest.json and bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

Row = tuple[str, ...]
HEADER: Row = (
    "scenario", "l7proxy", "nginx proxy_pass", "mitmproxy", "vs nginx", "vs mitmproxy",
    "target", "result",
)  # fmt: skip
CPU_HEADER: Row = (
    "CPU time per request (ms)", "l7proxy", "nginx proxy_pass", "mitmproxy", "floor",
    "l7proxy over the floor", "target", "result",
)  # fmt: skip
SMALL_GET_LABELS = {
    "small_get_h1": "small GET, HTTP/1.1, wrk -c 32",
    "small_get_h1_h2load": "small GET, HTTP/1.1, h2load --h1 -c 32",
    "small_get_h2": "small GET, HTTP/2, h2load -c 8 -m 16",
    "small_get_h1_upstream_h1": "small GET, HTTP/1.1 on both legs, wrk -c 32",
}
# Which pairing of client and cluster protocol each scenario's floor is (floor.py).
FLOOR_OF = {
    "small_get_h1": "h1",
    "small_get_h1_h2load": "h1",
    "small_get_h2": "h2",
    "small_get_h1_upstream_h1": "h1_h1",
    "latency_1conn": "h2",
}
SIDE_NAMES = {"gateway": "l7proxy", "reference": "nginx", "mitmproxy": "mitmproxy"}


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?"
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal:")), 0)
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu_model": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nginx": _version(["nginx", "-v"]),
        "h2load": _version(["h2load", "--version"]),
        "curl": _version(["curl", "--version"]),
        "mitmproxy": _mitmproxy_version(),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def _mitmproxy_version() -> str:
    mitmdump = Path(__file__).resolve().parent / ".peers" / "bin" / "mitmdump"
    if not mitmdump.exists():
        return "mitmproxy (not installed)"
    return _version([str(mitmdump), "--version"]).replace(":", "").replace("  ", " ").strip()


def _version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip()


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _sides(scenario: dict[str, Any], fmt: str, key: str) -> tuple[str, ...]:
    """`key` of each side's medians, formatted; `n/a` for a side that did not run."""
    return tuple(
        fmt.format(scenario[side]["median"][key]) if side in scenario else "n/a"
        for side in ("gateway", "reference", "mitmproxy")
    )


def _ratio(scenario: dict[str, Any], key: str) -> str:
    return f"{scenario[key]:.2f}x" if key in scenario else ""


def rows(results: dict[str, Any]) -> list[Row]:
    s = results["scenarios"]
    t = results["targets"]
    out: list[Row] = []
    for key, label in SMALL_GET_LABELS.items():
        if key not in s:
            continue
        sc = s[key]
        target = t.get(key)
        ratio_target, p99_target, cpu_target, ratio_ok = "", "", "", ""
        if target is not None:
            ratio_target = f">= {target['min_ratio']}x nginx"
            oks = [target["pass_ratio"]]
            if "min_ratio_mitmproxy" in target:
                ratio_target += f", >= {target['min_ratio_mitmproxy']:g}x mitmproxy"
                oks.append(target["pass_ratio_mitmproxy"])
            ratio_ok = _verdict(all(oks))
            p99_target = f"p99 <= {target['max_p99_over_p50']:g}x p50"
            cpu_target = f"<= {target['max_cpu_ms']} ms"
        out.append(
            (f"{label}: req/s", *_sides(sc, "{:,.0f}", "rps"), _ratio(sc, "ratio"),
             _ratio(sc, "ratio_mitmproxy"), ratio_target, ratio_ok)
        )  # fmt: skip
        latency = tuple(
            f"{sc[side]['median']['p50_ms']:.2f} / {sc[side]['median']['p99_ms']:.2f}"
            if side in sc
            else "n/a"
            for side in ("gateway", "reference", "mitmproxy")
        )
        out.append(
            ("  latency p50 / p99 (ms)", *latency, "", "", p99_target,
             _verdict(target["pass_p99"]) if target else "")
        )  # fmt: skip
        out.append(
            ("  CPU time per request (ms)", *_sides(sc, "{:.3f}", "cpu_ms_per_request"), "", "",
             cpu_target, _verdict(target["pass_cpu"]) if target else "")
        )  # fmt: skip
    if "latency_1conn" in s:
        lat = s["latency_1conn"]
        out.append(
            (
                "added latency, 1 conn sequential, HTTP/2: p50 (ms)",
                *_sides(lat, "{:.3f}", "p50_ms"),
                _added(lat, "added_p50_ms_vs_reference"),
                _added(lat, "added_p50_ms_vs_mitmproxy"),
                f"<= +{t['latency_1conn']['max_added_ms']} ms over nginx",
                _verdict(t["latency_1conn"]["pass"]),
            )
        )
        out.append(("  p99 (ms)", *_sides(lat, "{:.3f}", "p99_ms"), "", "", "", ""))
    if "streaming" in s:
        stream = s["streaming"]
        out.append(
            (
                f"streaming {stream['megabytes']} MB body (curl, {stream['http_version']}): MB/s",
                *_sides(stream, "{:.0f}", "mb_per_s"),
                _ratio(stream, "ratio"),
                _ratio(stream, "ratio_mitmproxy"),
                f">= {t['streaming']['min_ratio']}x nginx",
                _verdict(t["streaming"]["pass"]),
            )
        )
    for count, watch in s.get("idle_watches", {}).items():
        out.append(
            (
                f"idle watch memory, {int(count):,} watches: KiB/watch",
                f"{watch['kib_per_watch']:.1f}",
                "n/a (cannot hold watches)",
                "n/a",
                f"RSS +{watch['rss_delta_kib'] / 1024:.1f} MiB",
                "",
                f"<= {t['idle_watches']['max_kib']} KiB",
                _verdict(watch["kib_per_watch"] <= t["idle_watches"]["max_kib"]),
            )
        )
    if "exec_port_forward" in s:
        up = s["exec_port_forward"]
        out.append(
            (
                f"exec / port-forward: {up['megabytes']} MB after a 101, one way: MB/s",
                *_sides(up, "{:.0f}", "mb_per_s"),
                _ratio(up, "ratio"),
                "",
                f">= {t['exec_port_forward']['min_ratio']}x nginx",
                _verdict(t["exec_port_forward"]["pass"]),
            )
        )
        out.append(
            ("  upgrade handshake, median (ms)", *_sides(up, "{:.2f}", "handshake_ms"),
             "", "", "", "")
        )  # fmt: skip
    return out


def _added(scenario: dict[str, Any], key: str) -> str:
    return f"{scenario[key]:+.3f} ms" if key in scenario else ""


def cpu_rows(results: dict[str, Any]) -> list[Row]:
    """CPU time per proxied request of every side, beside floor.py's floor for the same
    pairing of protocols (when the floor ran)."""
    s, t = results["scenarios"], results["targets"]
    floors = results.get("floor", {}).get("floor_us", {})
    labels = {**SMALL_GET_LABELS, "latency_1conn": "added latency, HTTP/2, h2load -c 1 -m 1"}
    out: list[Row] = []
    for key, label in labels.items():
        if key not in s:
            continue
        sc = s[key]
        gateway_ms = sc["gateway"]["median"]["cpu_ms_per_request"]
        floor_us = floors.get(FLOOR_OF[key])
        target = t.get(key, {})
        out.append(
            (
                label,
                *_sides(sc, "{:.3f}", "cpu_ms_per_request"),
                f"{floor_us / 1000:.3f} ({FLOOR_OF[key]})" if floor_us else "n/a",
                f"{gateway_ms / (floor_us / 1000):.2f}x" if floor_us else "",
                f"<= {target['max_cpu_ms']} ms" if "max_cpu_ms" in target else "",
                _verdict(target["pass_cpu"]) if "pass_cpu" in target else "",
            )
        )
    return out


def _aligned(header: Row, body: list[Row]) -> str:
    """An aligned Markdown table: readable on a terminal, rendered in RESULTS.md."""
    all_rows = [header, *body]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]

    def line(row: Row) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def table(results: dict[str, Any]) -> str:
    return _aligned(HEADER, rows(results))


def cpu_table(results: dict[str, Any]) -> str:
    return _aligned(CPU_HEADER, cpu_rows(results))


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


PROFILE_TITLES = {
    "profile_h2": "HTTP/2 from the client, h2 to the upstream",
    "profile_h1": "HTTP/1.1 from the client, h2 to the upstream",
    "profile_h1_h1": "HTTP/1.1 on both legs (the HTTP/1.1-only upstream)",
}


def _idle_note(idle: int) -> str:
    if not idle:
        return ""
    return (
        f" ({idle:,} more, of trio's worker thread parked on its lock, are left out: py-spy "
        "counts that wait as active, but the thread's CPU counters stay still)"
    )


def _profile_section(name: str, profile: dict[str, Any], top: int) -> list[str]:
    out = [f"### {PROFILE_TITLES[name]}", ""]
    if not profile.get("samples"):
        return [*out, "Profiling did not run (py-spy missing or could not attach)."]
    flame = (
        f" Flame graph of the other worker, same load: "
        f"[results/{profile['flamegraph']}](results/{profile['flamegraph']})."
        if profile.get("flamegraph")
        else ""
    )
    out += [
        f"py-spy {profile['rate']} Hz for {profile['seconds']} s on one gateway worker (pid "
        f"{profile['pid']}) under `{profile['load']}`; {profile['samples']:,} non-idle "
        f"samples{_idle_note(profile.get('idle', 0))}.{flame}",
        "",
        "Self time by function (where the CPU actually is):",
        "",
        "| % samples | function | file:line (hottest line) | reached from (nearest gateway "
        "frames, share) |",
        "|---:|---|---|---|",
    ]
    out += [
        f"| {h['pct']} | `{h['function']}` | `{h['location']}` | `{h['via']}` |"
        for h in profile["self"][:top]
    ]
    out += [
        "",
        "Inclusive time of the gateway's own functions (the share each stage costs, callees "
        "included):",
        "",
        "| % samples | function | file |",
        "|---:|---|---|",
    ]
    out += [
        f"| {h['pct']} | `{h['function']}` | `{h['file']}` |" for h in profile["inclusive"][:top]
    ]
    out += [
        "",
        "Self time by package: "
        + ", ".join(f"{p['package']} {p['pct']}%" for p in profile["packages"])
        + ".",
        "",
    ]
    return out


def _profiles(results: dict[str, Any]) -> list[str]:
    out = [
        "Time inside C code (OpenSSL, json) is charged to the Python line that called it.",
        "",
    ]
    for name, profile in results["profiles"].items():
        out += _profile_section(name, profile, 15 if name == "profile_h2" else 12)
    return out


def _floor_section(results: dict[str, Any]) -> list[str]:
    floor = results["floor"]
    if not floor:
        return ["The floor did not run."]
    f = floor["floor_us"]
    return [
        "`bench/floor.py`, in the same run: what one proxied request costs in TLS I/O and "
        "HTTP coding alone, in CPU time (`time.process_time`), on this machine, with the "
        "gateway's own building blocks (see the script for what each figure covers). The "
        "CPU table above sets the gateway's CPU time per request beside the floor of the "
        "same pairing of protocols.",
        "",
        "| building block | per proxied request |",
        "|---|---:|",
        f"| TLS: two sends and two receives over TLSStream, with the task switches "
        f"| {floor['tls_round_trip_us']:,.0f} µs |",
        f"| HTTP/2 coding by h2 (Huffman memo on), client leg: decode the request, encode the "
        f"answer | {floor['h2_server_us']:,.0f} µs |",
        f"| HTTP/2 coding by h2, cluster leg: encode the request, decode the answer "
        f"| {floor['h2_client_us']:,.0f} µs |",
        f"| HTTP/1.1 coding by h11, client leg | {floor['h1_server_us']:,.0f} µs |",
        f"| HTTP/1.1 coding by h11, cluster leg | {floor['h1_client_us']:,.0f} µs |",
        f"| floor `h2` (TLS + both h2 legs) | {f['h2']:,.0f} µs |",
        f"| floor `h1` (TLS + h11 client leg + h2 cluster leg) | {f['h1']:,.0f} µs |",
        f"| floor `h1_h1` (TLS + both h11 legs) | {f['h1_h1']:,.0f} µs |",
        "",
        "",
        f"Not a floor but the gateway's own HTTP/1.1 server loop, measured the same way: "
        f"the listener and `H1ServerConnection` answering a fixed 2 KB response over plain "
        f"TCP under `wrk -c 32` took {floor['h1_server_loop_us']:,.0f} µs of CPU per request, "
        f"h11's {floor['h1_server_us']:,.0f} µs included. An empty Python loop iteration took "
        f"{floor['loop_ns']:.1f} ns of CPU.",
    ]


def _h2load_h1_note(results: dict[str, Any]) -> str:
    scenario = results["scenarios"].get("small_get_h1_h2load")
    if scenario is None:
        return ""
    counted = ", ".join(
        f"{SIDE_NAMES[side]} {'yes' if scenario[side]['all_2xx'] else 'NO'}"
        for side in ("gateway", "reference", "mitmproxy")
        if side in scenario
    )
    return (
        " `h2load --h1` counted every request done as a 2xx response (no 3xx, 4xx or 5xx), "
        f"in every round: {counted}."
    )


def write_markdown(results: dict[str, Any], path: Path) -> None:
    m = results["machine"]
    cfg = results["settings"]
    workers = results["workers"]
    failures = results["failures"]
    lines = [
        "# l7proxy benchmark: latest results",
        "",
        "Run with `make bench` (installs nginx, h2load and wrk from Debian when missing, "
        "mitmproxy into `bench/.peers`, then `.venv/bin/python bench/run.py`). This file, "
        "`results/latest.json` and the flame graphs in `results/` are rewritten by every run.",
        "",
        f"Ran {results['date']} on {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']} memory, "
        f"Python {m['python']}, Linux {m['kernel']}; {m['nginx']}, {m['h2load']}, "
        f"{m['curl'].split(' (')[0]}, wrk, {m.get('mitmproxy', 'mitmproxy')}. Load average "
        f"{m['loadavg_at_start']} at the start and {results['loadavg_at_end']} at the end "
        "(other work on the machine adds noise: the ratios of one run and the CPU time per "
        "request are the figures to read).",
        "",
        table(results),
        "",
        "Failed or non-2xx requests during measured runs: "
        + ", ".join(f"{SIDE_NAMES[side]} {n}" for side, n in failures.items())
        + f". Medians of {cfg['rounds']} interleaved rounds (l7proxy, nginx, mitmproxy, "
        f"l7proxy, ...).{_h2load_h1_note(results)}",
        "",
        "## CPU time per proxied request",
        "",
        "utime + stime of every process of the proxy under load (the gateway and its worker "
        "children, nginx's master and workers, mitmdump), read from `/proc/<pid>/stat` "
        "before and after each measured run (after its warm-up run), divided by the "
        "requests that run served; medians over the rounds. Far less sensitive than req/s "
        "to other load on the shared machine. The floor is `bench/floor.py`'s, for the same "
        "pairing of client and cluster protocols (below).",
        "",
        cpu_table(results),
        "",
        "## Workers",
        "",
        f"nginx and the gateway run {cfg['workers']} worker processes; mitmproxy has no "
        "worker option and runs as one process. The gateway's `workers: "
        f"{cfg['workers']}` starts {cfg['workers'] - 1} child process(es) with `--worker` "
        "sharing the port through SO_REUSEPORT. CPU seconds per gateway process during the "
        "measured runs: "
        + ", ".join(f"pid {pid}: {sec:.1f} s" for pid, sec in workers["cpu_seconds"].items())
        + f" ({workers['verdict']}).",
        "",
        "## Setup",
        "",
        "- Upstream: nginx (2 workers) over TLS, serving a "
        f"{results['pod_list_bytes']:,}-byte PodList at `/api/v1/namespaces/default/pods`, "
        "the discovery documents `/api`, `/apis`, `/api/v1`, and a "
        f"{cfg['stream_mb']} MB log file at `/api/v1/namespaces/default/pods/web-1/log`; "
        "one port offers h2 and HTTP/1.1, a second one HTTP/1.1 only.",
        "- l7proxy: `l7proxy serve` with OIDC (a DevIssuer on loopback, RS256), one policy per "
        "connection (get/list/watch on everything but secrets), audit events to a file, two "
        "static connections: `bench` speaks HTTP/2 to the upstream (ALPN), `bench-h1` "
        'reaches the HTTP/1.1-only port (the row marked "both legs").',
        "- nginx reference (the limit): `proxy_pass` over TLS with h2 towards clients, "
        "keep-alive HTTP/1.1+TLS connections to the upstream (nginx cannot proxy h2), "
        "`Authorization` replaced by the cluster token, `proxy_buffering off`. Same URL "
        "prefix as the gateway.",
        "- mitmproxy (the Python peer): `mitmdump --mode reverse:https://<upstream>` from "
        "PyPI in its own venv (`bench/.peers`), TLS with the bench certificate towards "
        "clients (h2 and HTTP/1.1), the upstream verified against the bench CA, "
        "`stream_large_bodies=64k`, and `bench/mitmproxy_addon.py` stripping the prefix and "
        "replacing `Authorization` with the cluster token like nginx. It speaks to the "
        "upstream in the client's HTTP version.",
        f"- Load: one client thread, {cfg['duration']:g} s per measured run after a "
        f"{cfg['warmup']:g} s warm-up run, `Authorization: Bearer <JWT>` on every request. "
        "HTTP/1.1: `wrk -t 1 -c 32 --latency` (keep-alive, p50/p99 from wrk) and `h2load "
        "--h1 -t 1 -c 32`. HTTP/2: `h2load -t 1 -c 8 -m 16`; added latency: `h2load -c 1 "
        f"-m 1` for {cfg['latency_duration']:g} s; h2load's p50/p99 are nearest-rank "
        "percentiles of its `--log-file` per-request times (h2load itself only prints "
        "min/max/mean/sd).",
        "- Streaming: `curl -o /dev/null -w %{speed_download}`, one download per round.",
        "- exec / port-forward: `bench/upgrade_server.py` (trio, l7proxy's own listener, "
        "TLS) answers `Connection: Upgrade` + `Upgrade: bench` with 101 and then sends "
        f"{cfg['upgrade_mb']} MB in 256 KiB writes. A fresh gateway (connection `upgrade`, "
        "same policy; `GET .../pods/web-1/log` with an Upgrade header is authorized as `get "
        "pods/log`) splices it; the reference is nginx with `proxy_http_version 1.1`, "
        '`proxy_set_header Upgrade $http_upgrade` and `Connection "upgrade"`, TLS on both '
        "sides. The client (a blocking Python ssl socket, ALPN http/1.1) sends the upgrade "
        "request, checks the 101 and times from the 101 to the last byte: one direction, "
        "upstream to client (exec stdout, port-forward download); one stream per round.",
        "- Idle watches: a fresh gateway per count in front of the Python SandboxCluster "
        "(nginx cannot hold watches); `bench/watch_client.py` opens the watches over HTTP/2 "
        "with l7proxy's own H2Session (250 streams per connection), waits for every response "
        "head and the initial events, and holds them; RSS summed over the gateway's processes "
        "after a warm-up, before and 3 s after, divided by the count.",
        "- Load generator, upstream and the proxies share the same CPUs, so absolute numbers "
        "are low and the ratios are the point.",
        "",
        "## The floor under a Python gateway",
        "",
        *_floor_section(results),
        "",
        "## Where the time goes",
        "",
        *_profiles(results),
    ]
    path.write_text("\n".join(lines))
