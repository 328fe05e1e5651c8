"""The SPDY/3.1 codec: frames round-trip in any chunking, peers' mistakes are typed errors."""

from __future__ import annotations

import itertools
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.spdy import (
    HEADER_DICTIONARY,
    MAX_FRAME_SIZE,
    Data,
    Frame,
    FrameTooLarge,
    GoAway,
    GoAwayStatus,
    HeaderBlock,
    HeaderBlockError,
    Headers,
    Ping,
    ProtocolError,
    RstStatus,
    RstStream,
    Setting,
    Settings,
    SpdyCodec,
    SpdyError,
    SynReply,
    SynStream,
    WindowUpdate,
    header_value,
)

# What client-go sends to open a port-forward data stream (Go lower-cases the names).
PORTFORWARD_HEADERS: HeaderBlock = (
    (b"streamtype", b"data"),
    (b"port", b"8080"),
    (b"requestid", b"0"),
)


def _control(kind: int, flags: int, payload: bytes, version: int = 3) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, kind, (flags << 24) | len(payload)) + payload


def _compressed(raw: bytes) -> bytes:
    """A header block compressed as a fresh peer would, for hand-made malformed blocks."""
    deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)
    return deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)


def _block(*pairs: tuple[bytes, bytes]) -> bytes:
    out = struct.pack(">I", len(pairs))
    for name, value in pairs:
        out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


def _round_trip(frames: list[Frame]) -> list[Frame]:
    sender, receiver = SpdyCodec(), SpdyCodec()
    return receiver.receive_data(b"".join(sender.encode(f) for f in frames))


def test_dictionary_is_spdy3s() -> None:
    # zlib's stream header names the dictionary by this checksum; Go's reader insists on it.
    assert len(HEADER_DICTIONARY) == 1423
    assert zlib.adler32(HEADER_DICTIONARY) == 0xE3C6A7C2


@pytest.mark.parametrize(
    "frame",
    [
        SynStream(1, PORTFORWARD_HEADERS),
        SynStream(3, (), associated_to=1, priority=7, slot=255, fin=True, unidirectional=True),
        SynReply(1, ()),
        SynReply(5, ((b"x", b"y"),), fin=True),
        RstStream(1, RstStatus.CANCEL),
        RstStream(7, 4242),  # unknown codes survive
        Settings((Setting(4, 100), Setting(7, 65536, flags=1)), clear=True),
        Settings(()),
        Ping(1),
        Ping(0xFFFFFFFF),
        GoAway(0),
        GoAway(9, GoAwayStatus.INTERNAL_ERROR),
        Headers(3, ((b"a", b"b"),), fin=True),
        WindowUpdate(0, 1),
        WindowUpdate(3, 2**31 - 1),
        Data(1, b""),
        Data(1, b"hello", fin=True),
        Data(2**31 - 1, b"\x00" * 70000),
    ],
)
def test_each_frame_round_trips(frame: Frame) -> None:
    assert _round_trip([frame]) == [frame]


def test_wire_layout_of_data_and_control_frames() -> None:
    codec = SpdyCodec()
    assert codec.encode(Data(5, b"ab", fin=True)) == b"\x00\x00\x00\x05\x01\x00\x00\x02ab"
    assert codec.encode(Ping(2)) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x02"
    assert codec.encode(RstStream(3, RstStatus.CANCEL)) == _control(3, 0, struct.pack(">II", 3, 5))


def test_repeated_names_travel_as_one_nul_joined_value() -> None:
    headers: HeaderBlock = ((b"a", b"1"), (b"b", b"x"), (b"a", b""), (b"a", b"2"))
    sent = SpdyCodec().encode(SynReply(1, headers))
    raw = zlib.decompressobj(zdict=HEADER_DICTIONARY).decompress(sent[12:])
    assert raw == _block((b"a", b"1\x00\x002"), (b"b", b"x"))
    assert _round_trip([SynReply(1, headers)]) == [
        SynReply(1, ((b"a", b"1"), (b"a", b""), (b"a", b"2"), (b"b", b"x")))
    ]
    assert header_value(headers, b"a") == b"1"
    assert header_value(headers, b"c") is None


def test_header_compression_is_one_context_per_connection() -> None:
    sender = SpdyCodec()
    first = sender.encode(SynStream(1, PORTFORWARD_HEADERS))
    second = sender.encode(SynStream(3, PORTFORWARD_HEADERS))
    assert len(second) < len(first)  # the second refers back to the first
    receiver = SpdyCodec()
    assert receiver.receive_data(first + second) == [
        SynStream(1, PORTFORWARD_HEADERS),
        SynStream(3, PORTFORWARD_HEADERS),
    ]
    with pytest.raises(HeaderBlockError):
        SpdyCodec().receive_data(second)  # meaningless without the first block


# The first bytes kubectl 1.29 (client-go, moby/spdystream) sent on a port-forward connection:
# the error stream opened and half-closed at once, then the data stream and "hi" on it.
KUBECTL_1_29_PORT_FORWARD = bytes.fromhex(
    "800300010000003e0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a08086"
    "14cb45e01c60616061c0c0c0c0590489c64c50f2663400000000ffff0000000101000000800300010000"
    "001800000003000000000000c2aa19540e2512d60b000000ffff00000003000000026869"
)


def test_reads_what_kubectl_writes() -> None:
    error = ((b"streamtype", b"error"), (b"port", b"8080"), (b"requestid", b"0"))
    data = ((b"streamtype", b"data"), (b"port", b"8080"), (b"requestid", b"0"))
    assert SpdyCodec().receive_data(KUBECTL_1_29_PORT_FORWARD) == [
        SynStream(1, error),
        Data(1, b"", fin=True),
        SynStream(3, data),
        Data(3, b"hi"),
    ]


def test_reads_what_zlib_with_the_dictionary_writes() -> None:
    # Go's framer: zlib.NewWriterLevelDict(BestCompression, dictionary) and a sync flush.
    block = _compressed(_block((b"streamtype", b"error"), (b"port", b"80")))
    frame = _control(1, 0, struct.pack(">IIBB", 1, 0, 0, 0) + block)
    assert SpdyCodec().receive_data(frame) == [
        SynStream(1, ((b"streamtype", b"error"), (b"port", b"80")))
    ]


def test_unknown_control_frames_are_skipped() -> None:
    credential = _control(10, 0, b"\x00" * 12)
    noop = _control(5, 0, b"")
    assert SpdyCodec().receive_data(credential + noop + SpdyCodec().encode(Ping(1))) == [Ping(1)]


def test_a_frame_over_the_limit_fails_before_its_payload_arrives() -> None:
    codec = SpdyCodec(max_frame_size=1024)
    with pytest.raises(FrameTooLarge):
        codec.receive_data(struct.pack(">II", 1, 1025))
    assert SpdyCodec().max_frame_size == MAX_FRAME_SIZE


def test_a_header_block_over_the_limit_fails() -> None:
    sent = SpdyCodec().encode(SynReply(1, ((b"big", b"x" * 5000),)))
    with pytest.raises(HeaderBlockError, match="over 1024 bytes"):
        SpdyCodec(max_header_block=1024).receive_data(sent)


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (_control(6, 0, b"\x00\x00\x00\x01", version=2), ProtocolError),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00", ProtocolError),  # DATA on stream 0
        (_control(1, 0, b"\x00" * 9), ProtocolError),  # SYN_STREAM too short
        (_control(2, 0, b"\x00\x00"), ProtocolError),  # SYN_REPLY too short
        (_control(3, 0, struct.pack(">II", 1, 0)), ProtocolError),  # RST status 0
        (_control(3, 0, struct.pack(">II", 0, 5)), ProtocolError),  # RST on stream 0
        (_control(3, 0, b"\x00" * 7), ProtocolError),
        (_control(4, 0, struct.pack(">I", 2) + b"\x00" * 8), ProtocolError),
        (_control(4, 0, b""), ProtocolError),
        (_control(6, 0, b"\x00" * 8), ProtocolError),
        (_control(7, 0, b"\x00" * 4), ProtocolError),
        (_control(9, 0, struct.pack(">II", 1, 0)), ProtocolError),  # delta 0
        (_control(8, 0, struct.pack(">I", 0) + _compressed(_block())), ProtocolError),
        (_control(2, 0, struct.pack(">I", 1) + b"not zlib"), HeaderBlockError),
    ],
)
def test_malformed_frames_are_typed_errors(wire: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        SpdyCodec().receive_data(wire)


@pytest.mark.parametrize(
    "raw",
    [
        _block((b"Port", b"80")),  # not lower-case
        _block((b"", b"x")),
        _block((b"port", b"80"), (b"port", b"81")),  # names are unique in a block
        _block((b"port", b"80"))[:-1],  # truncated
        _block((b"port", b"80")) + b"!",  # trailing bytes
        struct.pack(">I", 1000) + b"\x00" * 8,  # more pairs than bytes
        b"\x00\x00",
    ],
)
def test_malformed_header_blocks_are_typed_errors(raw: bytes) -> None:
    frame = _control(2, 0, struct.pack(">I", 1) + _compressed(raw))
    with pytest.raises(HeaderBlockError):
        SpdyCodec().receive_data(frame)


@pytest.mark.parametrize(
    "frame",
    [
        Data(0, b"x"),
        SynStream(1, ((b"Port", b"80"),)),
        SynStream(1, ((b"port", b"8\x000"),)),
        SynStream(1, (), priority=8),
        SynReply(2**31, ()),
        RstStream(1, 0),
        Settings((Setting(1 << 24, 0),)),
        Ping(-1),
        GoAway(1, 1 << 32),
        WindowUpdate(1, 0),
    ],
)
def test_encoding_an_impossible_frame_is_a_value_error(frame: Frame) -> None:
    with pytest.raises(ValueError):
        SpdyCodec().encode(frame)


# -- properties ------------------------------------------------------------------------

stream_ids = st.integers(1, 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
names = st.binary(min_size=1, max_size=20).map(bytes.lower).filter(lambda b: b"\x00" not in b)
values = st.binary(max_size=40).filter(lambda b: b"\x00" not in b)
header_blocks = st.dictionaries(names, values, max_size=6).map(lambda d: tuple(d.items()))

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        SynStream,
        stream_ids,
        header_blocks,
        st.integers(0, 2**31 - 1),
        st.integers(0, 7),
        st.integers(0, 255),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(SynReply, stream_ids, header_blocks, st.booleans()),
    st.builds(Headers, stream_ids, header_blocks, st.booleans()),
    st.builds(RstStream, stream_ids, st.integers(1, 2**32 - 1)),
    st.builds(
        Settings,
        st.lists(
            st.builds(Setting, st.integers(0, 2**24 - 1), u32, st.integers(0, 255)), max_size=4
        ).map(tuple),
        st.booleans(),
    ),
    st.builds(Ping, u32),
    st.builds(GoAway, st.integers(0, 2**31 - 1), u32),
    st.builds(WindowUpdate, st.integers(0, 2**31 - 1), stream_ids),
    st.builds(Data, stream_ids, st.binary(max_size=300), st.booleans()),
)


@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 2**16), max_size=12))
def test_frames_round_trip_in_any_chunking(sent: list[Frame], cuts: list[int]) -> None:
    sender, receiver = SpdyCodec(), SpdyCodec()
    wire = b"".join(sender.encode(f) for f in sent)
    bounds = [0, *sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    received: list[Frame] = []
    for start, end in itertools.pairwise(bounds):
        received += receiver.receive_data(wire[start:end])
    assert received == sent


@given(st.binary(max_size=2000), st.integers(1, 64))
def test_arbitrary_bytes_parse_or_fail_typed(wire: bytes, chunk: int) -> None:
    receiver = SpdyCodec(max_frame_size=4096)
    try:
        for start in range(0, len(wire), chunk):
            receiver.receive_data(wire[start : start + chunk])
    except SpdyError:
        pass
