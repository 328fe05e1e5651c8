"""`l7proxy replay FILE`: play an asciicast v2 session recording in the terminal.

Output events are written as they were seen, with the original pauses (divided by
`speed`, each at most `max_wait` seconds); input, resize and marker events are not shown —
the terminal's echo of the input is part of the output already when the session had a TTY.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


class RecordingError(Exception):
    """A file that is not an asciicast v2 recording; the message names file and line."""


def events(path: Path) -> Iterator[tuple[float, str, str]]:
    """The recording's (time, kind, data) events, checked as they are read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read: {exc}") from exc
    if not lines:
        raise RecordingError(f"{path}: empty file, expected an asciicast v2 header")
    try:
        header = json.loads(lines[0])
    except ValueError as exc:
        raise RecordingError(f"{path}:1: the header is not JSON") from exc
    if not isinstance(header, dict) or header.get("version") != 2:
        raise RecordingError(f"{path}:1: expected an asciicast version 2 header")
    for number, line in enumerate(lines[1:], start=2):
        try:
            at, kind, data = json.loads(line)
            yield float(at), str(kind), str(data)
        except (ValueError, TypeError) as exc:
            raise RecordingError(f"{path}:{number}: expected [time, kind, data]") from exc


def replay(
    path: Path,
    out: BinaryIO,
    *,
    speed: float = 1.0,
    max_wait: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    previous = 0.0
    for at, kind, data in events(path):
        if kind != "o":
            continue
        pause = min(max(at - previous, 0.0) / speed, max_wait)
        previous = at
        if pause > 0:
            sleep(pause)
        out.write(data.encode("utf-8"))
        out.flush()
