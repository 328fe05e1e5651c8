"""HTTP/2 frame sequences, valid and not, through the server side (`serve_h2`): whatever a
client sends, the connection answers or says GOAWAY, writes only well-formed frames, never
raises and never hangs. Time is a `MockClock`, so every timeout fires at once and a hang is
a connection still open after an hour of virtual time."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from datetime import timedelta

import h2.errors
import trio
import trio.testing
from hyperframe.frame import HeadersFrame
from hypothesis import event, given, settings
from hypothesis import strategies as st

from l7proxy.config.settings import Limits
from l7proxy.wire.h2_server import H2Exchange, serve_h2
from l7proxy.wire.listener import answer_refusal
from protocols.status import StatusReason
from tests.l7proxy.wire.h2_raw import PREFACE, RawH2Client, request_block

# Hypothesis' own per-example deadline: an example takes milliseconds, so seconds of slack
# leave room for a loaded two-core machine; the virtual clock bounds hangs.
_DEADLINE = timedelta(seconds=5)
_VIRTUAL_HOUR = 3600.0

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Any frame, valid or not: no field is checked."""
    header = struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id)
    return header + payload


async def _echo(exchange: H2Exchange) -> None:
    body = b""
    while chunk := await exchange.receive():
        body += chunk
    await exchange.start_response(200, [])
    await exchange.send(body)
    await exchange.finish()


async def _refuse(exchange: H2Exchange, reason: StatusReason, message: str) -> None:
    await answer_refusal(exchange, reason, message)


async def _converse(limits: Limits, talk: Callable[[RawH2Client], Awaitable[None]]) -> RawH2Client:
    """Run `serve_h2` against a client driven by `talk(client)`; the client half-closes
    when `talk` is done and reads all the server writes. Fails on a hang or an exception."""
    client_end, server_end = trio.testing.memory_stream_pair()
    client = RawH2Client(client_end)

    async def serve() -> None:
        await serve_h2(server_end, "fuzz", limits, _echo, _refuse)
        await server_end.aclose()

    with trio.fail_after(_VIRTUAL_HOUR):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await talk(client)
            await client_end.send_eof()
            await client.read_to_end()
    return client


# -- any frames at all ----------------------------------------------------------------------

_stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 0x7FFFFFFF])
_field_names = st.sampled_from(
    [
        *(b":method", b":path", b":scheme", b":authority", b":status", b":bogus", b"host"),
        *(b"content-length", b"te", b"connection", b"X-Upper", b"x-ok", b"", b"a b"),
    ]
)
_fields = st.lists(st.tuples(_field_names, st.binary(max_size=12)), max_size=5)

_open_ids = st.sampled_from([1, 3, 5, 7])
_codes = st.integers(0, 15).map(lambda c: struct.pack(">I", c))


def _frames(
    kind: int, flags: st.SearchStrategy[int], payload: st.SearchStrategy[bytes]
) -> st.SearchStrategy[tuple[str, int, int, int, bytes]]:
    return st.tuples(st.just("frame"), st.just(kind), flags, _open_ids, payload)


# Each step is one piece of what the client sends, in order: mostly frames a client could
# send on its streams (so conversations get deep), and some anything-goes frames and bytes.
_steps = st.one_of(
    # A header block: a real request head plus odd fields, or only odd fields.
    st.tuples(
        st.just("headers"),
        _open_ids | _stream_ids,
        st.sampled_from([END_HEADERS, END_HEADERS | END_STREAM, 0]) | st.integers(0, 255),
        st.booleans() | st.just(True),
        st.just([]) | _fields,
    ),
    _frames(DATA, st.sampled_from([0, END_STREAM]), st.binary(max_size=24)),
    _frames(CONTINUATION, st.sampled_from([0, END_HEADERS]), st.binary(max_size=8)),
    _frames(RST_STREAM, st.just(0), _codes),
    st.tuples(
        st.just("frame"),
        st.integers(0, 12),  # every frame type, and a few unknown ones
        st.integers(0, 255),
        _stream_ids,
        st.binary(max_size=24),
    ),
    st.tuples(
        st.just("settings"),
        st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2**32 - 1)), max_size=3),
    ),
    st.tuples(st.just("window"), _stream_ids, st.integers(0, 2**31 - 1)),
    st.tuples(st.just("bytes"), st.binary(min_size=1, max_size=16)),
)


def _encode(client: RawH2Client, step: tuple[object, ...]) -> bytes:
    match step:
        case ("headers", int(sid), int(flags), bool(request), list(fields)):
            head = request_block(client.encoder) if request else b""
            return frame(HEADERS, flags, sid, head + client.encoder.encode(fields))
        case ("frame", int(kind), int(flags), int(sid), bytes(payload)):
            return frame(kind, flags, sid, payload)
        case ("settings", list(values)):
            return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in values))
        case ("window", int(sid), int(increment)):
            return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", increment))
        case ("bytes", bytes(raw)):
            return raw
    raise AssertionError(step)


@settings(max_examples=300, deadline=_DEADLINE)
@given(
    st.sampled_from([PREFACE, PREFACE, PREFACE, b"", PREFACE[:9]]),
    st.booleans() | st.just(True),
    st.lists(_steps, max_size=12),
)
def test_any_frame_sequence_ends_in_answers_or_goaway_and_never_in_an_exception(
    preface: bytes, settings_first: bool, steps: list[tuple[object, ...]]
) -> None:
    async def talk(client: RawH2Client) -> None:
        await client.send(preface + (frame(SETTINGS, 0, 0) if settings_first else b""))
        for step in steps:
            # One write per step, each taken in before the next: handlers get to answer.
            await trio.testing.wait_all_tasks_blocked()
            await client.send(_encode(client, step))

    client = trio.run(_converse, Limits(), talk, clock=trio.testing.MockClock(autojump_threshold=0))
    # What the gateway wrote parsed as frames (hpack-decoded heads included), opening with
    # its SETTINGS; a GOAWAY, if any, names a real error code.
    assert client.frames, "the gateway wrote nothing"
    assert client.frames[0].type == SETTINGS
    goaway = client.goaway()
    assert goaway is None or goaway.error_code in set(h2.errors.ErrorCodes)
    event(f"GOAWAY {h2.errors.ErrorCodes(goaway.error_code).name}" if goaway else "no GOAWAY")
    event(f"streams answered: {min(len(client.responses), 2)}")


# -- valid conversations --------------------------------------------------------------------

_bodies = st.lists(st.binary(max_size=3000), min_size=1, max_size=5)


@settings(max_examples=80, deadline=_DEADLINE)
@given(_bodies, st.data())
def test_interleaved_valid_streams_are_each_answered_with_their_own_body(
    bodies: list[bytes], data: st.DataObject
) -> None:
    """Streams opened in any order, their DATA split anyhow and interleaved with PING,
    PRIORITY and WINDOW_UPDATE frames: each echoes its body; no reset, no GOAWAY."""
    pieces = [
        data.draw(st.lists(st.integers(1, 1000), max_size=4), label=f"cuts {i}")
        for i in range(len(bodies))
    ]
    order = data.draw(st.permutations([i for i, p in enumerate(pieces) for _ in range(len(p) + 2)]))
    extras = data.draw(
        st.lists(st.sampled_from(["ping", "priority", "window"]), max_size=len(order))
    )
    ids: dict[int, int] = {}
    remaining = list(bodies)

    def next_frame(client: RawH2Client, i: int) -> bytes:
        """The next frame of stream `i`: HEADERS, then its DATA pieces, then the end."""
        if i not in ids:
            ids[i] = 2 * len(ids) + 1
            return HeadersFrame(
                ids[i], request_block(client.encoder), flags=["END_HEADERS"]
            ).serialize()
        body, cuts = remaining[i], pieces[i]
        if cuts:
            size = cuts.pop(0)
            remaining[i] = body[size:]
            return frame(DATA, 0, ids[i], body[:size])
        remaining[i] = b""
        return frame(DATA, END_STREAM, ids[i], body)

    extra_frames = {
        "ping": frame(PING, 0, 0, b"12345678"),
        "priority": frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)),
        "window": frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000)),
    }

    async def talk(client: RawH2Client) -> None:
        await client.send(PREFACE, frame(SETTINGS, 0, 0))
        for n, i in enumerate(order):
            out = next_frame(client, i)
            if n < len(extras):
                out += extra_frames[extras[n]]
            await client.send(out)
        for sid in ids.values():
            await client.until(lambda f, sid=sid: f.stream_id == sid and "END_STREAM" in f.flags)

    client = trio.run(_converse, Limits(), talk, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [client.body(ids[i]) for i in range(len(bodies))] == bodies
    assert all(client.responses[ids[i]][b":status"] == b"200" for i in range(len(bodies)))
    assert client.resets() == {}
    goaway = client.goaway()
    assert goaway is None or goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
