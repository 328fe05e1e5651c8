"""Fixtures: a trustme CA, and a DevIssuer served over real TLS in the test's nursery."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from l7proxy.config.settings import Provider
from l7proxy.tools.devissuer import DevIssuer


class WallClock:
    """A wall clock the test moves by hand (token times are wall-clock seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def issuer(nursery: trio.Nursery, server_context: ssl.SSLContext) -> DevIssuer:
    dev = DevIssuer()
    await nursery.start(partial(dev.serve, ssl_context=server_context))
    return dev


@pytest.fixture
def provider(issuer: DevIssuer, ca_file: Path) -> Provider:
    return Provider(
        name="dev",
        issuer=issuer.issuer,
        audiences=("l7proxy",),
        username_claim="sub",
        ca_file=ca_file,
    )


@pytest.fixture
def wall_clock() -> WallClock:
    return WallClock()
