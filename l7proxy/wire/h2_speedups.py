"""Three CPU sinks of the pure-Python HTTP/2 stack, removed without changing any output.

**Huffman coding, memoised.** hpack codes Huffman strings in pure Python, one table step per
nibble. Clients send their bearer token as a never-indexed literal (RFC 7541 §7.1.3), so the
same ~1 KB JWT is Huffman-decoded anew on every request, and the cluster credential is
Huffman-encoded anew on every upstream request: about 200 µs each, a large share of a
proxied request. The same values recur (tokens, paths, user agents, content types), so one
bounded cache per process, keyed by the exact input bytes, makes them near free. Tiny
strings bypass it (a lookup costs more than coding them), and so do huge ones (they would
pin memory). Never-indexed values still go on the wire as literals; only the CPU work is
saved.

**Frame descriptions, cut short first.** h2 formats `repr(frame)` for a trace log line on
every frame it receives, logged or not. hyperframe describes a DATA frame by copying its
whole body and hex-encoding all of it, then keeps the first 20 hex digits: two full copies
of every 16 KiB frame, a tenth of the CPU when streaming. The replacements below give the
same strings from the first ten bytes.

**hpack's debug lines, never asked for.** hpack calls `log.debug` for every integer, literal
and table insertion it codes: about 36 calls per header block, each a trip through
`Logger.debug` and `isEnabledFor`, some 8 µs per block coded both ways (1-2% of a proxied
request). The gateway logs through structlog and never enables those lines, so hpack's
module logger is replaced by one whose `debug` does nothing; hpack's warnings and errors
(it logs none today) would still go through `logging`.
"""

from __future__ import annotations

import binascii
import functools
import logging
from typing import Any, Final

import hpack.hpack
import hpack.huffman
import hpack.huffman_table
import hyperframe.frame
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

# Values outside [MIN_LENGTH, MAX_LENGTH] bytes are coded directly.
MIN_LENGTH: Final = 8
MAX_LENGTH: Final = 4096
# Distinct values kept (at most ~6 MiB, keys and values): the tokens of the callers active
# right now, a few credentials, and the paths and headers in use.
CACHE_SIZE: Final = 512

_decode_huffman = hpack.huffman_table.decode_huffman
_hyperframe_raw_data_repr = hyperframe.frame._raw_data_repr  # for the tests' comparison
_encoder = hpack.huffman.HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _decode_cached(data: bytes) -> bytes:
    return _decode_huffman(data)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _encode_cached(data: bytes) -> bytes:
    return _encoder.encode(data)


def decode_huffman(huffman_string: bytes | bytearray | memoryview | None) -> bytes:
    """hpack's `decode_huffman`, through the cache. The key is a copy, so
    the cache never pins a receive buffer; a malformed string raises as before and is not
    cached."""
    if huffman_string is None or not MIN_LENGTH <= len(huffman_string) <= MAX_LENGTH:
        return _decode_huffman(huffman_string)
    return _decode_cached(bytes(huffman_string))


class MemoHuffmanEncoder(hpack.huffman.HuffmanEncoder):
    """hpack's Huffman encoder, through the cache."""

    def __init__(self) -> None:
        super().__init__(REQUEST_CODES, REQUEST_CODES_LENGTH)

    def encode(self, bytes_to_encode: bytes | None) -> bytes:
        if bytes_to_encode is None or not MIN_LENGTH <= len(bytes_to_encode) <= MAX_LENGTH:
            return super().encode(bytes_to_encode)
        return _encode_cached(bytes(bytes_to_encode))


# hyperframe shows at most this many leading body bytes (20 hex digits).
_SHOWN = 10


def raw_data_repr(data: bytes | memoryview | None) -> str:
    """hyperframe's `_raw_data_repr`, hex-encoding only the bytes it shows."""
    if not data:
        return "None"
    shown = binascii.hexlify(data[:_SHOWN]).decode("ascii")
    return "<hex:" + shown + ("..." if len(data) > _SHOWN else "") + ">"


def data_body_repr(frame: Any) -> str:
    """hyperframe's description of a DATA frame's body (padding length, data, padding)
    without serialising the body."""
    prefix = frame.serialize_padding_data()
    size = len(prefix) + len(frame.data) + frame.pad_length
    if not size:
        return "None"
    head = (prefix + bytes(frame.data[:_SHOWN]) + b"\0" * min(frame.pad_length, _SHOWN))[:_SHOWN]
    shown = binascii.hexlify(head).decode("ascii")
    return "<hex:" + shown + ("..." if size > _SHOWN else "") + ">"


class QuietDebugLogger:
    """A `logging.Logger` stand-in whose `debug` is a no-op; everything else is the
    wrapped logger's."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def debug(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def install(encoder: hpack.hpack.Encoder) -> None:
    """Memoise Huffman coding for `encoder` and for every hpack decoder (hpack calls its
    module-level `decode_huffman`, so the decoder side is one module attribute), describe
    frames cheaply and skip hpack's debug lines. Idempotent."""
    if not isinstance(hpack.hpack.log, QuietDebugLogger):
        hpack.hpack.log = QuietDebugLogger(hpack.hpack.log)  # type: ignore[assignment]
    hpack.hpack.decode_huffman = decode_huffman  # type: ignore[attr-defined]
    encoder.huffman_coder = MemoHuffmanEncoder()
    hyperframe.frame._raw_data_repr = raw_data_repr
    hyperframe.frame.DataFrame._body_repr = data_body_repr  # type: ignore[method-assign,assignment]
