"""The service log renders a logged exception so an operator can diagnose it, without the
failing frames' local variables."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from l7proxy.runtime.server import configure_logging


def _fail_holding(bearer: str) -> None:
    """Raise from a frame that holds a secret in a local variable."""
    raise ConnectionResetError("peer reset the stream")


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_structlog")
def test_logged_exception_shows_its_type_message_and_stack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging()  # here, so it writes to the stderr pytest captures for the test body
    bearer = "secret-token-value"
    try:
        _fail_holding(bearer)
    except ConnectionResetError:
        structlog.get_logger("l7proxy").exception("connection failed")
    line = json.loads(capsys.readouterr().err.strip())
    assert line["event"] == "connection failed"
    assert line["level"] == "error"
    rendered = json.dumps(line["exception"])
    assert "ConnectionResetError" in rendered
    assert "peer reset the stream" in rendered
    assert "test_logged_exception_shows_its_type_message_and_stack" in rendered
    assert line.get("exc_info") is None
    assert bearer not in json.dumps(line)
