"""The results table (terminal and Markdown), bench/results/latest.json and bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str, str]
HEADER: Row = ("scenario", "l7proxy", "nginx proxy_pass", "comparison", "target", "result")


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
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def _version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip()


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def rows(results: dict[str, Any]) -> list[Row]:
    s = results["scenarios"]
    t = results["targets"]
    out: list[Row] = []
    for key, label in (
        ("small_get_h1", "small GET, HTTP/1.1, 32 conns: req/s"),
        ("small_get_h2", "small GET, HTTP/2, 8 conns x 16 streams: req/s"),
    ):
        gw, ref = s[key]["gateway"]["median"], s[key]["reference"]["median"]
        out.append(
            (
                label,
                f"{gw['rps']:,.0f}",
                f"{ref['rps']:,.0f}",
                f"{s[key]['ratio']:.2f}x",
                f">= {t[key]['min_ratio']}x",
                _verdict(t[key]["pass"]),
            )
        )
        out.append(
            (
                "  latency p50 / p99 (ms)",
                f"{gw['p50_ms']:.2f} / {gw['p99_ms']:.2f}",
                f"{ref['p50_ms']:.2f} / {ref['p99_ms']:.2f}",
                "",
                "",
                "",
            )
        )
    lat = s["latency_1conn"]
    gw, ref = lat["gateway"]["median"], lat["reference"]["median"]
    out.append(
        (
            "added latency, 1 conn sequential, HTTP/2: p50 (ms)",
            f"{gw['p50_ms']:.3f}",
            f"{ref['p50_ms']:.3f}",
            f"+{lat['added_p50_ms']:.3f} ms",
            f"<= {t['latency_1conn']['max_added_ms']} ms",
            _verdict(t["latency_1conn"]["pass"]),
        )
    )
    out.append(("  p99 (ms)", f"{gw['p99_ms']:.3f}", f"{ref['p99_ms']:.3f}", "", "", ""))
    stream = s["streaming"]
    out.append(
        (
            f"streaming {stream['megabytes']} MB body (curl, {stream['http_version']}): MB/s",
            f"{stream['gateway']['median_mb_per_s']:.0f}",
            f"{stream['reference']['median_mb_per_s']:.0f}",
            f"{stream['ratio']:.2f}x",
            f">= {t['streaming']['min_ratio']}x",
            _verdict(t["streaming"]["pass"]),
        )
    )
    for count, watch in s["idle_watches"].items():
        out.append(
            (
                f"idle watch memory, {int(count):,} watches: KiB/watch",
                f"{watch['kib_per_watch']:.1f}",
                "n/a (cannot hold watches)",
                f"RSS +{watch['rss_delta_kib'] / 1024:.1f} MiB",
                f"<= {t['idle_watches']['max_kib']} KiB",
                _verdict(watch["kib_per_watch"] <= t["idle_watches"]["max_kib"]),
            )
        )
    up = s["exec_port_forward"]
    out.append(
        (
            f"exec / port-forward: {up['megabytes']} MB after a 101, one way: MB/s",
            f"{up['gateway']['median_mb_per_s']:.0f}",
            f"{up['reference']['median_mb_per_s']:.0f}",
            f"{up['ratio']:.2f}x",
            f">= {t['exec_port_forward']['min_ratio']}x",
            _verdict(t["exec_port_forward"]["pass"]),
        )
    )
    out.append(
        (
            "  upgrade handshake, median (ms)",
            f"{up['gateway']['median_handshake_ms']:.2f}",
            f"{up['reference']['median_handshake_ms']:.2f}",
            "",
            "",
            "",
        )
    )
    return out


def table(results: dict[str, Any]) -> str:
    """An aligned Markdown table: readable on a terminal, rendered in RESULTS.md."""
    all_rows = [HEADER, *rows(results)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(HEADER))]

    def line(row: Row) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(HEADER), rule, *(line(r) for r in all_rows[1:])])


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _profile_section(profile: dict[str, Any]) -> list[str]:
    if not profile.get("samples"):
        return ["Profiling did not run (py-spy missing or could not attach)."]
    out = [
        f"py-spy {profile['rate']} Hz for {profile['seconds']} s on one gateway worker (pid "
        f"{profile['pid']}) during the HTTP/2 small-GET load; {profile['samples']:,} non-idle "
        "samples. Flame graph of the other worker, same load: "
        "[results/profile-h2.svg](results/profile-h2.svg). Time inside C code (OpenSSL, "
        "json) is charged to the Python line that called it.",
        "",
        "Self time by function (where the CPU actually is):",
        "",
        "| % samples | function | file:line (hottest line) | reached from (nearest gateway "
        "frames, share) |",
        "|---:|---|---|---|",
    ]
    out += [
        f"| {h['pct']} | `{h['function']}` | `{h['location']}` | `{h['via']}` |"
        for h in profile["self"]
    ]
    out += [
        "",
        "Inclusive time of the gateway's own functions (the share each stage costs, callees "
        "included):",
        "",
        "| % samples | function | file |",
        "|---:|---|---|",
    ]
    out += [f"| {h['pct']} | `{h['function']}` | `{h['file']}` |" for h in profile["inclusive"]]
    out += [
        "",
        "Self time by package: "
        + ", ".join(f"{p['package']} {p['pct']}%" for p in profile["packages"])
        + ".",
    ]
    return out


def _floor_section(results: dict[str, Any]) -> list[str]:
    floor = results["floor"]
    latency = results["scenarios"]["latency_1conn"]
    gateway_ms = latency["gateway"]["median"]["p50_ms"]
    nginx_ms = latency["reference"]["median"]["p50_ms"]
    total_us = floor["tls_round_trip_us"] + floor["h2_codec_us"]
    added_ms = results["targets"]["latency_1conn"]["max_added_ms"]
    budget_us = (nginx_ms + added_ms) * 1000
    return [
        "`bench/floor.py`, in the same run: what one proxied request costs in TLS I/O and "
        "HTTP/2 coding alone, on this machine, with the gateway's own building blocks "
        "(see the script for what each figure covers).",
        "",
        "| building block | per proxied request |",
        "|---|---:|",
        f"| TLS: two sends and two receives over TLSStream, with the task switches "
        f"| {floor['tls_round_trip_us']:,.0f} µs |",
        f"| HTTP/2 coding by h2 (Huffman memo on): the request and the response, each "
        f"decoded and encoded once "
        f"| {floor['h2_codec_us']:,.0f} µs |",
        f"| together | {total_us:,.0f} µs |",
        "",
        f"An empty Python loop iteration took {floor['loop_ns']:.1f} ns. In the added-latency "
        f"scenario the gateway's p50 was {gateway_ms:.2f} ms and nginx's {nginx_ms:.2f} ms: "
        f"the target of +{added_ms:g} ms leaves {budget_us:,.0f} µs per request in all, and "
        f"these two building blocks alone take {total_us:,.0f} µs of it "
        f"({100 * total_us / budget_us:.0f}%), before any gateway logic (authentication, "
        "policy, audit) or scheduling runs.",
    ]


def write_markdown(results: dict[str, Any], path: Path) -> None:
    m = results["machine"]
    cfg = results["settings"]
    workers = results["workers"]
    failures = results["failures"]
    lines = [
        "# l7proxy benchmark: latest results",
        "",
        "Run with `make bench` (installs nginx and h2load from Debian when missing, then "
        "`.venv/bin/python bench/run.py`). This file, `results/latest.json` and "
        "`results/profile-h2.svg` are rewritten by every run.",
        "",
        f"Ran {results['date']} on {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']} memory, "
        f"Python {m['python']}, Linux {m['kernel']}; {m['nginx']}, {m['h2load']}, "
        f"{m['curl'].split(' (')[0]}, wrk. Load average {m['loadavg_at_start']} at the start "
        f"and {results['loadavg_at_end']} at the end (other work on the machine adds noise).",
        "",
        table(results),
        "",
        f"Failed or non-2xx requests during measured runs: gateway {failures['gateway']}, "
        f"nginx {failures['reference']}. "
        f"Medians of {cfg['rounds']} interleaved rounds (gateway, nginx, gateway, ...).",
        "",
        "## Workers",
        "",
        f"Both proxies run {cfg['workers']} worker processes. The gateway's `workers: "
        f"{cfg['workers']}` starts {cfg['workers'] - 1} child process(es) with `--worker` "
        "sharing the port through SO_REUSEPORT. CPU seconds per gateway process during the "
        "measured small-GET runs: "
        + ", ".join(f"pid {pid}: {sec:.1f} s" for pid, sec in workers["cpu_seconds"].items())
        + f" ({workers['verdict']}).",
        "",
        "## Setup",
        "",
        "- Upstream: nginx (2 workers) over TLS with h2 and HTTP/1.1, serving a "
        f"{results['pod_list_bytes']:,}-byte PodList at `/api/v1/namespaces/default/pods`, "
        "the discovery documents `/api`, `/apis`, `/api/v1`, and a "
        f"{cfg['stream_mb']} MB log file at `/api/v1/namespaces/default/pods/web-1/log`.",
        "- l7proxy: `l7proxy serve` with OIDC (a DevIssuer on loopback, RS256), one policy "
        "(get/list/watch on everything but secrets), audit events to a file, a static "
        "connection to the upstream. It speaks HTTP/2 to the upstream (ALPN).",
        "- Reference: nginx `proxy_pass` over TLS with h2 towards clients, keep-alive "
        "HTTP/1.1+TLS connections to the upstream (nginx cannot proxy h2), `Authorization` "
        "replaced by the cluster token, `proxy_buffering off`. Same URL prefix as the gateway.",
        f"- Load: one client thread, {cfg['duration']:g} s per run after a {cfg['warmup']:g} s "
        "warm-up, `Authorization: Bearer <JWT>` on every request. HTTP/1.1: `wrk -t 1 -c 32 "
        "--latency` (keep-alive, p50/p99 from wrk). HTTP/2: `h2load -t 1 -c 8 -m 16`; added "
        f"latency: `h2load -c 1 -m 1` for {cfg['latency_duration']:g} s; p50/p99 are "
        "nearest-rank percentiles of h2load's `--log-file` per-request times (h2load itself "
        "only prints min/max/mean/sd). wrk rather than `h2load --h1` for HTTP/1.1: h2load "
        "takes the status from the reason phrase and the gateway sends `HTTP/1.1 200 ` with "
        "an empty one (legal), so h2load counted every gateway response as failed.",
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
        "- Load generator, upstream and both proxies share the same CPUs, so absolute numbers "
        "are low and the ratios are the point.",
        "",
        "## The floor under a Python gateway",
        "",
        *_floor_section(results),
        "",
        "## Where the time goes",
        "",
        *_profile_section(results["profile"]),
        "",
    ]
    path.write_text("\n".join(lines))
