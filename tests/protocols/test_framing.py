"""Request framing checks: only one unambiguous framing header ever passes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.framing import framing_problem

_NAMES = st.sampled_from(
    [b"content-length", b"Content-Length", b"transfer-encoding", b"TRANSFER-ENCODING", b"x-other"]
)
_VALUES = st.one_of(
    st.sampled_from([b"chunked", b"ChUnKeD", b" chunked", b"gzip, chunked", b"4", b"+4", b"4 4"]),
    st.binary(max_size=24),
)


def test_a_single_chunked_or_plain_length_passes() -> None:
    assert framing_problem([(b"transfer-encoding", b"chunked")]) is None
    assert framing_problem([(b"content-length", b"42")]) is None
    assert framing_problem([]) is None


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_whatever_passes_has_at_most_one_framing_header_and_it_is_well_formed(
    headers: list[tuple[bytes, bytes]],
) -> None:
    if framing_problem(headers) is not None:
        return
    framing = [(k.lower(), v.strip(b" \t")) for k, v in headers if k.lower() != b"x-other"]
    assert len(framing) <= 1
    for name, value in framing:
        if name == b"content-length":
            assert value.isascii() and value.isdigit() and len(value) <= 18
        else:
            assert value.lower() == b"chunked"
