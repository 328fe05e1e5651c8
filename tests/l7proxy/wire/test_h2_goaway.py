"""The GOAWAY splitter takes a server's GOAWAY frames out of the byte stream, however it
is cut into reads, and passes every other byte to h2 unchanged and in order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from l7proxy.wire.h2_goaway import GoAway, GoawaySplitter

MAX = 64


def _frame(kind: int, stream_id: int, body: bytes, flags: int = 0) -> bytes:
    return len(body).to_bytes(3) + bytes([kind, flags]) + stream_id.to_bytes(4) + body


def _goaway(goaway: GoAway, stream_id: int = 0) -> bytes:
    body = goaway.last_stream_id.to_bytes(4) + goaway.error_code.to_bytes(4) + goaway.debug_data
    return _frame(0x7, stream_id, body)


goaways = st.builds(
    GoAway,
    last_stream_id=st.integers(0, 2**31 - 1),
    error_code=st.integers(0, 2**32 - 1),
    debug_data=st.binary(max_size=MAX - 8),
)
# Every other frame, GOAWAY look-alikes included: on a stream, too short, too long.
others = st.one_of(
    st.builds(
        _frame,
        st.sampled_from([0x0, 0x1, 0x3, 0x4, 0x6, 0x8, 0x9, 0xFF]),
        st.integers(0, 2**31 - 1),
        st.binary(max_size=2 * MAX),
        st.integers(0, 255),
    ),
    st.builds(_frame, st.just(0x7), st.integers(1, 2**31 - 1), st.binary(min_size=8, max_size=16)),
    st.builds(_frame, st.just(0x7), st.just(0), st.binary(max_size=7)),
    st.builds(_frame, st.just(0x7), st.just(0), st.binary(min_size=MAX + 1, max_size=MAX + 9)),
)
frames = st.lists(st.one_of(goaways, others), max_size=12)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(frames, st.lists(st.integers(0, 10_000), max_size=8))
def test_goaways_are_taken_out_and_every_other_byte_passes_in_order(
    sequence: list[GoAway | bytes], cuts: list[int]
) -> None:
    wire = b"".join(_goaway(f) if isinstance(f, GoAway) else f for f in sequence)
    splitter = GoawaySplitter(max_length=MAX)
    passed, seen = b"", []
    for read in _cut(wire, cuts):
        data, found = splitter.feed(read)
        passed += bytes(data)
        seen += found
    assert seen == [f for f in sequence if isinstance(f, GoAway)]
    assert passed == b"".join(f for f in sequence if not isinstance(f, GoAway))


def test_a_read_inside_one_frame_is_passed_as_it_is() -> None:
    splitter = GoawaySplitter()
    head = _frame(0x0, 1, b"x" * 1000)[:500]
    assert splitter.feed(head) == (head, [])
    middle = b"x" * 300
    data, found = splitter.feed(middle)
    assert data is middle and found == []


def test_the_reserved_bit_of_the_last_stream_id_is_ignored() -> None:
    body = (0x8000_0005).to_bytes(4) + (0).to_bytes(4)
    data, found = GoawaySplitter().feed(_frame(0x7, 0, body))
    assert data == b"" and found == [GoAway(5, 0, b"")]
