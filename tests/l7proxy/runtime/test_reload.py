"""A running server's reload and drain, driven in-process: the listener's certificate
is swapped for new connections, an unusable one changes nothing, a replaced pool closes
once its last stream ends, a drain stops accepting."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import structlog
import trio
import trustme
import yaml

from l7proxy.config.loader import load_config
from l7proxy.runtime.server import Server, run_server
from l7proxy.upstream.pool import UpstreamError
from tests.e2e.stack import start_stack


async def served_certificate(server: Server, ca: trustme.CA) -> bytes:
    """The DER certificate a new TLS connection to `server` is shown."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    tcp = await trio.open_tcp_stream("127.0.0.1", server.bound[0][1])
    tls = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    await tls.do_handshake()
    der = tls.getpeercert(binary_form=True)
    await tls.aclose()
    assert isinstance(der, bytes)
    return der


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


async def start(nursery: trio.Nursery, tmp_path: Path) -> tuple[trustme.CA, Server]:
    ca = trustme.CA()
    await start_stack(nursery, ca, tmp_path, in_process=False)
    server: Server = await nursery.start(run_server, load_config(tmp_path / "gateway.yaml"))
    return ca, server


async def test_a_reload_shows_new_connections_the_new_certificate(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    ca, server = await start(nursery, tmp_path)
    before = await served_certificate(server, ca)
    renewed = ca.issue_cert("127.0.0.1", "localhost")
    renewed.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "gateway.pem"))
    renewed.private_key_pem.write_to_path(str(tmp_path / "gateway-key.pem"))
    assert server.reload()
    after = await served_certificate(server, ca)
    assert after != before
    assert after == der(renewed)


async def test_a_key_that_does_not_match_the_certificate_keeps_the_old_one(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    ca, server = await start(nursery, tmp_path)
    before = await served_certificate(server, ca)
    live = server.gateway.live
    other = ca.issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(str(tmp_path / "gateway-key.pem"))  # not the cert's key
    with structlog.testing.capture_logs() as logs:
        assert not server.reload()
    [error] = [line for line in logs if line["log_level"] == "error"]
    assert str(error["error"]).startswith(f"{tmp_path / 'gateway.yaml'}: listen.tls: cannot use")
    assert server.gateway.live is live
    assert await served_certificate(server, ca) == before


async def test_draining_turns_readiness_off_and_stops_accepting(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    _, server = await start(nursery, tmp_path)
    assert server.gateway.is_ready
    await server.drain()  # nothing in flight: over at once
    assert not server.gateway.is_ready
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.bound[0][1])


async def test_a_ca_file_tls_cannot_use_keeps_the_running_configuration(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    _, server = await start(nursery, tmp_path)
    live = server.gateway.live
    (tmp_path / "bad-ca.pem").write_text("not a certificate\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        path.read_text().replace(
            "certificate_authority_file: ca.pem", "certificate_authority_file: bad-ca.pem", 1
        )
    )
    with structlog.testing.capture_logs() as logs:
        assert not server.reload()
    [error] = [line for line in logs if line["log_level"] == "error"]
    assert str(error["error"]).startswith(f"{path}: connections[0]: cannot use its TLS files:")
    assert server.gateway.live is live


async def test_a_reload_closes_a_replaced_pool_once_its_last_stream_has_ended(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    _, server = await start(nursery, tmp_path)
    old = server.gateway.live.connectors["dev"]
    pool = await old.upstream()
    open_before = await pool.request("GET", "/version", [], has_body=False)
    await open_before.response_head()  # its body left unread: the stream stays open
    path = tmp_path / "gateway.yaml"
    config = yaml.safe_load(path.read_text())
    config["limits"] = {"upstream_response_timeout": 30}  # renews every connection's pool
    path.write_text(yaml.safe_dump(config))
    assert server.reload()
    assert server.gateway.live.connectors["dev"] is not old
    # Requests that took the old configuration still get through while a stream is open.
    late = await pool.request("GET", "/version", [], has_body=False)
    assert (await late.response_head())[0] > 0
    await late.aclose()
    await open_before.aclose()
    with trio.fail_after(10):  # a hang guard: the session closes once nothing is on it
        while True:
            try:
                probe = await pool.request("GET", "/version", [], has_body=False)
            except UpstreamError as exc:
                assert "replaced by a reload" in str(exc)
                break
            await probe.aclose()
            await trio.sleep(0.05)
