"""The RFC 6455 codec: handshakes checked, frames round-trip in any chunking, and a peer's
mistakes are typed errors carrying the close code to answer with."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.websocket import (
    Close,
    CloseCode,
    Event,
    FrameParser,
    HandshakeError,
    InvalidPayload,
    Message,
    MessageTooBig,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    accept_key,
    encode_close,
    encode_frame,
    server_handshake_headers,
    validate_client_handshake,
    validate_server_handshake,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample nonce
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 §5.7's masking key


def client_headers(**overrides: bytes | None) -> list[tuple[bytes, bytes]]:
    headers: dict[str, bytes | None] = {
        "host": b"example",
        "upgrade": b"websocket",
        "connection": b"keep-alive, Upgrade",
        "sec-websocket-version": b"13",
        "sec-websocket-key": KEY.encode(),
        "sec-websocket-protocol": b"v5.channel.k8s.io, v4.channel.k8s.io",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return [(name.encode(), value) for name, value in headers.items() if value is not None]


def events(parser: FrameParser, data: bytes) -> list[Event]:
    return list(parser.feed(data))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the sorted offsets `cuts`."""
    return [data[a:b] for a, b in pairwise([0, *cuts, len(data)])]


# -- handshake --------------------------------------------------------------------------


def test_accept_key_is_rfc_6455s_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_a_client_handshake_yields_its_key_and_protocols_in_order() -> None:
    headers = [*client_headers(), (b"sec-websocket-protocol", b"base64.channel.k8s.io")]
    handshake = validate_client_handshake("GET", headers)
    assert handshake.key == KEY
    assert handshake.protocols == (
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "base64.channel.k8s.io",
    )
    assert (
        validate_client_handshake("GET", client_headers(sec_websocket_protocol=None)).protocols
        == ()
    )


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        ("POST", {}, "a WebSocket handshake uses GET, not POST"),
        ("GET", {"upgrade": b"SPDY/3.1"}, "the request does not ask to upgrade to websocket"),
        ("GET", {"connection": b"keep-alive"}, "the Connection header does not name upgrade"),
        ("GET", {"sec_websocket_key": None}, "the request needs exactly one Sec-WebSocket-Key"),
        ("GET", {"sec_websocket_key": b"c2hvcnQ="}, "Sec-WebSocket-Key is not 16 bytes in base64"),
        ("GET", {"sec_websocket_key": b"!!not base64!!"}, "Sec-WebSocket-Key is not 16 bytes"),
    ],
)
def test_bad_client_handshakes_are_400(
    method: str, overrides: dict[str, bytes | None], message: str
) -> None:
    with pytest.raises(HandshakeError, match=message) as caught:
        validate_client_handshake(method, client_headers(**overrides))
    assert caught.value.status == 400


def test_another_version_is_426_naming_13() -> None:
    with pytest.raises(HandshakeError) as caught:
        validate_client_handshake("GET", client_headers(sec_websocket_version=b"8"))
    assert caught.value.status == 426
    assert caught.value.headers == ((b"sec-websocket-version", b"13"),)


def test_server_handshake_headers_carry_the_accept_and_the_chosen_protocol() -> None:
    assert server_handshake_headers(KEY, "v5.channel.k8s.io") == [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", ACCEPT.encode()),
        (b"sec-websocket-protocol", b"v5.channel.k8s.io"),
    ]
    assert len(server_handshake_headers(KEY, None)) == 3


def test_a_server_handshake_is_checked_and_yields_the_chosen_protocol() -> None:
    offered = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    answer = server_handshake_headers(KEY, "v4.channel.k8s.io")
    assert validate_server_handshake(KEY, offered, 101, answer) == "v4.channel.k8s.io"
    assert validate_server_handshake(KEY, offered, 101, answer[:3]) is None


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        (400, server_handshake_headers(KEY, None), "the server answered 400, not 101"),
        (101, server_handshake_headers(KEY, None)[1:], "did not upgrade to websocket"),
        (101, server_handshake_headers("x" * 24, None), "Sec-WebSocket-Accept does not match"),
        (101, server_handshake_headers(KEY, "chat"), "a subprotocol we did not offer"),
        (
            101,
            [*server_handshake_headers(KEY, None), (b"sec-websocket-extensions", b"deflate")],
            "an extension we did not offer",
        ),
    ],
)
def test_bad_server_handshakes_are_refused(
    status: int, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    with pytest.raises(HandshakeError, match=message):
        validate_server_handshake(KEY, ["v5.channel.k8s.io"], status, headers)


# -- frames: RFC 6455 §5.7's examples ---------------------------------------------------


def test_rfc_examples_encode_byte_for_byte() -> None:
    assert encode_frame(Opcode.TEXT, b"Hello") == b"\x81\x05Hello"
    assert encode_frame(Opcode.TEXT, b"Hello", mask_key=MASK) == bytes.fromhex(
        "818537fa213d7f9f4d5158"
    )
    assert encode_frame(Opcode.TEXT, b"Hel", fin=False) == b"\x01\x03Hel"
    assert encode_frame(Opcode.CONTINUATION, b"lo") == b"\x80\x02lo"
    assert encode_frame(Opcode.PING, b"Hello") == b"\x89\x05Hello"
    assert encode_frame(Opcode.BINARY, bytes(256))[:4] == b"\x82\x7e\x01\x00"
    assert encode_frame(Opcode.BINARY, bytes(65536))[:10] == b"\x82\x7f" + (65536).to_bytes(
        8, "big"
    )


def test_rfc_examples_parse() -> None:
    client = FrameParser(masked=True)
    assert events(client, bytes.fromhex("818537fa213d7f9f4d5158")) == [
        Message(Opcode.TEXT, b"Hello")
    ]
    server = FrameParser(masked=False)
    assert events(server, b"\x01\x03Hel") == []
    assert events(server, b"\x89\x05Hello\x80\x02lo") == [
        Ping(b"Hello"),  # control frames may come between fragments
        Message(Opcode.TEXT, b"Hello"),
    ]
    assert events(server, b"\x8a\x00") == [Pong(b"")]


def test_encoding_refuses_oversized_or_fragmented_control_frames_and_bad_keys() -> None:
    with pytest.raises(ValueError, match="125"):
        encode_frame(Opcode.PING, bytes(126))
    with pytest.raises(ValueError, match="fragmented"):
        encode_frame(Opcode.CLOSE, b"", fin=False)
    with pytest.raises(ValueError, match="4 bytes"):
        encode_frame(Opcode.BINARY, b"", mask_key=b"abc")


def test_close_frames_round_trip_and_long_reasons_are_cut_at_a_character() -> None:
    parser = FrameParser(masked=False)
    assert events(parser, encode_close(CloseCode.NORMAL, "bye")) == [Close(1000, "bye")]
    assert events(FrameParser(masked=False), encode_close(None)) == [Close(None, "")]
    frame = encode_close(CloseCode.GOING_AWAY, "é" * 100)  # 200 bytes of UTF-8
    assert len(frame) == 2 + 2 + 122  # header, code, and the 61 whole characters that fit
    (close,) = events(FrameParser(masked=False), frame)
    assert close == Close(1001, "é" * 61)


def test_events_before_a_bad_frame_come_out_first() -> None:
    parser = FrameParser(masked=False)
    stream = parser.feed(encode_frame(Opcode.BINARY, b"ok") + b"\xf2\x00")
    assert next(stream) == Message(Opcode.BINARY, b"ok")
    with pytest.raises(ProtocolError, match="reserved bits"):
        next(stream)


@pytest.mark.parametrize(
    ("masked", "data", "error", "message"),
    [
        (False, b"\x83\x00", ProtocolError, "unknown opcode 0x3"),
        (True, b"\x82\x00", ProtocolError, "must be masked"),
        (False, b"\x82\x80" + MASK, ProtocolError, "must be masked"),
        (False, b"\x09\x00", ProtocolError, "fragmented"),
        (False, b"\x89\x7e\x00\x7e" + bytes(126), ProtocolError, "longer than 125"),
        (False, b"\x80\x00", ProtocolError, "no message to continue"),
        (False, b"\x01\x00\x82\x00", ProtocolError, "before the last one finished"),
        (False, b"\x82\x7f" + (1 << 63).to_bytes(8, "big"), ProtocolError, "64-bit"),
        (False, b"\x81\x02\xc3\x28", InvalidPayload, "not UTF-8"),
        (False, b"\x88\x01\x03", ProtocolError, "2-byte code"),
        (False, b"\x88\x02\x03\xed", ProtocolError, "invalid close code 1005"),
        (False, b"\x88\x04\x03\xe8\xc3\x28", InvalidPayload, "close reason"),
        (False, b"\x88\x00\x82\x00", ProtocolError, "after the close frame"),
    ],
)
def test_protocol_errors_are_typed_with_their_close_code(
    masked: bool, data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        events(FrameParser(masked=masked), data)
    expected = 1007 if error is InvalidPayload else 1002
    assert getattr(caught.value, "close_code", None) == expected


def test_a_frame_announcing_too_much_is_refused_from_its_header() -> None:
    parser = FrameParser(masked=False, max_message_size=1000)
    assert events(parser, encode_frame(Opcode.BINARY, bytes(1000))) == [
        Message(Opcode.BINARY, bytes(1000))
    ]
    with pytest.raises(MessageTooBig) as caught:
        events(FrameParser(masked=False, max_message_size=1000), b"\x82\x7e\x03\xe9")
    assert caught.value.close_code == CloseCode.MESSAGE_TOO_BIG
    fragments = encode_frame(Opcode.BINARY, bytes(600), fin=False)
    fragments += encode_frame(Opcode.CONTINUATION, bytes(401))[:4]  # only the header
    with pytest.raises(MessageTooBig):
        events(FrameParser(masked=False, max_message_size=1000), fragments)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_valid_close_codes_are_accepted(code: int) -> None:
    assert events(FrameParser(masked=None), encode_close(code)) == [Close(code, "")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_reserved_close_codes_are_refused(code: int) -> None:
    with pytest.raises(ProtocolError, match="invalid close code"):
        events(FrameParser(masked=None), encode_close(code))


# -- properties -------------------------------------------------------------------------

payloads = st.binary(max_size=300)
messages = st.one_of(
    st.builds(Message, st.just(Opcode.BINARY), payloads),
    st.builds(lambda t: Message(Opcode.TEXT, t.encode()), st.text(max_size=100)),
    st.builds(Ping, st.binary(max_size=125)),
    st.builds(Pong, st.binary(max_size=125)),
)


@st.composite
def wire(draw: st.DrawFn, masked: bool) -> tuple[list[Event], bytes]:
    """Events and their frames: data messages split into random fragments with pings
    slipped in between them, a close at the end, each frame masked (or not) as `masked`."""
    sent = draw(st.lists(messages, max_size=8))
    code = draw(st.sampled_from([None, 1000, 1001, 4000]))
    close = Close(code, draw(st.text(max_size=20)) if code is not None else "")

    def mask() -> bytes | None:
        return draw(st.binary(min_size=4, max_size=4)) if masked else None

    expected: list[Event] = []
    data = b""
    for event in sent:
        if not isinstance(event, Message):
            opcode = Opcode.PING if isinstance(event, Ping) else Opcode.PONG
            data += encode_frame(opcode, event.payload, mask_key=mask())
            expected.append(event)
            continue
        cuts = sorted(draw(st.lists(st.integers(0, len(event.payload)), max_size=3)))
        pieces = split(event.payload, cuts)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            opcode = event.opcode if i == 0 else Opcode.CONTINUATION
            data += encode_frame(opcode, piece, fin=last, mask_key=mask())
            if not last and draw(st.booleans()):
                interleaved = Ping(draw(st.binary(max_size=10)))
                data += encode_frame(Opcode.PING, interleaved.payload, mask_key=mask())
                expected.append(interleaved)
        expected.append(event)
    data += encode_close(close.code, close.reason, mask_key=mask())
    return [*expected, close], data


@given(st.booleans().flatmap(lambda masked: st.tuples(st.just(masked), wire(masked))), st.data())
def test_any_chunking_parses_to_the_same_events(
    case: tuple[bool, tuple[list[Event], bytes]], data: st.DataObject
) -> None:
    masked, (expected, wire_bytes) = case
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire_bytes)), max_size=20)))
    for parser in (FrameParser(masked=masked), FrameParser(masked=None)):
        received: list[Event] = []
        for chunk in split(wire_bytes, cuts):
            received.extend(parser.feed(chunk))
        assert received == expected


@given(payloads, st.binary(min_size=4, max_size=4))
def test_a_masked_frame_unmasks_to_its_payload(payload: bytes, key: bytes) -> None:
    frame = encode_frame(Opcode.BINARY, payload, mask_key=key)
    assert events(FrameParser(masked=True), frame) == [Message(Opcode.BINARY, payload)]
