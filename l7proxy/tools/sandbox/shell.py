"""The sandbox's built-in shell: what `kubectl exec` and `kubectl attach` run in a pod.

A sandbox pod has no processes, only an in-memory `Container` (hostname, environment and
files). Commands are coroutines over a `Stdio`: enough of sh, coreutils and GNU tar that
kubectl's exec, attach and cp behave as against a real container. A `Terminal` plays the
pty's line discipline for `-t` sessions: echo, line editing, ^C, ^D and CR LF output.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import tarfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Final

import trio

from l7proxy.tools.sandbox.script import (
    AndOr,
    For,
    Redirect,
    ScriptError,
    Simple,
    Word,
    parse_script,
)

MAX_FILESYSTEM_BYTES: Final = 64 * 1024 * 1024
MAX_FILESYSTEM_ENTRIES: Final = 10_000
MAX_LINE: Final = 64 * 1024  # a longer line is cut here, as a tty's canonical buffer does
MAX_ARCHIVE: Final = 2 * MAX_FILESYSTEM_BYTES  # what `tar -x` reads from stdin at most
TERMINAL_QUEUE: Final = 16  # typed lines waiting for the program to read them
PROMPT: Final = b"$ "
DEV_NULL: Final = "/dev/null"
PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Writer = Callable[[bytes], Awaitable[None]]


# --- files ----------------------------------------------------------------------------


class FileSystemError(Exception):
    """A file operation failed; the message is the errno text a real container prints."""


def resolve(cwd: str, path: str) -> str:
    """An absolute, normalised path (".." stops at "/")."""
    joined = posixpath.normpath(posixpath.join(cwd, path))
    return "/" + joined.lstrip("/")  # normpath keeps a leading "//"


class PodFilesystem:
    """Files by absolute path, and the directories that exist (a file's parents always do).

    Bounded in bytes and in entries: a write past either fails with ENOSPC."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        *,
        capacity: int = MAX_FILESYSTEM_BYTES,
        max_entries: int = MAX_FILESYSTEM_ENTRIES,
    ) -> None:
        self._files: dict[str, bytes] = {}
        self._dirs: set[str] = {"/"}
        self._capacity = capacity
        self._max_entries = max_entries
        self._used = 0
        for path, data in (files or {}).items():
            self.mkdir(posixpath.dirname(path))
            self.write(path, data)

    def is_dir(self, path: str) -> bool:
        return path in self._dirs

    def is_file(self, path: str) -> bool:
        return path in self._files

    def exists(self, path: str) -> bool:
        return path in self._dirs or path in self._files

    def read(self, path: str) -> bytes:
        if path in self._dirs:
            raise FileSystemError("Is a directory")
        try:
            return self._files[path]
        except KeyError:
            raise FileSystemError("No such file or directory") from None

    def write(self, path: str, data: bytes) -> None:
        parent = posixpath.dirname(path)
        if parent not in self._dirs:
            raise FileSystemError(
                "Not a directory" if parent in self._files else "No such file or directory"
            )
        if path in self._dirs:
            raise FileSystemError("Is a directory")
        used = self._used - len(self._files.get(path, b"")) + len(data)
        if used > self._capacity or (path not in self._files and self._full()):
            raise FileSystemError("No space left on device")
        self._files[path] = data
        self._used = used

    def mkdir(self, path: str) -> None:
        """Create `path` and its missing parents (`mkdir -p`)."""
        parts = [p for p in path.split("/") if p]
        for depth in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:depth])
            if prefix in self._files:
                raise FileSystemError("Not a directory")
            if prefix not in self._dirs:
                if self._full():
                    raise FileSystemError("No space left on device")
                self._dirs.add(prefix)

    def listdir(self, path: str) -> list[str]:
        """The names directly under a directory, sorted."""
        prefix = path.rstrip("/") + "/"
        return sorted(
            {
                entry[len(prefix) :].split("/")[0]
                for entry in (*self._files, *self._dirs)
                if entry.startswith(prefix) and entry != prefix
            }
        )

    def walk(self, path: str) -> Iterator[str]:
        """`path` and, for a directory, everything under it, parents before children."""
        yield path
        if path in self._dirs:
            for name in self.listdir(path):
                yield from self.walk(posixpath.join(path, name))

    def _full(self) -> bool:
        return len(self._files) + len(self._dirs) >= self._max_entries


class Container:
    """A pod's container as its processes see it: a hostname, an environment and files."""

    def __init__(self, hostname: str, env: Mapping[str, str], clock: Callable[[], float]) -> None:
        self.hostname = hostname
        self.env = {"PATH": PATH, "HOSTNAME": hostname, "HOME": "/root", **env}
        self.clock = clock
        self.fs = PodFilesystem(
            {
                "/etc/hostname": f"{hostname}\n".encode(),
                "/etc/os-release": b'PRETTY_NAME="l7proxy sandbox"\nID=sandbox\n',
                "/usr/share/nginx/html/index.html": b"<h1>Welcome to the sandbox!</h1>\n",
            }
        )
        for directory in ("/bin", "/root", "/tmp", "/var/log"):
            self.fs.mkdir(directory)


# --- standard input and the terminal --------------------------------------------------


class StdinReader:
    """A process's standard input: chunks from a channel, read as they come or by line.

    A chunk of b"" is a terminal's ^D: the end of input for this read only. The channel's
    end is the end of input for good."""

    def __init__(self, source: trio.abc.ReceiveChannel[bytes] | None) -> None:
        self._source = source
        self._buffer = bytearray()

    async def _receive(self) -> bytes:
        if self._source is None:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            return await self._source.receive()
        except trio.EndOfChannel:
            self._source = None
            return b""

    async def read_some(self) -> bytes:
        """The next bytes; b"" at the end of input."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            await trio.lowlevel.checkpoint()
            return data
        return await self._receive()

    async def read_line(self) -> bytes:
        """The next line with its newline (cut at `MAX_LINE`); at the end of input what is
        left without one, then b""."""
        while (end := self._buffer.find(b"\n")) < 0 and len(self._buffer) < MAX_LINE:
            chunk = await self._receive()
            if not chunk:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += chunk
        cut = end + 1 if 0 <= end < MAX_LINE else MAX_LINE
        line = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        return line


_CR, _LF, _BS, _DEL, _ETX, _EOT = 0x0D, 0x0A, 0x08, 0x7F, 0x03, 0x04


class Terminal:
    """A pty in canonical mode between a client's keystrokes and the program.

    Typed bytes are echoed and collected into a line that the program reads on Enter; DEL
    or BS erases a character, ^C discards the line and interrupts the foreground command,
    ^D ends input (for one read) on an empty line. Output turns LF into CR LF (ONLCR)."""

    def __init__(self, output: Writer) -> None:
        self._output = output
        self._cooked_send, cooked = trio.open_memory_channel[bytes](TERMINAL_QUEUE)
        self.stdin = StdinReader(cooked)
        self._line = bytearray()
        self._foreground: trio.CancelScope | None = None

    async def write(self, data: bytes) -> None:
        await self._output(data.replace(b"\n", b"\r\n"))

    async def run(self, keystrokes: trio.abc.ReceiveChannel[bytes]) -> None:
        """Process keystrokes until the client's input ends; the program then reads EOF."""
        async with self._cooked_send:
            async for chunk in keystrokes:
                await self._type(chunk)

    @contextlib.contextmanager
    def foreground(self) -> Iterator[trio.CancelScope]:
        """The scope ^C cancels while the block runs (the innermost one, as a job's)."""
        previous = self._foreground
        try:
            with trio.CancelScope() as scope:
                self._foreground = scope
                yield scope
        finally:
            self._foreground = previous

    async def _type(self, chunk: bytes) -> None:
        echo = bytearray()
        for byte in chunk:
            if byte in (_CR, _LF):
                echo += b"\r\n"
                await self._deliver(echo, bytes(self._line) + b"\n")
            elif byte in (_DEL, _BS):
                if self._line:
                    _erase_character(self._line)
                    echo += b"\b \b"
            elif byte == _ETX:
                echo += b"^C\r\n"
                self._line.clear()
                if self._foreground is not None:
                    self._foreground.cancel()
            elif byte == _EOT:
                await self._deliver(echo, bytes(self._line))  # b"" on an empty line: EOF
            else:
                self._line.append(byte)
                echo.append(byte)
                if len(self._line) >= MAX_LINE:
                    await self._deliver(echo, bytes(self._line))
        if echo:
            await self._output(bytes(echo))

    async def _deliver(self, echo: bytearray, data: bytes) -> None:
        """Hand `data` to the program, after the echo of what was typed for it."""
        if echo:
            await self._output(bytes(echo))
            echo.clear()
        self._line.clear()
        await self._cooked_send.send(data)


def _erase_character(line: bytearray) -> None:
    """Drop the last UTF-8 character: its continuation bytes, then its lead byte."""
    while line and line[-1] & 0xC0 == 0x80:
        line.pop()
    if line:
        line.pop()


@dataclass(frozen=True, slots=True)
class Stdio:
    stdin: StdinReader
    stdout: Writer
    stderr: Writer
    terminal: Terminal | None = None

    def foreground(self) -> contextlib.AbstractContextManager[trio.CancelScope]:
        """A scope ^C cancels on a terminal; without one nothing interrupts."""
        return self.terminal.foreground() if self.terminal is not None else trio.CancelScope()


# --- the shell ------------------------------------------------------------------------


class ShellExit(Exception):
    """`exit N`: unwinds to the shell that runs the script."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


Command = Callable[["Shell", list[str], Stdio], Awaitable[int]]


class Shell:
    """One sh process: its environment, working directory and last exit status."""

    def __init__(
        self, container: Container, *, env: Mapping[str, str] | None = None, cwd: str = "/"
    ) -> None:
        self.container = container
        self.env = dict(container.env if env is None else env)
        self.cwd = cwd
        self.status = 0

    @property
    def fs(self) -> PodFilesystem:
        return self.container.fs

    def path(self, name: str) -> str:
        return resolve(self.cwd, name)

    async def run(self, argv: list[str], io: Stdio) -> int:
        """Run a command as a process of its own: `exit` ends only it."""
        try:
            return await self.execute(argv, io)
        except ShellExit as done:
            return done.code

    async def execute(self, argv: list[str], io: Stdio) -> int:
        name = argv[0]
        command = _COMMANDS.get(posixpath.basename(name))
        if command is None:
            await io.stderr(f"{name}: command not found\n".encode())
            self.status = 127
        else:
            self.status = await command(self, argv[1:], io)
        return self.status

    async def run_script(self, script: str, io: Stdio) -> int:
        try:
            parsed = parse_script(script)
        except ScriptError as err:
            await io.stderr(f"sh: {err}\n".encode())
            self.status = 2
            return 2
        return await self._list(parsed, io)

    async def _list(self, items: tuple[AndOr, ...], io: Stdio) -> int:
        for item in items:
            await self._pipeline(item.first, io)
            for connector, pipeline in item.rest:
                if (connector == "&&") == (self.status == 0):
                    await self._pipeline(pipeline, io)
        return self.status

    async def _pipeline(self, commands: tuple[Simple | For, ...], io: Stdio) -> int:
        """Each stage runs to its end before the next reads what it wrote: the commands
        here are finite, and the output they can write is bounded by the filesystem's."""
        stdin = io.stdin
        for command in commands[:-1]:
            captured = bytearray()

            async def capture(data: bytes, into: bytearray = captured) -> None:
                into += data
                await trio.lowlevel.checkpoint()

            await self._command(command, Stdio(stdin, capture, io.stderr, io.terminal))
            stdin = _reader_of(bytes(captured))
        return await self._command(commands[-1], Stdio(stdin, io.stdout, io.stderr, io.terminal))

    async def _command(self, command: Simple | For, io: Stdio) -> int:
        if isinstance(command, For):
            for item in command.items:
                self.env[command.name] = self.expand(item)
                await self._list(command.body, io)
            return self.status
        try:
            redirected = self._redirected(command.redirects, io)
        except FileSystemError as err:
            await io.stderr(f"sh: {err}\n".encode())
            self.status = 1
            return 1
        if not command.words:
            self.status = 0
            return 0
        return await self.execute([self.expand(w) for w in command.words], redirected)

    def expand(self, word: Word) -> str:
        return "".join(
            (str(self.status) if text == "?" else self.env.get(text, "")) if var else text
            for var, text in word.parts
        )

    def _redirected(self, redirects: tuple[Redirect, ...], io: Stdio) -> Stdio:
        """`io` with each redirection applied in order, as sh does (`>f 2>&1` sends both)."""
        writers = {1: io.stdout, 2: io.stderr}
        stdin = io.stdin
        for redirect in redirects:
            if isinstance(redirect.target, int):
                writers[redirect.fd] = writers[redirect.target]
                continue
            path = self.path(self.expand(redirect.target))
            if redirect.op == "<":
                stdin = _reader_of(b"" if path == DEV_NULL else self.fs.read(path))
            else:
                writers[redirect.fd] = self._file_writer(path, append=redirect.op == ">>")
        return Stdio(stdin, writers[1], writers[2], io.terminal)

    def _file_writer(self, path: str, *, append: bool) -> Writer:
        fs = self.fs

        async def write(data: bytes) -> None:
            if path != DEV_NULL:
                fs.write(path, fs.read(path) + data)
            await trio.lowlevel.checkpoint()

        if path != DEV_NULL and not (append and fs.is_file(path)):
            fs.write(path, b"")
        return write

    async def session(self, io: Stdio) -> int:
        """Read and run commands until the end of input or `exit`; on a terminal with a
        prompt, and ^C interrupting the line or the command."""
        try:
            while True:
                if io.terminal is not None:
                    await io.stdout(PROMPT)
                with io.foreground() as reading:
                    line = await io.stdin.read_line()
                if reading.cancelled_caught:
                    continue
                if not line:
                    if io.terminal is not None:
                        await io.stdout(b"exit\n")
                    return self.status
                with io.foreground() as running:
                    await self.run_script(line.decode("utf-8", "replace"), io)
                if running.cancelled_caught:
                    self.status = 130
        except ShellExit as done:
            return done.code


def _reader_of(data: bytes) -> StdinReader:
    """Standard input that is `data`, then its end."""
    send, receive = trio.open_memory_channel[bytes](1)
    if data:
        send.send_nowait(data)
    send.close()
    return StdinReader(receive)


# --- commands -------------------------------------------------------------------------


async def _sh(sh: Shell, args: list[str], io: Stdio) -> int:
    """`sh -c SCRIPT`, `sh FILE`, or commands from stdin, in a child shell."""
    child = Shell(sh.container, env=sh.env, cwd=sh.cwd)
    try:
        if args[:1] == ["-c"]:
            if len(args) < 2:
                await io.stderr(b"sh: -c: option requires an argument\n")
                return 2
            return await child.run_script(args[1], io)
        if args and not args[0].startswith("-"):
            try:
                script = sh.fs.read(sh.path(args[0])).decode("utf-8", "replace")
            except FileSystemError as err:
                await io.stderr(f"sh: cannot open {args[0]}: {err}\n".encode())
                return 2
            return await child.run_script(script, io)
        return await child.session(io)
    except ShellExit as done:
        return done.code


async def _exit(sh: Shell, args: list[str], io: Stdio) -> int:
    if not args:
        raise ShellExit(sh.status)
    if not args[0].isdigit():
        await io.stderr(f"sh: exit: Illegal number: {args[0]}\n".encode())
        raise ShellExit(2)
    raise ShellExit(int(args[0]) & 0xFF)


async def _echo(sh: Shell, args: list[str], io: Stdio) -> int:
    newline = args[:1] != ["-n"]
    words = args if newline else args[1:]
    await io.stdout((" ".join(words) + ("\n" if newline else "")).encode())
    return 0


async def _cat(sh: Shell, args: list[str], io: Stdio) -> int:
    status = 0
    for name in args or ["-"]:
        if name == "-":
            while chunk := await io.stdin.read_some():
                await io.stdout(chunk)
            continue
        try:
            await io.stdout(sh.fs.read(sh.path(name)))
        except FileSystemError as err:
            await io.stderr(f"cat: {name}: {err}\n".encode())
            status = 1
    return status


async def _grep(sh: Shell, args: list[str], io: Stdio) -> int:
    """`grep [-c] [-i] [-v] PATTERN [FILE...]`; the pattern is a Python regular expression,
    which agrees with grep's basic ones on plain text, `.`, `*`, `^` and `$`."""
    flags = {a for a in args if a.startswith("-") and len(a) > 1}
    operands = [a for a in args if a not in flags]
    if not operands or not flags <= {"-c", "-i", "-v"}:
        await io.stderr(b"Usage: grep [-civ] PATTERN [FILE]...\n")
        return 2
    try:
        pattern = re.compile(operands[0].encode(), re.IGNORECASE if "-i" in flags else 0)
    except re.error as err:
        await io.stderr(f"grep: {err}\n".encode())
        return 2
    captured = bytearray()

    async def collect(data: bytes) -> None:
        captured.extend(data)
        await trio.lowlevel.checkpoint()

    status = await _cat(sh, operands[1:], Stdio(io.stdin, collect, io.stderr, io.terminal))
    lines = [line for line in bytes(captured).splitlines(keepends=True)]
    found = [line for line in lines if bool(pattern.search(line)) != ("-v" in flags)]
    await io.stdout(f"{len(found)}\n".encode() if "-c" in flags else b"".join(found))
    return 2 if status else 0 if found else 1


async def _env(sh: Shell, args: list[str], io: Stdio) -> int:
    if args:
        await io.stderr(b"env: running a command is not supported here\n")
        return 125
    await io.stdout("".join(f"{key}={value}\n" for key, value in sh.env.items()).encode())
    return 0


async def _ls(sh: Shell, args: list[str], io: Stdio) -> int:
    """Names one per line (as `ls` prints when not on a terminal); options are ignored."""
    operands = [a for a in args if not a.startswith("-")] or ["."]
    status, out = 0, list[str]()
    for name in operands:
        path = sh.path(name)
        if sh.fs.is_dir(path):
            if len(operands) > 1:
                out.append(f"{name}:")
            out.extend(sh.fs.listdir(path))
        elif sh.fs.is_file(path):
            out.append(name)
        else:
            await io.stderr(f"ls: cannot access '{name}': No such file or directory\n".encode())
            status = 2
    await io.stdout("".join(f"{line}\n" for line in out).encode())
    return status


async def _sleep(sh: Shell, args: list[str], io: Stdio) -> int:
    if not args:
        await io.stderr(b"sleep: missing operand\n")
        return 1
    total = 0.0
    for arg in args:
        try:
            seconds = float(arg)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:  # also refuses NaN
            await io.stderr(f"sleep: invalid time interval '{arg}'\n".encode())
            return 1
        total += seconds
    await trio.sleep(total)
    return 0


async def _cd(sh: Shell, args: list[str], io: Stdio) -> int:
    path = sh.path(args[0] if args else sh.env.get("HOME", "/"))
    if not sh.fs.is_dir(path):
        await io.stderr(f"sh: cd: can't cd to {args[0] if args else path}\n".encode())
        return 2
    sh.cwd = path
    return 0


async def _pwd(sh: Shell, args: list[str], io: Stdio) -> int:
    await io.stdout(f"{sh.cwd}\n".encode())
    return 0


async def _hostname(sh: Shell, args: list[str], io: Stdio) -> int:
    await io.stdout(f"{sh.container.hostname}\n".encode())
    return 0


async def _true(sh: Shell, args: list[str], io: Stdio) -> int:
    await trio.lowlevel.checkpoint()
    return 0


async def _false(sh: Shell, args: list[str], io: Stdio) -> int:
    await trio.lowlevel.checkpoint()
    return 1


async def _test(sh: Shell, args: list[str], io: Stdio) -> int:
    """The forms scripts and kubectl cp use: file tests, string tests and comparisons."""
    await trio.lowlevel.checkpoint()
    match args:
        case []:
            return 1
        case ["-d", name]:
            return 0 if sh.fs.is_dir(sh.path(name)) else 1
        case ["-f", name]:
            return 0 if sh.fs.is_file(sh.path(name)) else 1
        case ["-e", name]:
            return 0 if sh.fs.exists(sh.path(name)) else 1
        case ["-n", text] | [text]:
            return 0 if text else 1
        case ["-z", text]:
            return 0 if not text else 1
        case [left, "=" | "==", right]:
            return 0 if left == right else 1
        case [left, "!=", right]:
            return 0 if left != right else 1
    await io.stderr(f"test: unsupported expression: {' '.join(args)}\n".encode())
    return 2


async def _bracket(sh: Shell, args: list[str], io: Stdio) -> int:
    if args[-1:] != ["]"]:
        await io.stderr(b"[: missing ]\n")
        return 2
    return await _test(sh, args[:-1], io)


# --- tar ------------------------------------------------------------------------------


class _TarUsage(Exception):
    """Options GNU tar would refuse (or that this one does not support)."""


@dataclass(frozen=True, slots=True)
class _TarOptions:
    mode: str  # "c" create or "x" extract
    directory: str  # -C, "" for the working directory
    verbose: bool
    operands: tuple[str, ...]


# Long options kubectl cp sends that change nothing here (no owners or modes are kept).
_TAR_IGNORED: Final = frozenset({"--no-same-permissions", "--no-same-owner"})


def _tar_options(args: list[str]) -> _TarOptions:
    """GNU tar's option forms kubectl uses: `cf - PATH`, `-xmf - -C DIR`."""
    rest = list(args)
    if rest and not rest[0].startswith("-"):
        rest[0] = "-" + rest[0]  # the traditional form: letters without a dash
    mode, archive, directory, verbose, operands = "", "-", "", False, list[str]()
    while rest:
        arg = rest.pop(0)
        if arg in _TAR_IGNORED:
            continue
        if arg.startswith("--"):
            raise _TarUsage(f"unrecognized option '{arg}'")
        if arg == "-" or not arg.startswith("-"):
            operands.append(arg)
            continue
        letters = arg[1:]
        for i, letter in enumerate(letters):
            if letter in "cx":
                if mode and mode != letter:
                    raise _TarUsage("You may not specify more than one '-Acdtrux' option")
                mode = letter
            elif letter == "v":
                verbose = True
            elif letter in "mpo":
                continue  # mtimes, modes and owners: nothing to restore in memory
            elif letter in "fC":
                attached = letters[i + 1 :]
                if not attached and not rest:
                    raise _TarUsage(f"option requires an argument -- '{letter}'")
                value = attached or rest.pop(0)
                if letter == "f":
                    archive = value
                else:
                    directory = value
                break
            else:
                raise _TarUsage(f"invalid option -- '{letter}'")
    if not mode:
        raise _TarUsage("You must specify one of the '-Acdtrux' options")
    if archive != "-":
        raise _TarUsage("only '-' (stdin or stdout) is supported as the archive here")
    return _TarOptions(mode, directory, verbose, tuple(operands))


async def _tar(sh: Shell, args: list[str], io: Stdio) -> int:
    try:
        options = _tar_options(args)
    except _TarUsage as err:
        await io.stderr(f"tar: {err}\n".encode())
        return 2
    base = sh.path(options.directory or ".")
    if not sh.fs.is_dir(base):
        await io.stderr(
            f"tar: {options.directory}: Cannot open: No such file or directory\n"
            "tar: Error is not recoverable: exiting now\n".encode()
        )
        return 2
    if options.mode == "c":
        return await _tar_create(sh, options, base, io)
    return await _tar_extract(sh, options, base, io)


async def _tar_create(sh: Shell, options: _TarOptions, base: str, io: Stdio) -> int:
    """The archive goes to stdout whole: it is bounded by the filesystem's size. As GNU
    tar, leading slashes are dropped from names (kubectl cp expects that) and verbose
    output goes to stderr since stdout is the archive."""
    if not options.operands:
        await io.stderr(b"tar: Cowardly refusing to create an empty archive\n")
        return 2
    notes, failed, stripped = list[str](), False, False
    buffer = BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for operand in options.operands:
            path = resolve(base, operand)
            if not sh.fs.exists(path):
                notes.append(f"tar: {operand}: Cannot stat: No such file or directory\n")
                failed = True
                continue
            name = posixpath.normpath(operand)
            if name.startswith("/"):
                stripped, name = True, name.lstrip("/") or "."
            for member in sh.fs.walk(path):
                relative = member[len(path) :].lstrip("/")
                info = tarfile.TarInfo(posixpath.normpath(posixpath.join(name, relative)))
                info.mtime = int(sh.container.clock())
                if sh.fs.is_dir(member):
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(info)
                else:
                    data = sh.fs.read(member)
                    info.size, info.mode = len(data), 0o644
                    archive.addfile(info, BytesIO(data))
                if options.verbose:
                    notes.append(f"{info.name}\n")
    if stripped:
        notes.insert(0, "tar: Removing leading `/' from member names\n")
    if failed:
        notes.append("tar: Exiting with failure status due to previous errors\n")
    await io.stdout(buffer.getvalue())
    if notes:
        await io.stderr("".join(notes).encode())
    return 2 if failed else 0


async def _read_archive(stdin: StdinReader) -> bytes | None:
    """All of stdin, or None past `MAX_ARCHIVE`."""
    data = bytearray()
    while chunk := await stdin.read_some():
        data += chunk
        if len(data) > MAX_ARCHIVE:
            return None
    return bytes(data)


async def _tar_extract(sh: Shell, options: _TarOptions, base: str, io: Stdio) -> int:
    """Members are written under `base`; names with `..` are skipped, as GNU tar does."""
    data = await _read_archive(io.stdin)
    if data is None:
        await io.stderr(f"tar: archive larger than {MAX_ARCHIVE} bytes\n".encode())
        return 2
    messages, status = list[str](), 0
    try:
        with tarfile.open(fileobj=BytesIO(data), mode="r:") as archive:
            for member in archive:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if ".." in parts:
                    messages.append(f"tar: {member.name}: Member name contains '..'\n")
                    status = 2
                    continue
                path = resolve(base, "/".join(parts))
                try:
                    _extract_member(sh.fs, archive, member, path)
                except FileSystemError as err:
                    messages.append(f"tar: {member.name}: Cannot open: {err}\n")
                    status = 2
                    continue
                if options.verbose:
                    await io.stdout(f"{member.name}\n".encode())
    except tarfile.TarError:
        messages.append("tar: This does not look like a tar archive\n")
        status = 2
    if status:
        messages.append("tar: Exiting with failure status due to previous errors\n")
        await io.stderr("".join(messages).encode())
    return status


def _extract_member(
    fs: PodFilesystem, archive: tarfile.TarFile, member: tarfile.TarInfo, path: str
) -> None:
    """Directories and regular files; links and devices have no place in memory."""
    if member.isdir():
        fs.mkdir(path)
        return
    content = archive.extractfile(member) if member.isreg() else None
    if content is not None:
        fs.mkdir(posixpath.dirname(path))
        fs.write(path, content.read())


_COMMANDS: Final[Mapping[str, Command]] = {
    "[": _bracket,
    "bash": _sh,
    "cat": _cat,
    "cd": _cd,
    "echo": _echo,
    "env": _env,
    "exit": _exit,
    "false": _false,
    "grep": _grep,
    "hostname": _hostname,
    "ls": _ls,
    "pwd": _pwd,
    "sh": _sh,
    "sleep": _sleep,
    "tar": _tar,
    "test": _test,
    "true": _true,
}
