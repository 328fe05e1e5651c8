"""The static connection's token file: read once, re-read after it changes, looked at no
more than once per check interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from l7proxy.upstream.static import TokenFile


def test_a_rotated_token_is_picked_up_at_the_next_check(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "token"
    path.write_text("first\n")
    token = TokenFile(path, clock=lambda: now[0])
    assert token.value() == b"first"
    path.write_text("second-longer\n")
    now[0] += TokenFile.CHECK_INTERVAL / 2
    assert token.value() == b"first"  # not looked at yet
    now[0] += TokenFile.CHECK_INTERVAL
    assert token.value() == b"second-longer"


def test_the_file_is_not_read_between_checks(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "token"
    path.write_text("t\n")
    token = TokenFile(path, clock=lambda: now[0])
    assert token.value() == b"t"
    path.unlink()
    assert token.value() == b"t"  # within the interval: the file is not touched
    now[0] += TokenFile.CHECK_INTERVAL
    with pytest.raises(FileNotFoundError):
        token.value()
