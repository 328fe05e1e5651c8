"""`l7proxy` with a memory reading on SIGUSR2, for `soak.py` (the gateway has no such hook).

    .venv/bin/python bench/gateway_probe.py DIR [--tracemalloc] serve --config gateway.yaml

Runs the `l7proxy` command line with the arguments after DIR. On each SIGUSR2 it appends
one JSON line to DIR/readings.jsonl: the live objects the garbage collector tracks (and
how many of each type, for types with TYPE_FLOOR or more), the blocks Python's allocator
has handed out and its arenas, the TLS contexts and the sessions cached in them, where the
RSS lies (glibc's heap, other anonymous memory, files) and, when glibc is the allocator
(not a preloaded jemalloc), what its malloc has in use and holds free. With `--tracemalloc`
it traces allocations from the start (FRAMES frames each; slows the gateway a lot) and also
writes DIR/NNN.snapshot and the traced heap. A reading runs in the gateway's own thread,
so it pauses the gateway for a moment (with a snapshot: a second or more).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import signal
import ssl
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

FRAMES = 10
TYPE_FLOOR = 50  # object types with fewer live instances are left out of a reading
MIB = 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [  # all ten, in glibc's order: it is returned by value
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


def _malloc() -> dict[str, float]:
    """glibc's own figures over all its arenas: bytes in use (small and mmapped) and free."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return {
        "malloc_in_use_mib": round((info.uordblks + info.hblkhd) / MIB, 2),
        "malloc_free_mib": round(info.fordblks / MIB, 2),
    }


def _glibc_allocates() -> bool:
    """Whether malloc is glibc's: a preloaded jemalloc (`--malloc jemalloc`) replaces it, and
    then glibc's own figures describe an allocator nobody calls."""
    return "/libjemalloc.so" not in Path("/proc/self/maps").read_text()


def _mappings() -> dict[str, float]:
    """Where the RSS lies: glibc's main heap, other anonymous memory (Python's allocator
    arenas, glibc's thread arenas, large mmapped blocks), and file mappings (code)."""
    rss = {"heap": 0, "anon": 0, "file": 0}
    kind = "file"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields[0].endswith(":"):
            if fields[0] == "Rss:":
                rss[kind] += int(fields[1])
            continue
        name = fields[5] if len(fields) > 5 else ""
        kind = "heap" if name == "[heap]" else "anon" if not name.startswith("/") else "file"
    return {f"{k}_rss_mib": round(v / 1024, 2) for k, v in rss.items()}


def _pymalloc_arenas() -> int:
    """Python's allocator arenas now held (1 MiB each on 3.10+), from its C-level report."""
    with tempfile.TemporaryFile() as report:
        saved = os.dup(2)
        try:
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        report.seek(0)
        for line in report.read().decode().splitlines():
            if line.startswith("# arenas allocated current"):
                return int(line.split("=")[1].replace(",", ""))
    return -1


def reading(out: Path, index: int) -> dict[str, Any]:
    started = time.monotonic()
    found: dict[str, Any] = {"index": index}
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(out / f"{index:03d}.snapshot"))
        found["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / MIB, 2)
    objects = gc.get_objects()
    found["gc_objects"] = len(objects)
    types = Counter(type(o).__qualname__ for o in objects)
    found["types"] = {name: n for name, n in types.most_common() if n >= TYPE_FLOOR}
    contexts = [o for o in objects if isinstance(o, ssl.SSLContext)]
    del objects
    found["ssl_contexts"] = len(contexts)
    found["ssl_cached_sessions"] = sum(c.session_stats()["number"] for c in contexts)
    found["python_blocks"] = sys.getallocatedblocks()
    if _glibc_allocates():
        found |= _malloc()
    found |= _mappings()
    found["pymalloc_arenas"] = _pymalloc_arenas()
    found["took_s"] = round(time.monotonic() - started, 2)
    return found


def main() -> int:
    out = Path(sys.argv[1])
    args = sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    if args[:1] == ["--tracemalloc"]:
        # Imported untraced: tracing makes the imports take a minute, and what they
        # allocate is there from the start anyway.
        importlib.import_module("l7proxy.runtime.server")
        tracemalloc.start(FRAMES)
        args = args[1:]
    count = 0

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal count
        line = json.dumps(reading(out, count))
        with (out / "readings.jsonl").open("a") as readings:
            readings.write(line + "\n")
        count += 1

    signal.signal(signal.SIGUSR2, on_signal)
    from l7proxy.tools.cli import main as l7proxy

    return l7proxy(args)


if __name__ == "__main__":
    raise SystemExit(main())
