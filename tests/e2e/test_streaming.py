"""kubectl's streaming verbs through the gateway to the sandbox: logs -f, exec (stdin,
exit code, TTY resizes), attach, cp, port-forward; old (SPDY) and new (WebSocket)
clients; recordings replayed and compared with what the client saw."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
from pathlib import Path

import pytest
import trio
import trustme

from l7proxy.tools.replay import replay
from protocols.k8s_channels import TerminalSize
from tests.e2e.stack import (
    Stack,
    kubectl,
    kubectl_argv,
    kubectl_env,
    port_forward_round_trip,
    start_stack,
    wait_for_event,
)
from tests.terminal import Screen, set_window

READER = ("ai-agents-readonly",)
ADMIN = ("platform-admins",)
BOTH_HTTP_VERSIONS = pytest.mark.parametrize("http1", [False, True], ids=["h2", "http1.1"])


@BOTH_HTTP_VERSIONS
async def test_logs_follow_delivers_lines_as_they_are_written(stack: Stack, http1: bool) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            lambda task_status: trio.run_process(  # noqa: ASYNC105 - awaited by nursery.start
                kubectl_argv(kc, "logs", "-f", "web-1", "--tail=1"),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=kubectl_env(kc, http1=http1),
                check=False,
                task_status=task_status,
            )
        )
        seen = b""
        with trio.fail_after(20):
            while seen.count(b"\n") < 3:  # the tail, then lines written while we wait
                seen += await process.stdout.receive_some()
        assert process.returncode is None
        process.kill()
    event = await wait_for_event(stack, lambda e: e["subresource"] == "log")
    assert event["http_version"] == ("1.1" if http1 else "2")
    assert event["ended_by"] == "client"


@BOTH_HTTP_VERSIONS
async def test_exec_round_trips_stdin_and_returns_the_exit_code(stack: Stack, http1: bool) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    data = os.urandom(48_000).hex().encode()
    echoed = await kubectl(kc, "exec", "-i", "web-1", "--", "cat", stdin=data, http1=http1)
    assert (echoed.returncode, echoed.stdout) == (0, data)
    # A request's event is written when its session ends, which may be after kubectl exits.
    first = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
    failed = await kubectl(kc, "exec", "web-1", "--", "sh", "-c", "echo bye; exit 3", http1=http1)
    assert (failed.returncode, failed.stdout) == (3, b"bye\n")
    event = await wait_for_event(
        stack, lambda e: e["subresource"] == "exec" and e["audit_id"] != first["audit_id"]
    )
    assert (event["status"], event["upgrade"]) == (101, "websocket v5.channel.k8s.io")
    end = await wait_for_event(
        stack, lambda e: e["audit_id"] == event["audit_id"], kind="session.end"
    )
    assert end["exit_code"] == 3
    # The pod's side closes after the exit status; kubectl closes on reading it: either
    # may be seen first.
    assert end["ended_by"] in ("cluster", "client")


async def test_exec_tty_resizes_reach_the_pod_and_the_recording_replays_the_screen(
    stack: Stack,
) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    sizes = stack.cluster.exec.runtime("default", "web-1").terminal_sizes
    controller, terminal = pty.openpty()
    set_window(terminal, columns=100, rows=30)
    process = await trio.lowlevel.open_process(
        kubectl_argv(kc, "exec", "-it", "web-1", "--", "sh"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=kubectl_env(kc),
        start_new_session=True,
    )
    os.close(terminal)
    screen = Screen(trio.lowlevel.FdStream(controller))
    try:
        with trio.fail_after(30):
            await screen.wait_for(b"$ ")
            set_window(controller, columns=132, rows=43)
            process.send_signal(signal.SIGWINCH)
            while not sizes or sizes[-1] != TerminalSize(132, 43):  # noqa: ASYNC110
                await trio.sleep(0.02)  # the sandbox keeps sizes in a deque: nothing to await
            await screen.type(b"echo recorded\r")
            await screen.wait_for(b"recorded\r\n$ ")
            await screen.type(b"exit 4\r")
            assert await process.wait() == 4
    finally:
        process.kill()
        await screen.stream.aclose()
    event = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
    recording = Path(str(event["recording"]))
    lines = [json.loads(line) for line in (await trio.Path(recording).read_text()).splitlines()]
    assert lines[0]["version"] == 2
    assert [e[2] for e in lines[1:] if e[1] == "r"][-1] == "132x43"
    assert "echo recorded" in "".join(e[2] for e in lines[1:] if e[1] == "i")
    played = io.BytesIO()
    replay(recording, played, speed=1000)
    # What the recording plays back is what the client's terminal showed.
    client_saw = screen.transcript.replace(b"\r\n", b"\n")
    assert b"recorded" in played.getvalue()
    assert played.getvalue().replace(b"\r\n", b"\n").strip() in client_saw.strip() or (
        client_saw.strip() in played.getvalue().replace(b"\r\n", b"\n")
    )


async def test_attach_joins_the_pods_main_process(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    result = await kubectl(kc, "attach", "-i", "web-1", stdin=b"cd /tmp\npwd\n")
    assert (result.returncode, result.stdout) == (0, b"/tmp\n")
    event = await wait_for_event(stack, lambda e: e["subresource"] == "attach")
    assert event["decision"] == "allow"


async def test_cp_copies_both_ways_through_exec(stack: Stack, tmp_path: Path) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(200_000))
    up = await kubectl(kc, "cp", str(local), "web-1:/tmp/payload.bin")
    assert up.returncode == 0, up.stderr
    down = await kubectl(kc, "cp", "web-1:/tmp/payload.bin", str(tmp_path / "back.bin"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()


async def test_a_read_only_agent_cannot_exec(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    result = await kubectl(kc, "exec", "web-1", "--", "ls")
    assert result.returncode != 0
    assert b"Forbidden" in result.stderr or b"forbidden" in result.stderr
    event = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
    assert event["decision"] == "deny"
    assert not any("/exec" in r.target for r in stack.cluster.seen)


async def test_port_forward_round_trips_bytes(stack: Stack) -> None:
    await port_forward_round_trip(stack.kubeconfig(stack.token("admin-1", ADMIN)))
    event = await wait_for_event(stack, lambda e: e["subresource"] == "portforward")
    assert event["status"] == 101
    assert "portforward.k8s.io" in str(event["upgrade"])


async def test_an_old_spdy_client_execs_and_port_forwards(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, cluster_version=(1, 29))
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))
    result = await kubectl(kc, "exec", "-i", "web-1", "--", "sh", "-c", "cat; exit 5", stdin=b"x")
    assert (result.returncode, result.stdout) == (5, b"x")
    event = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
    assert str(event["upgrade"]).startswith("SPDY/3.1")
    await port_forward_round_trip(kc)
