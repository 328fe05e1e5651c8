"""The HTTP/2 speed-ups give the libraries' answers exactly: the memoised Huffman coder
(bounded) and the short frame descriptions."""

from __future__ import annotations

import hpack
import hpack.hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman as original_decode
from hyperframe.frame import DataFrame
from hypothesis import given
from hypothesis import strategies as st

from l7proxy.wire import h2_speedups

original = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
memo = h2_speedups.MemoHuffmanEncoder()
values = st.binary(min_size=0, max_size=h2_speedups.MAX_LENGTH + 64)


@given(values)
def test_encoding_matches_hpack(value: bytes) -> None:
    assert memo.encode(value) == original.encode(value)


@given(values)
def test_decoding_matches_hpack_and_inverts_encoding(value: bytes) -> None:
    coded = original.encode(value)
    assert h2_speedups.decode_huffman(coded) == original_decode(coded) == value
    # hpack hands the decoder slices of its receive buffer.
    assert h2_speedups.decode_huffman(memoryview(b"\x00" + coded)[1:]) == value


def test_a_repeated_value_is_coded_once() -> None:
    token = b"Bearer " + b"eyJhbGciOiJSUzI1NiJ9." * 40
    coded = original.encode(token)
    h2_speedups._decode_cached.cache_clear()
    for _ in range(5):
        assert h2_speedups.decode_huffman(coded) == token
    info = h2_speedups._decode_cached.cache_info()
    assert (info.misses, info.hits) == (1, 4)


def test_huge_and_tiny_values_bypass_the_cache() -> None:
    h2_speedups._encode_cached.cache_clear()
    memo.encode(b"x" * (h2_speedups.MAX_LENGTH + 1))
    memo.encode(b"get")
    assert h2_speedups._encode_cached.cache_info().currsize == 0


def test_the_cache_is_bounded() -> None:
    h2_speedups._encode_cached.cache_clear()
    for n in range(h2_speedups.CACHE_SIZE + 100):
        memo.encode(f"/api/v1/namespaces/ns-{n}/pods".encode())
    assert h2_speedups._encode_cached.cache_info().currsize == h2_speedups.CACHE_SIZE


def test_a_malformed_string_raises_every_time() -> None:
    # 0x00 repeated is a run of 5-bit codes followed by padding that is not all ones.
    bad = b"\x00" * 16
    for _ in range(2):
        with pytest.raises(hpack.HPACKDecodingError):
            h2_speedups.decode_huffman(bad)


def test_installed_coders_round_trip_a_header_block() -> None:
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    h2_speedups.install(encoder)
    assert hpack.hpack.decode_huffman is h2_speedups.decode_huffman
    headers = [(b":path", b"/k8s/dev/api/v1/pods"), (b"authorization", b"Bearer " + b"t" * 900)]
    for _ in range(3):
        assert decoder.decode(encoder.encode(headers), raw=True) == headers


@given(st.binary(max_size=64))
def test_raw_data_repr_matches_hyperframe(data: bytes) -> None:
    original_repr = h2_speedups._hyperframe_raw_data_repr
    assert h2_speedups.raw_data_repr(data) == original_repr(data)
    assert h2_speedups.raw_data_repr(memoryview(data)) == original_repr(data)


@given(st.binary(max_size=40), st.one_of(st.none(), st.integers(min_value=0, max_value=30)))
def test_data_frame_description_matches_hyperframe(data: bytes, pad_length: int | None) -> None:
    flags = ["END_STREAM"] if pad_length is None else ["PADDED"]
    frame = DataFrame(1, data, flags=flags, pad_length=pad_length or 0)
    expected = h2_speedups._hyperframe_raw_data_repr(frame.serialize_body())
    assert h2_speedups.data_body_repr(frame) == expected
    # A frame parsed off the wire holds its data as it was received.
    parsed, _ = DataFrame.explain(memoryview(frame.serialize()))
    assert h2_speedups.data_body_repr(parsed) == expected


def test_installed_frame_descriptions_are_hyperframes_own() -> None:
    frame = DataFrame(3, b"x" * 16384, flags=["END_STREAM"])
    before = repr(frame)
    h2_speedups.install(hpack.Encoder())
    assert (
        repr(frame)
        == before
        == ("DataFrame(stream_id=3, flags=['END_STREAM']): <hex:78787878787878787878...>")
    )


def test_installed_hpack_codes_without_debug_lines(caplog: pytest.LogCaptureFixture) -> None:
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    h2_speedups.install(encoder)
    h2_speedups.install(encoder)  # idempotent: wrapped once
    assert not isinstance(getattr(hpack.hpack.log, "_logger", None), h2_speedups.QuietDebugLogger)
    headers = [(b":status", b"200"), (b"content-type", b"application/json")]
    with caplog.at_level("DEBUG", logger="hpack"):
        assert decoder.decode(encoder.encode(headers), raw=True) == headers
    assert [r for r in caplog.records if r.name.startswith("hpack")] == []
    assert hpack.hpack.log.name == "hpack.hpack"  # the rest is the real logger's
