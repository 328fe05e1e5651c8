"""Secret redaction, sans-I/O: a Secrets read's response with every value replaced.

A policy with `redact_secrets` lets its callers see which Secrets exist, their types, keys
and metadata, but never a value: every `data` and `stringData` value becomes base64 of
`REDACTED`, and the `kubectl.kubernetes.io/last-applied-configuration` annotation (which
holds the values `kubectl apply` sent) is removed. The rewrite needs JSON, so the request's
`Accept` is narrowed to its JSON media ranges (`as=Table` ones included) before it goes to
the cluster; a client that accepts no JSON at all is refused rather than served unread
bytes. What the response holds is known from the request (a Secrets get, list or watch), so
every object in it is treated as a Secret: the object itself, a list's `items`, a Table's
`rows[].object` (full objects or PartialObjectMetadata) and a watch event's `object`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Final

REDACTED: Final = base64.b64encode(b"REDACTED").decode("ascii")
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
JSON: Final = b"application/json"
# One watch event (a Secret is at most 1 MiB in etcd; base64 and JSON make it larger).
MAX_EVENT_BYTES: Final = 8 * 1024 * 1024


class NotAcceptable(ValueError):
    """The client accepts no JSON, and only JSON can be redacted."""


class Unredactable(ValueError):
    """A response that is not the JSON it must be, or too large to hold while rewriting."""


def redacted_accept(accept: bytes | None) -> bytes:
    """The `Accept` to send the cluster: the client's JSON media ranges in its order
    (`*/*` and `application/*` become plain JSON), or `NotAcceptable`."""
    if accept is None or not accept.strip():
        return JSON
    kept: list[bytes] = []
    for media_range in accept.split(b","):
        media_type = media_range.split(b";", 1)[0].strip().lower()
        if media_type == JSON:
            kept.append(media_range.strip())
        elif media_type in (b"*/*", b"application/*"):
            kept.append(JSON)
    if not kept:
        raise NotAcceptable(
            f"Secrets are redacted for this caller and can only be served as JSON, not as "
            f"{accept.decode('latin-1')!r}; ask for application/json"
        )
    return b", ".join(dict.fromkeys(kept))


def redact_secret(item: Any) -> None:
    """Replace one Secret's (or its metadata's) values in place."""
    if not isinstance(item, dict):
        return
    for field in ("data", "stringData"):
        values = item.get(field)
        if isinstance(values, dict):
            item[field] = dict.fromkeys(values, REDACTED)
    metadata = item.get("metadata")
    if isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}


def redact_document(document: Any) -> Any:
    """A response document (object, list, Table or watch event) with its Secrets redacted;
    a `Status` and anything without Secrets passes unchanged."""
    if not isinstance(document, dict):
        return document
    if "type" in document and "object" in document:  # a watch event
        redact_document(document["object"])
        return document
    if isinstance(document.get("items"), list):
        for item in document["items"]:
            redact_secret(item)
    if isinstance(document.get("rows"), list):
        for row in document["rows"]:
            if isinstance(row, dict):
                redact_secret(row.get("object"))
    if document.get("kind") != "Status":
        redact_secret(document)
    return document


def redact_body(body: bytes) -> bytes:
    """A whole (non-watch) JSON response, redacted."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unredactable(f"the cluster's answer is not JSON: {exc}") from exc
    return json.dumps(redact_document(document), separators=(",", ":")).encode()


class WatchRedactor:
    """A JSON watch stream (one event per line, as kube-apiserver frames it) in, the same
    events redacted out, each as soon as its line is complete."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._limit = max_event_bytes

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.strip():
                yield redact_body(line) + b"\n"
        if len(self._buffer) > self._limit:
            raise Unredactable(f"a watch event is larger than {self._limit} bytes")

    def end(self) -> bytes:
        """What is left when the stream ends: a last event without its newline."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return redact_body(rest) if rest.strip() else b""
