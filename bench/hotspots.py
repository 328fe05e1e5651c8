"""Summarise a py-spy `--format raw` profile (collapsed stacks, one `frame;frame;… count`
line per distinct stack, each frame `function (file:line)`): where the samples are."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*):(?P<line>\d+)\)$")
PROJECT_PACKAGES = ("l7proxy", "protocols", "policy")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @property
    def package(self) -> str:
        """The top-level package (`h2`, `l7proxy`) or, for a stdlib module, its name."""
        if self.file.startswith("<"):  # "<frozen abc>", "<attrs generated methods outcome…>"
            return self.file.strip("<>").split()[-1].split(".")[0]
        head = self.file.split("/", 1)[0]
        return head.removesuffix(".py") if "/" not in self.file else head

    @property
    def is_project(self) -> bool:
        return self.package in PROJECT_PACKAGES


def _parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "?", 0)
    return Frame(match["function"], match["file"], int(match["line"]))


def is_idle_wait(frames: list[Frame]) -> bool:
    """A trio worker thread parked on its lock between jobs. py-spy counts a lock wait with
    a timeout as active, but the thread uses no CPU there (its /proc counters stay still
    under load): these samples are left out."""
    leaf = frames[-1]
    return leaf.function == "WorkerThread._work" and leaf.file.endswith("_thread_cache.py")


def read_stacks(path: Path) -> tuple[list[tuple[list[Frame], int]], int]:
    """The stacks with their sample counts, and the count of idle-wait samples left out."""
    stacks, idle = [], 0
    for row in path.read_text().splitlines():
        frames, _, count = row.rpartition(" ")
        if frames and count.isdigit():
            parsed = [_parse_frame(f) for f in frames.split(";")]
            if is_idle_wait(parsed):
                idle += int(count)
            else:
                stacks.append((parsed, int(count)))
    return stacks, idle


def _reached_from(frames: list[Frame]) -> str:
    """The project frame nearest the leaf and, to tell e.g. the client side of an HTTP/2
    session from the upstream side, the nearest project frame above it in another file."""
    project = [f for f in reversed(frames) if f.is_project]
    if not project:
        return "?"
    inner = project[0]
    outer = next((f for f in project if f.file != inner.file), None)
    return inner.function if outer is None else f"{inner.function} < {outer.function}"


def summarise(path: Path, top: int = 15) -> dict[str, object]:
    """Self time by function (with its hottest line), inclusive time of the project's own
    functions (leaving out entry points present in every sample), and self time by
    package; percentages of all (non-idle) samples."""
    stacks, idle = read_stacks(path)
    total = sum(count for _, count in stacks)
    if not total:
        return {"samples": 0, "idle": idle, "self": [], "inclusive": [], "packages": []}
    self_time: Counter[tuple[str, str]] = Counter()
    lines: Counter[tuple[str, str, int]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    callers: dict[tuple[str, str], Counter[str]] = {}
    for frames, count in stacks:
        leaf = frames[-1]
        self_time[leaf.function, leaf.file] += count
        callers.setdefault((leaf.function, leaf.file), Counter())[_reached_from(frames)] += count
        lines[leaf.function, leaf.file, leaf.line] += count
        packages[leaf.package] += count
        for key in {(f.function, f.file) for f in frames if f.is_project}:
            inclusive[key] += count

    def pct(count: int) -> float:
        return round(100 * count / total, 1)

    def via(key: tuple[str, str]) -> str:
        """The commonest `_reached_from` of a function's samples, with its share."""
        name, n = callers[key].most_common(1)[0]
        return f"{name} ({round(100 * n / self_time[key])}%)"

    def hottest_line(function: str, file: str) -> int:
        candidates = {k[2]: n for k, n in lines.items() if k[:2] == (function, file)}
        return max(candidates, key=lambda line: candidates[line])

    return {
        "samples": total,
        "idle": idle,
        "self": [
            {
                "function": function,
                "location": f"{file}:{hottest_line(function, file)}",
                "pct": pct(count),
                "via": via((function, file)),
            }
            for (function, file), count in self_time.most_common(top)
        ],
        "inclusive": [
            {"function": function, "file": file, "pct": pct(count)}
            for (function, file), count in inclusive.most_common()
            if count < total
        ][:top],
        "packages": [{"package": name, "pct": pct(n)} for name, n in packages.most_common(top)],
    }
