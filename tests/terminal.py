"""A pseudo-terminal for driving an interactive kubectl (`exec -it`) from a test."""

from __future__ import annotations

import fcntl
import struct
import termios

import trio


def set_window(fd: int, *, columns: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Screen:
    """The controller side of a pty: what the program printed so far, and keystrokes."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self.stream = stream
        self.seen = b""
        self.transcript = b""

    async def wait_for(self, text: bytes) -> None:
        while text not in self.seen:
            data = await self.stream.receive_some()
            self.seen += data
            self.transcript += data
        self.seen = self.seen.split(text, 1)[1]

    async def type(self, keys: bytes) -> None:
        await self.stream.send_all(keys)
