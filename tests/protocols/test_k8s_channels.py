"""Remote-command channels over WebSocket: framing per subprotocol, resizes, the exit
Status as kubelet writes it and client-go reads it, and the passive observer."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.k8s_channels import (
    PROTOCOLS,
    V1,
    V1_BASE64,
    V2,
    V3,
    V4,
    V4_BASE64,
    V5,
    Channel,
    ChannelData,
    ChannelError,
    ChannelProtocol,
    ChannelStreamObserver,
    CloseSignal,
    ExecResult,
    ObservedEvent,
    StreamClosed,
    TerminalSize,
    decode,
    encode,
    encode_close_signal,
    encode_resize,
    encode_result,
    parse_resize,
    parse_result,
    select_protocol,
)
from protocols.websocket import Opcode, ProtocolError, encode_close, encode_frame

MASK = b"\x0a\x0b\x0c\x0d"


def test_protocols_and_what_each_version_adds() -> None:
    assert list(PROTOCOLS) == [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v4.base64.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
        "base64.channel.k8s.io",
    ]
    assert [p.close_signal for p in (V5, V4, V4_BASE64)] == [True, False, False]
    assert [p.status_errors for p in (V5, V4_BASE64, V3, V1_BASE64)] == [True, True, False, False]


def test_the_clients_first_spoken_protocol_is_selected() -> None:
    assert select_protocol(["chat", "v4.base64.channel.k8s.io", "v5.channel.k8s.io"]) is V4_BASE64
    assert select_protocol(["SPDY/3.1+portforward.k8s.io"]) is None


def test_binary_and_base64_framing() -> None:
    assert encode(Channel.STDOUT, b"hi", V5) == (Opcode.BINARY, b"\x01hi")
    assert encode(Channel.STDERR, b"hi", V4_BASE64) == (Opcode.TEXT, b"2aGk=")
    assert decode(Opcode.BINARY, b"\x00abc", V4) == ChannelData(Channel.STDIN, b"abc")
    assert decode(Opcode.TEXT, b"0Zm9vCgo=", V1_BASE64) == ChannelData(0, b"foo\n\n")  # kube's
    assert decode(Opcode.BINARY, b"", V5) is None  # kube skips empty messages
    assert decode(Opcode.BINARY, b"\x09x", V5) == ChannelData(9, b"x")  # kube ignores these


def test_v5_close_signal() -> None:
    assert encode_close_signal(Channel.STDIN, V5) == (Opcode.BINARY, b"\xff\x00")
    assert decode(Opcode.BINARY, b"\xff\x00", V5) == CloseSignal(Channel.STDIN)
    assert decode(Opcode.BINARY, b"\xff\x00", V4) == ChannelData(255, b"\x00")  # no meaning
    with pytest.raises(ValueError, match="no close signal"):
        encode_close_signal(Channel.STDIN, V4)


@pytest.mark.parametrize(
    ("opcode", "payload", "protocol", "message"),
    [
        (Opcode.PING, b"\x00", V5, "not a data message"),
        (Opcode.BINARY, b"\xff", V5, "exactly one channel"),
        (Opcode.BINARY, b"\xff\x00\x01", V5, "exactly one channel"),
        (Opcode.TEXT, b"0not base64!", V4_BASE64, "not base64"),
        (Opcode.TEXT, b"xZm9v", V4_BASE64, "channel digit"),
    ],
)
def test_malformed_messages_are_channel_errors(
    opcode: Opcode, payload: bytes, protocol: ChannelProtocol, message: str
) -> None:
    with pytest.raises(ChannelError, match=message):
        decode(opcode, payload, protocol)


def test_channels_that_cannot_be_framed_are_refused() -> None:
    with pytest.raises(ValueError, match="channel 255"):
        encode(255, b"", V5)
    with pytest.raises(ValueError, match="channel 10"):
        encode(10, b"", V4_BASE64)


@given(
    st.sampled_from(list(PROTOCOLS.values())),
    st.integers(0, 9),
    st.binary(max_size=200),
)
def test_framing_round_trips(protocol: ChannelProtocol, channel: int, data: bytes) -> None:
    opcode, payload = encode(channel, data, protocol)
    assert decode(opcode, payload, protocol) == ChannelData(channel, data)


# -- resize -----------------------------------------------------------------------------


def test_resize_messages_are_go_json() -> None:
    assert encode_resize(TerminalSize(80, 24)) == b'{"Width": 80, "Height": 24}\n'
    assert parse_resize(b'{"Width":80,"Height":24}\n') == [TerminalSize(80, 24)]
    assert parse_resize(b' {"width":1,"height":2} {"WIDTH":3}\n') == [
        TerminalSize(1, 2),
        TerminalSize(3, 0),  # Go leaves a missing field zero
    ]
    assert parse_resize(b"") == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"Width":-1,"Height":2}', "width must be an integer from 0 to 65535"),
        (b'{"Width":1,"Height":65536}', "height must be"),
        (b'{"Width":true}', "width must be"),
        (b'{"Width":1.5}', "width must be"),
        (b"[1, 2]", "JSON objects"),
        (b'{"Width":', "not JSON"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_bad_resizes_are_channel_errors(data: bytes, message: str) -> None:
    with pytest.raises(ChannelError, match=message):
        parse_resize(data)


@given(st.lists(st.builds(TerminalSize, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))))
def test_resize_round_trips(sizes: list[TerminalSize]) -> None:
    assert parse_resize(b"".join(encode_resize(s) for s in sizes)) == sizes


# -- the error channel ------------------------------------------------------------------


def test_results_are_the_statuses_kubelet_writes() -> None:
    assert encode_result(ExecResult(0), V5) == b'{"metadata":{},"status":"Success"}'
    assert json.loads(encode_result(ExecResult(3), V4)) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    assert json.loads(encode_result(ExecResult(None, "no shell"), V4)) == {
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: no shell",
        "reason": "InternalError",
        "details": {"causes": [{"message": "no shell"}]},
        "code": 500,
    }


def test_before_v4_failures_are_plain_text_and_success_is_silent() -> None:
    assert encode_result(ExecResult(0), V2) == b""
    assert encode_result(ExecResult(2, "it broke"), V1) == b"it broke"
    assert parse_result(b"it broke", V3) == ExecResult(None, "it broke")


@given(st.integers(0, 255), st.sampled_from([V5, V4, V4_BASE64]))
def test_exit_codes_round_trip(code: int, protocol: ChannelProtocol) -> None:
    assert parse_result(encode_result(ExecResult(code), protocol), protocol).exit_code == code


def test_failures_without_an_exit_code_keep_their_message() -> None:
    internal = encode_result(ExecResult(None, "no shell"), V5)
    assert parse_result(internal, V5) == ExecResult(None, "Internal error occurred: no shell")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not a JSON Status"),
        (b"[]", "not a JSON Status"),
        (b'{"status":"Maybe"}', "unknown Status status"),
        (b'{"status":"Failure","reason":"NonZeroExitCode"}', "without an ExitCode cause"),
        (
            b'{"status":"Failure","reason":"NonZeroExitCode",'
            b'"details":{"causes":[{"reason":"ExitCode","message":"256"}]}}',
            "invalid exit code '256'",
        ),
        (b"\xff", "not UTF-8"),
    ],
)
def test_unreadable_statuses_are_channel_errors(data: bytes, message: str) -> None:
    with pytest.raises(ChannelError, match=message):
        parse_result(data, V5)


# -- observing --------------------------------------------------------------------------


def client_frame(channel: int, data: bytes, protocol: ChannelProtocol = V5) -> bytes:
    return encode_frame(*encode(channel, data, protocol), mask_key=MASK)


def server_frame(channel: int, data: bytes, protocol: ChannelProtocol = V5) -> bytes:
    return encode_frame(*encode(channel, data, protocol))


CLIENT_WIRE = (
    client_frame(Channel.RESIZE, encode_resize(TerminalSize(120, 40)))
    + client_frame(Channel.STDIN, b"ls\r")
    + encode_frame(Opcode.PING, b"", mask_key=MASK)
    + client_frame(Channel.STDIN, b"")
    + encode_frame(*encode_close_signal(Channel.STDIN, V5), mask_key=MASK)
    + encode_close(1000, mask_key=MASK)
)
CLIENT_EVENTS: list[ObservedEvent] = [
    TerminalSize(120, 40),
    ChannelData(Channel.STDIN, b"ls\r"),
    CloseSignal(Channel.STDIN),
    StreamClosed(1000, ""),
]
STATUS = encode_result(ExecResult(7), V5)
SERVER_WIRE = (
    server_frame(Channel.STDOUT, b"")
    + server_frame(Channel.STDOUT, b"bin\r\n")
    + server_frame(Channel.STDERR, b"oops\n")
    + server_frame(Channel.ERROR, STATUS[:10])  # a Status may span messages
    + server_frame(Channel.ERROR, STATUS[10:])
    + encode_close(1000)
)
SERVER_EVENTS: list[ObservedEvent] = [
    ChannelData(Channel.STDOUT, b"bin\r\n"),
    ChannelData(Channel.STDERR, b"oops\n"),
    ExecResult(7, "command terminated with non-zero exit code: exit status 7"),
    StreamClosed(1000, ""),
]


def observe(protocol: ChannelProtocol, chunks: list[bytes]) -> list[ObservedEvent]:
    observer = ChannelStreamObserver(protocol)
    return [event for chunk in chunks for event in observer.feed(chunk)]


@given(st.data())
def test_the_observer_reads_either_direction_in_any_chunking(data: st.DataObject) -> None:
    for wire, expected in ((CLIENT_WIRE, CLIENT_EVENTS), (SERVER_WIRE, SERVER_EVENTS)):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
        chunks = [wire[a:b] for a, b in pairwise([0, *cuts, len(wire)])]
        assert observe(V5, chunks) == expected


def test_the_observer_reads_base64_and_text_errors() -> None:
    wire = server_frame(Channel.STDOUT, b"hello", V1_BASE64) + server_frame(
        Channel.ERROR, b"exit status 2", V1_BASE64
    )
    assert observe(V1_BASE64, [wire]) == [
        ChannelData(Channel.STDOUT, b"hello"),
        ExecResult(None, "exit status 2"),
    ]


def test_the_observer_types_what_it_cannot_read() -> None:
    with pytest.raises(ChannelError, match="more than"):
        observe(V5, [server_frame(Channel.ERROR, b"{" * 70_000)])
    with pytest.raises(ChannelError, match="not JSON"):
        observe(V5, [client_frame(Channel.RESIZE, b"{oops}")])
    with pytest.raises(ProtocolError):
        observe(V5, [b"\x83\x00"])
