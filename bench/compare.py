"""This tree's gateway against another build of it, in one run: CPU time per request.

    .venv/bin/python bench/compare.py --baseline /path/to/other/.venv/bin/l7proxy
                                      [--rounds 3] [--duration 5]

Starts the bench's upstream and issuer (as `run.py` does), this tree's gateway and the
baseline's, both with the same configuration, then runs the small-GET loads and the
one-connection latency load against each in turn, rounds interleaved, and prints the
medians: CPU time per request (from /proc, as in `run.py`), req/s and p50. Meant to show
what a change moved while other work shares the machine; it writes no file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import fixtures
import measure
import procs
import run


def _medians(results: list[measure.LoadResult]) -> dict[str, float]:
    return {
        key: statistics.median(getattr(r, key) for r in results)
        for key in ("cpu_ms_per_request", "rps", "p50_ms")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other l7proxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    settings = run.Settings(
        args.rounds, args.duration, 1, 3, 1, 1, (), 2, 1, ("none",), ("gateway",)
    )
    tmp = Path(tempfile.mkdtemp(prefix="l7proxy-compare-"))
    processes = procs.Processes(tmp)
    loads = (
        ("small GET, HTTP/1.1, wrk -c 32", run.H1_WRK, fixtures.PREFIX),
        ("small GET, HTTP/2, h2load -c 8 -m 16", run.H2_LOAD, fixtures.PREFIX),
        ("small GET, HTTP/1.1 on both legs", run.H1_WRK, fixtures.H1_PREFIX),
        ("1 connection, HTTP/2, h2load -c 1 -m 1", run.Load("h2load", 1), fixtures.PREFIX),
    )
    try:
        bench = run.Bench(settings, tmp, processes)
        bench.start()
        run.L7PROXY = args.baseline  # the second gateway is the baseline's
        port = procs.free_port()
        bench.proxies["baseline"] = bench.start_gateway(
            "bench", port, bench.ports["upstream"], bench.ports["upstream_h1"]
        )
        bench.ports["baseline"] = port
        bench.failures["baseline"] = 0
        sides = ("gateway", "baseline")
        for side in sides:
            for _, kind, prefix in loads:
                bench.load(side, kind, duration=1, warmup=0, prefix=prefix)
        print("| load | CPU ms/request: this tree / baseline | req/s | p50 (ms) |")
        print("|---|---|---|---|")
        for label, kind, prefix in loads:
            runs: dict[str, list[measure.LoadResult]] = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side in sides:
                    runs[side].append(
                        bench.load(side, kind, duration=args.duration, warmup=1, prefix=prefix)
                    )
            ours, theirs = (_medians(runs[side]) for side in sides)
            cpu = ours["cpu_ms_per_request"], theirs["cpu_ms_per_request"]
            print(
                f"| {label} | {cpu[0]:.3f} / {cpu[1]:.3f} ({cpu[0] / cpu[1] - 1:+.0%}) "
                f"| {ours['rps']:,.0f} / {theirs['rps']:,.0f} "
                f"| {ours['p50_ms']:.2f} / {theirs['p50_ms']:.2f} |",
                flush=True,
            )
        print(f"failed requests: {bench.failures['gateway']} / {bench.failures['baseline']}")
    finally:
        processes.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
