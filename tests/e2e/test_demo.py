"""`l7proxy demo` exactly as a new user meets it: started in an empty folder, the commands it
prints run with the real kubectl, then Ctrl-C."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import trio

KUBECTL = "/usr/bin/kubectl"


def _l7proxy() -> list[str]:
    """The venv's `l7proxy` script (what `make run` execs), else this interpreter's module."""
    script = Path(sys.executable).parent / "l7proxy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "l7proxy"]


def _audit(demo: Path) -> list[dict[str, str]]:
    """The per-request events (access requests' own events carry a `type`)."""
    events = [json.loads(line) for line in (demo / "audit.jsonl").read_text().splitlines()]
    return [event for event in events if "type" not in event]


async def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    argv = shlex.split(command, comments=True)
    assert argv[0] == "kubectl"
    with trio.fail_after(60):
        return await trio.run_process(
            [KUBECTL, *argv[1:]],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(cwd)},  # kubectl's discovery cache stays here
        )


async def _as(cwd: Path, script: str, *args: str) -> dict[str, object]:
    with trio.fail_after(60):
        result = await trio.run_process(
            [script, *args, "--output", "json"], capture_stdout=True, capture_stderr=True, cwd=cwd
        )
    document: dict[str, object] = json.loads(result.stdout)
    return document


async def _ask_and_approve(banner: str, demo: Path) -> None:
    """The banner's access-request commands, as printed: the agent asks, the admin approves."""
    ask, pending = [
        shlex.split(line.strip(), comments=True)
        for line in banner.splitlines()
        if Path(line.split()[0] if line.split() else "").name in ("as-demo-agent", "as-demo-admin")
    ]
    created = await _as(demo.parent, *ask)
    assert (created["grant"], created["state"]) == ("demo-write", "pending")
    listed = await _as(demo.parent, *pending)
    assert [item["id"] for item in listed["items"]] == [created["id"]]  # type: ignore[attr-defined]
    approved = await _as(
        demo.parent, pending[0], "request", "approve", str(created["id"]), "--reason", "ok"
    )
    assert approved["state"] == "approved"


async def test_demo_prints_commands_that_work_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = await trio.lowlevel.open_process(
        [*_l7proxy(), "demo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None and process.stderr is not None
    out = b""
    try:
        with trio.fail_after(30):
            while b"request list" not in out:
                chunk = await process.stdout.receive_some()
                assert chunk, f"demo ended early: {out.decode()}"
                out += chunk
        text = out.decode()
        commands = [
            line.strip() for line in text.splitlines() if line.strip().startswith("kubectl")
        ]
        assert len(commands) == 4, text
        get, delete, can_i, watch = commands
        assert "--context demo-agent get pods" in get
        assert "demo-agent delete pod web-1" in delete
        assert "auth can-i delete pods" in can_i
        assert "--context demo-admin get pods -w" in watch

        listed = await _run(get, tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert b"web-1" in listed.stdout

        refused = await _run(delete, tmp_path)
        assert refused.returncode == 1
        assert b"Error from server (Forbidden)" in refused.stderr
        assert b'User "agent-7@demo.l7proxy" (groups "ai-agents-readonly")' in refused.stderr

        answer = await _run(can_i, tmp_path)
        assert answer.returncode == 1  # kubectl's "no"
        assert answer.stdout.startswith(b"no"), answer.stdout

        # the admin's watch streams: its first page arrives, then we stop watching
        argv = shlex.split(watch, comments=True)
        watcher = await trio.lowlevel.open_process(
            [KUBECTL, *argv[1:]],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert watcher.stdout is not None
        seen = b""
        try:
            with trio.fail_after(30):
                while b"web-1" not in seen:
                    chunk = await watcher.stdout.receive_some()
                    assert chunk, "the watch ended"
                    seen += chunk
        finally:
            watcher.kill()
            await watcher.wait()
            await watcher.stdout.aclose()

        demo = tmp_path / "demo"
        assert b"--grant demo-write" in refused.stderr  # the refusal names the grant
        await _ask_and_approve(text, demo)
        with trio.fail_after(15):  # the approval reaches the request path within a poll
            while (await _run(delete, tmp_path)).returncode != 0:  # noqa: ASYNC110
                await trio.sleep(0.2)

        for secret in demo.glob("*.secret"):
            assert secret.stat().st_mode & 0o777 == 0o600
            assert secret.read_text().strip() not in text
        assert (demo / "kubeconfig").stat().st_mode & 0o777 == 0o600
        assert (demo / "recordings").is_dir()
        # kubectl -w lists first, then watches: killed after the first page, it may not have
        # sent its watch yet. Either way the admin's request is audited once it ends.
        with trio.fail_after(10):
            while True:
                events = _audit(demo)
                admin = [e for e in events if e["user"] == "admin@demo.l7proxy"]
                if any(e["verb"] in ("list", "watch") for e in admin):
                    break
                await trio.sleep(0.05)  # the audit log is a file: there is nothing to wait on
        decisions = {(e["user"], e["verb"], e["name"], e["decision"]) for e in events}
        assert ("agent-7@demo.l7proxy", "delete", "web-1", "deny") in decisions

        process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            await process.wait()
        errors = await process.stderr.receive_some()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()
        await process.stderr.aclose()
    assert process.returncode == 0
    assert b"Traceback" not in errors
    assert b"stopped" in errors
