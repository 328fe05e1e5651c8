"""End-to-end fixtures: the sandbox cluster, a development OIDC issuer and the gateway,
all over real TLS (certificates from trustme) on loopback, started in the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from tests.e2e.stack import Stack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def stack(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Stack]:
    yield await start_stack(nursery, ca, tmp_path)
