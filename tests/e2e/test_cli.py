"""The `l7proxy` command as a user runs it: check-config, serve, stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import trio

from tests.e2e.stack import Stack, kubectl

L7PROXY = [sys.executable, "-m", "l7proxy"]


async def test_check_config_summarises_a_valid_file(stack: Stack) -> None:
    result = await trio.run_process(
        [*L7PROXY, "check-config", "--config", str(stack.tmp / "gateway.yaml")],
        capture_stdout=True,
        capture_stderr=True,
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.decode()
    for part in ("dev", "agents-readonly", "platform-admins", stack.issuer.issuer):
        assert part in summary
    assert "sandbox-service-token" not in summary


async def test_check_config_locates_an_error_and_exits_1(stack: Stack) -> None:
    config = stack.tmp / "bad.yaml"
    text = (
        (stack.tmp / "gateway.yaml").read_text().replace("listen:\n", "listen:\n  colour: blue\n")
    )
    config.write_text(text)
    line = text.splitlines().index("  colour: blue") + 1
    result = await trio.run_process(
        [*L7PROXY, "check-config", "--config", str(config)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"bad.yaml:{line}: listen.colour: unknown key" in message
    assert "Traceback" not in message


async def test_serve_logs_json_answers_kubectl_and_stops_on_sigterm(stack: Stack) -> None:
    process = await trio.lowlevel.open_process(
        [*L7PROXY, "serve", "--config", str(stack.tmp / "gateway.yaml")],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert process.stderr is not None
    logs = b""
    try:
        with trio.fail_after(30):
            while b'"listening"' not in logs:
                logs += await process.stderr.receive_some()
        first = json.loads(logs.splitlines()[0])
        port = first["addresses"][0].rsplit(":", 1)[1]
        token = stack.token("agent-7", ("ai-agents-readonly",))
        kc = stack.kubeconfig(token)
        kc.write_text(kc.read_text().replace(stack.gateway_url, f"https://127.0.0.1:{port}"))
        result = await kubectl(kc, "get", "pods", check=True)
        assert b"web-1" in result.stdout
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await process.wait()
        logs += await process.stderr.receive_some() if process.stderr else b""
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    assert token.encode() not in logs
    for line in logs.splitlines():
        json.loads(line)  # service logs are JSON lines


async def _explain(stack: Stack, *args: str) -> subprocess.CompletedProcess[bytes]:
    config = str(stack.tmp / "gateway.yaml")
    return await trio.run_process(
        [*L7PROXY, "explain", "--config", config, "--connection", "dev", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_explain_prints_the_decision_and_its_rule_offline(stack: Stack) -> None:
    reader = ("--user", "agent-7", "--group", "ai-agents-readonly")
    allowed = await _explain(stack, *reader, "list", "pods", "-n", "default")
    assert allowed.returncode == 0
    assert allowed.stdout.startswith(b'allow: allowed by policy "agents-readonly" allow rule 1')
    denied = await _explain(stack, *reader, "delete", "pods", "web-1", "-n", "default")
    assert denied.returncode == 1
    assert denied.stdout.startswith(b"deny: ")
    secret = await _explain(stack, *reader, "get", "secrets", "-n", "default")
    assert (secret.returncode, b"deny rule 1" in secret.stdout) == (1, True)
    path = await _explain(stack, *reader, "get", "/version")
    assert path.returncode == 0
    stranger = await _explain(stack, "--user", "nobody", "get", "pods")
    assert stranger.returncode == 1
    assert b"no policy" in stranger.stdout


async def test_explain_refuses_an_unknown_connection(stack: Stack) -> None:
    config = str(stack.tmp / "gateway.yaml")
    result = await trio.run_process(
        [
            *L7PROXY,
            "explain",
            "--config",
            config,
            "--connection",
            "nope",
            "--user",
            "u",
            "get",
            "pods",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    assert b"unknown connection 'nope'" in result.stderr


async def test_serve_with_a_certificate_tls_cannot_use_exits_1_with_one_located_error(
    stack: Stack,
) -> None:
    (stack.tmp / "gateway.pem").write_text("not a certificate\n")
    result = await trio.run_process(
        [*L7PROXY, "serve", "--config", str(stack.tmp / "gateway.yaml")],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    stderr = result.stderr.decode()
    [error] = [line for line in stderr.splitlines() if line.startswith("error: ")]
    cert, key = stack.tmp / "gateway.pem", stack.tmp / "gateway-key.pem"
    where = f"error: {stack.tmp / 'gateway.yaml'}: listen.tls: cannot use {cert} with {key}: "
    assert error.startswith(where), stderr
    assert "Traceback" not in stderr
