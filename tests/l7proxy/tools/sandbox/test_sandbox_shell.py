"""The built-in shell: commands, scripts, tar for kubectl cp, and the terminal's line
discipline — driven directly, without a connection."""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from l7proxy.tools.sandbox.shell import (
    MAX_LINE,
    Container,
    FileSystemError,
    PodFilesystem,
    ScriptError,
    Shell,
    StdinReader,
    Stdio,
    Terminal,
    parse_script,
    resolve,
)


@dataclass
class Ran:
    code: int
    out: bytes
    err: bytes


def container() -> Container:
    return Container("web-1", {"GREETING": "hi"}, lambda: 1_700_000_000.0)


async def run(argv: list[str], stdin: bytes | None = None, *, shell: Shell | None = None) -> Ran:
    """Run `argv` with `stdin` (None: no stdin at all) and collect what it wrote."""
    out, err = bytearray(), bytearray()

    async def write_out(data: bytes) -> None:
        out.extend(data)

    async def write_err(data: bytes) -> None:
        err.extend(data)

    send, receive = trio.open_memory_channel[bytes](1)
    async with trio.open_nursery() as nursery:
        if stdin is not None:
            nursery.start_soon(_feed, send, stdin)
        else:
            send.close()
        shell = shell or Shell(container())
        code = await shell.run(argv, Stdio(StdinReader(receive), write_out, write_err))
        nursery.cancel_scope.cancel()  # a command may leave its input unread
    return Ran(code, bytes(out), bytes(err))


async def _feed(send: trio.MemorySendChannel[bytes], data: bytes) -> None:
    async with send:
        for start in range(0, len(data), 7):  # in small pieces
            await send.send(data[start : start + 7])


async def sh(script: str, stdin: bytes | None = None, *, shell: Shell | None = None) -> Ran:
    return await run(["sh", "-c", script], stdin, shell=shell)


# -- commands ---------------------------------------------------------------------------


async def test_echo_cat_and_stdin() -> None:
    assert await sh("echo hello  'two  words'; echo -n no newline") == Ran(
        0, b"hello two  words\nno newline", b""
    )
    assert await run(["cat"], b"piped\ninput") == Ran(0, b"piped\ninput", b"")
    assert await run(["cat", "/etc/hostname", "-", "/nope"], b"x") == Ran(
        1, b"web-1\nx", b"cat: /nope: No such file or directory\n"
    )
    assert await run(["cat"]) == Ran(0, b"", b"")  # no stdin: EOF at once


async def test_env_hostname_pwd_cd_and_ls() -> None:
    env = (await run(["env"])).out.decode().splitlines()
    assert {"HOSTNAME=web-1", "HOME=/root", "GREETING=hi"} <= set(env)
    assert (await run(["hostname"])).out == b"web-1\n"
    assert (await sh("cd /usr/share; pwd; cd nginx && ls; cd; pwd")).out == (
        b"/usr/share\nhtml\n/root\n"
    )
    assert (await run(["ls", "/"])).out == b"bin\netc\nroot\ntmp\nusr\nvar\n"
    assert (await run(["ls", "-l", "/etc/hostname", "/var"])).out == b"/etc/hostname\n/var:\nlog\n"
    assert await run(["ls", "/nope"]) == Ran(
        2, b"", b"ls: cannot access '/nope': No such file or directory\n"
    )
    assert await sh("cd /nope") == Ran(2, b"", b"sh: cd: can't cd to /nope\n")
    assert await run(["env", "true"]) == Ran(
        125, b"", b"env: running a command is not supported here\n"
    )


async def test_connectors_quoting_exit_and_unknown_commands() -> None:
    assert (await sh("false && echo no; true || echo no; false || echo yes")).out == b"yes\n"
    assert (await sh("echo 'a;b' \"c && d\" # a comment")).out == b"a;b c && d\n"
    assert await sh("echo before; exit 3; echo after") == Ran(3, b"before\n", b"")
    assert await sh("false; exit") == Ran(1, b"", b"")
    assert await sh("sh -c 'exit 4'; echo inner left $?") == Ran(0, b"inner left 4\n", b"")
    assert (await sh("exit 300")).code == 300 & 0xFF
    assert await sh("exit nope") == Ran(2, b"", b"sh: exit: Illegal number: nope\n")
    assert await run(["/bin/no-such"]) == Ran(127, b"", b"/bin/no-such: command not found\n")
    assert (await run(["/bin/sh", "-c", "true"])).code == 0  # a path names the same command
    assert await run(["sh", "-c"]) == Ran(2, b"", b"sh: -c: option requires an argument\n")


@pytest.mark.parametrize(
    ("script", "out"),
    [
        ("for i in 1 2 3; do echo $i; done | grep 2 && echo ok || echo no", b"2\nok\n"),
        ("for i in 1 3; do echo $i; done | grep 2 && echo ok || echo no", b"no\n"),
        ('for w in a "b c"; do echo "<$w>" ${w}!; done', b"<a> a!\n<b c> b c!\n"),
        ("for i in x\ndo echo $i\ndone", b"x\n"),
        ("echo one | cat | cat", b"one\n"),
        ("cat /nope 2>&1 | grep -c 'No such'", b"1\n"),
        ("cat /nope 2>/dev/null; echo $?", b"1\n"),
        ("echo a > /tmp/f; echo b >> /tmp/f; cat < /tmp/f", b"a\nb\n"),
        ("echo err >&2 2>/dev/null", b""),
        ("false; echo $? '$?'", b"1 $?\n"),
        ("echo x | grep -v y | grep -c x", b"1\n"),
        ("echo Hello | grep -i hello || echo missing", b"Hello\n"),
    ],
)
async def test_pipes_redirections_loops_and_variables(script: str, out: bytes) -> None:
    assert (await sh(script)).out == out


async def test_redirection_order_decides_where_stderr_goes() -> None:
    shell = Shell(container())
    ran = await run(
        ["sh", "-c", "cat /nope > /tmp/log 2>&1; cat /nope 2>&1 > /tmp/log2"], shell=shell
    )
    assert shell.fs.read("/tmp/log") == b"cat: /nope: No such file or directory\n"
    assert shell.fs.read("/tmp/log2") == b""
    assert ran == Ran(1, b"cat: /nope: No such file or directory\n", b"")


@given(st.lists(st.text(alphabet="abc xyz019", min_size=1, max_size=6), max_size=5))
def test_a_loop_echoes_each_quoted_item_once(items: list[str]) -> None:
    quoted = " ".join("'" + item + "'" for item in items)
    ran = trio.run(sh, f'for v in {quoted}; do echo "$v"; done')
    assert ran.out == b"".join(item.encode() + b"\n" for item in items)


async def test_sh_reads_commands_from_stdin_or_a_file() -> None:
    assert await run(["sh"], b"echo one\nexit 5\necho never\n") == Ran(5, b"one\n", b"")
    assert await run(["bash"], b"echo last") == Ran(0, b"last\n", b"")
    shell = Shell(container())
    shell.fs.write("/tmp/s.sh", b"echo from file\nfalse\n")
    assert await run(["sh", "/tmp/s.sh"], shell=shell) == Ran(1, b"from file\n", b"")
    assert await run(["sh", "/tmp/none.sh"]) == Ran(
        2, b"", b"sh: cannot open /tmp/none.sh: No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("echo 'open", "syntax error: No closing quotation"),
        ("sleep 1 &", "syntax error: '&' is not supported here"),
        ("(echo a)", "syntax error: '(' is not supported here"),
        ("echo a |", "syntax error near unexpected token 'end of file'"),
        ("for i in a; echo $i; done", "syntax error: expected 'do'"),
        ("echo a >", "syntax error: '>' needs a file name"),
        ("; echo", "syntax error near unexpected token ';'"),
        ("echo a &&", "syntax error: '&&' at the end of a line"),
    ],
)
async def test_scripts_this_shell_cannot_run_exit_2(script: str, message: str) -> None:
    with pytest.raises(ScriptError, match=re.escape(message)):
        parse_script(script)
    assert await sh(script) == Ran(2, b"", f"sh: {message}\n".encode())


async def test_test_and_brackets() -> None:
    checks = {
        "test -d /tmp": 0,
        "test -d /etc/hostname": 1,
        "test -f /etc/hostname": 0,
        "test -e /nope": 1,
        "test -n ''": 1,
        "test -z ''": 0,
        "test word": 0,
        "test": 1,
        "[ a = a ]": 0,
        "[ a != a ]": 1,
        "[ a == b ]": 1,
    }
    for script, code in checks.items():
        assert (await sh(script)).code == code, script
    assert await sh("test -x a b") == Ran(2, b"", b"test: unsupported expression: -x a b\n")
    assert await sh("[ a = a") == Ran(2, b"", b"[: missing ]\n")


async def test_sleep(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    assert (await run(["sleep", "1.5", "2"])).code == 0
    assert trio.current_time() - start == 3.5
    assert await run(["sleep", "nan"]) == Ran(1, b"", b"sleep: invalid time interval 'nan'\n")
    assert await run(["sleep", "-1"]) == Ran(1, b"", b"sleep: invalid time interval '-1'\n")
    assert await run(["sleep"]) == Ran(1, b"", b"sleep: missing operand\n")


# -- tar --------------------------------------------------------------------------------


def archive(members: dict[str, bytes | None]) -> bytes:
    """A tar of files (bytes) and directories (None), as kubectl cp's makeTar writes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def names(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (f.read() if (f := tar.extractfile(m)) is not None else None) for m in tar}


async def test_tar_create_as_kubectl_cp_downloads() -> None:
    shell = Shell(container())
    shell.fs.write("/tmp/a.txt", b"A")
    shell.fs.mkdir("/tmp/empty")
    created = await run(["tar", "cf", "-", "/tmp"], shell=shell)
    assert created.code == 0
    assert created.err == b"tar: Removing leading `/' from member names\n"
    assert names(created.out) == {"tmp": None, "tmp/a.txt": b"A", "tmp/empty": None}
    relative = await run(["tar", "-c", "-v", "-f", "-", "-C", "/etc", "hostname"], shell=shell)
    assert names(relative.out) == {"hostname": b"web-1\n"}
    assert relative.err == b"hostname\n"


async def test_tar_extract_as_kubectl_cp_uploads() -> None:
    shell = Shell(container())
    data = archive({"dir": None, "dir/f.txt": b"F", "top.txt": b"T", "/abs.txt": b"X"})
    result = await run(["tar", "-xmf", "-", "-C", "/tmp"], data, shell=shell)
    assert result == Ran(0, b"", b"")
    assert shell.fs.read("/tmp/dir/f.txt") == b"F"
    assert shell.fs.read("/tmp/top.txt") == b"T"
    assert shell.fs.read("/tmp/abs.txt") == b"X"  # a leading slash stays under -C
    options = ["tar", "--no-same-permissions", "--no-same-owner", "-xvmf", "-", "-C/root"]
    verbose = await run(options, archive({"n/deep.txt": b"D"}), shell=shell)
    assert verbose == Ran(0, b"n/deep.txt\n", b"")
    assert shell.fs.read("/root/n/deep.txt") == b"D"


async def test_tar_refusals() -> None:
    shell = Shell(container())
    escape = await run(["tar", "xf", "-"], archive({"../evil": b"E", "ok": b"O"}), shell=shell)
    assert escape.code == 2
    assert b"tar: ../evil: Member name contains '..'" in escape.err
    assert shell.fs.read("/ok") == b"O" and not shell.fs.exists("/evil")
    garbage = await run(["tar", "xf", "-"], b"not a tar archive" * 100)
    assert garbage.code == 2 and b"This does not look like a tar archive" in garbage.err
    missing = await run(["tar", "cf", "-", "/nope", "/etc/hostname"])
    assert missing.code == 2
    assert names(missing.out) == {"etc/hostname": b"web-1\n"}
    assert b"tar: /nope: Cannot stat: No such file or directory" in missing.err
    no_dir = await run(["tar", "-xf", "-", "-C", "/nope"], archive({}))
    assert no_dir == Ran(
        2,
        b"",
        b"tar: /nope: Cannot open: No such file or directory\n"
        b"tar: Error is not recoverable: exiting now\n",
    )
    onto_a_file = await run(["tar", "xf", "-", "-C", "/etc"], archive({"hostname/x": b"x"}))
    assert b"tar: hostname/x: Cannot open: Not a directory" in onto_a_file.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tar"], "You must specify one of the '-Acdtrux' options"),
        (["tar", "-cx"], "You may not specify more than one"),
        (["tar", "-z"], "invalid option -- 'z'"),
        (["tar", "--gzip"], "unrecognized option '--gzip'"),
        (["tar", "-cf"], "option requires an argument -- 'f'"),
        (["tar", "cf", "out.tar", "/etc"], "only '-' (stdin or stdout)"),
        (["tar", "cf", "-"], "Cowardly refusing to create an empty archive"),
    ],
)
async def test_tar_usage_errors(argv: list[str], message: str) -> None:
    result = await run(argv)
    assert result.code == 2
    assert message.encode() in result.err


# -- the filesystem ---------------------------------------------------------------------


def test_paths_resolve_against_the_working_directory() -> None:
    assert resolve("/usr", "share/../lib") == "/usr/lib"
    assert resolve("/", "../../etc") == "/etc"
    assert resolve("/tmp", "//x") == "/x"


def test_the_filesystem_is_bounded_and_fails_as_a_kernel_would() -> None:
    fs = PodFilesystem(capacity=10, max_entries=4)
    fs.write("/a", b"12345")
    with pytest.raises(FileSystemError, match="No space left on device"):
        fs.write("/b", b"123456")
    fs.write("/a", b"1234567890")  # replacing a file frees its old size
    with pytest.raises(FileSystemError, match="No such file or directory"):
        fs.write("/missing/x", b"")
    with pytest.raises(FileSystemError, match="Not a directory"):
        fs.write("/a/x", b"")
    with pytest.raises(FileSystemError, match="Not a directory"):
        fs.mkdir("/a/b")
    fs.mkdir("/d/e")
    with pytest.raises(FileSystemError, match="Is a directory"):
        fs.write("/d", b"")
    with pytest.raises(FileSystemError, match="Is a directory"):
        fs.read("/d")
    with pytest.raises(FileSystemError, match="No space left on device"):
        fs.mkdir("/f")  # the fifth entry
    assert list(fs.walk("/")) == ["/", "/a", "/d", "/d/e"]


# -- the terminal -----------------------------------------------------------------------


@dataclass
class Tty:
    terminal: Terminal
    keys: trio.MemorySendChannel[bytes]
    screen: bytearray


@pytest.fixture
async def tty(nursery: trio.Nursery) -> Tty:
    screen = bytearray()

    async def show(data: bytes) -> None:
        screen.extend(data)

    terminal = Terminal(show)
    keys, keystrokes = trio.open_memory_channel[bytes](0)
    nursery.start_soon(terminal.run, keystrokes)
    return Tty(terminal, keys, screen)


def _stdio(tty: Tty) -> Stdio:
    terminal = tty.terminal
    return Stdio(terminal.stdin, terminal.write, terminal.write, terminal)


async def test_a_terminal_echoes_edits_and_delivers_lines(tty: Tty) -> None:
    await tty.keys.send(b"ecx\x7fho h\xc3\xa9\x7fi\r")
    assert await tty.terminal.stdin.read_line() == b"echo hi\n"
    assert bytes(tty.screen) == b"ecx\b \bho h\xc3\xa9\b \bi\r\n"
    await tty.terminal.write(b"a\nb\n")
    assert bytes(tty.screen).endswith(b"a\r\nb\r\n")  # ONLCR


async def test_an_interactive_shell_on_a_terminal(tty: Tty, nursery: trio.Nursery) -> None:
    shell = Shell(container())
    done = trio.Event()
    codes: list[int] = []

    async def session() -> None:
        codes.append(await shell.session(_stdio(tty)))
        done.set()

    nursery.start_soon(session)
    for keys in (
        b"sleep 100\r",
        b"\x03",  # ^C interrupts the sleep
        b"half a line\x03",  # ^C discards what was typed
        b"cat\r",
        b"typed into cat\r\x04",  # ^D ends cat's input, not the shell's
        b"\x04",  # ^D at the prompt ends the shell
    ):
        await trio.testing.wait_all_tasks_blocked()
        await tty.keys.send(keys)
    await done.wait()
    assert codes == [0]
    assert bytes(tty.screen) == (
        b"$ sleep 100\r\n^C\r\n"
        b"$ half a line^C\r\n"
        b"$ cat\r\ntyped into cat\r\ntyped into cat\r\n"
        b"$ exit\r\n"
    )


async def test_a_line_longer_than_the_buffer_is_delivered_in_pieces(tty: Tty) -> None:
    await tty.keys.send(b"x" * (MAX_LINE + 3) + b"\r")
    assert await tty.terminal.stdin.read_line() == b"x" * MAX_LINE
    assert await tty.terminal.stdin.read_line() == b"xxx\n"
