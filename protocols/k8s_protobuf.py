"""Just enough of Kubernetes' protobuf encoding to read the review requests kubectl sends.

kubectl's typed clients send `application/vnd.kubernetes.protobuf` bodies: the magic
`k8s\\x00`, then a `runtime.Unknown` (typeMeta = 1, raw = 2) whose `raw` is the object.
Field numbers are those of k8s.io/api's generated.proto; unknown fields are skipped, as
protobuf requires. Answers go back as JSON, which kubectl's `Accept` admits.
"""

from __future__ import annotations

from collections.abc import Iterator

MAGIC = b"k8s\x00"
CONTENT_TYPE = b"application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """Bytes that are not the protobuf message they claim to be."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varint/fixed fields, bytes for the rest."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            yield number, int.from_bytes(data[pos : pos + size], "little")
            pos += size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _strings(data: bytes, names: dict[int, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, value in fields(data):
        if number in names and isinstance(value, bytes):
            try:
                out[names[number]] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtobufError(f"field {names[number]} is not UTF-8") from exc
    return out


def _message(data: bytes, number: int) -> bytes | None:
    found = None
    for field, value in fields(data):
        if field == number and isinstance(value, bytes):
            found = value
    return found


_TYPE_META = {1: "apiVersion", 2: "kind"}
_RESOURCE_ATTRIBUTES = {
    1: "namespace",
    2: "verb",
    3: "group",
    4: "version",
    5: "resource",
    6: "subresource",
    7: "name",
}
_NON_RESOURCE_ATTRIBUTES = {1: "path", 2: "verb"}


def decode_review(body: bytes) -> dict[str, object]:
    """A SelfSubjectAccessReview, SelfSubjectRulesReview or SelfSubjectReview request,
    decoded into the JSON shape the API documents."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic")
    envelope = body[len(MAGIC) :]
    type_meta = _strings(_message(envelope, 1) or b"", _TYPE_META)
    raw = _message(envelope, 2) or b""
    document: dict[str, object] = dict(type_meta)
    kind = type_meta.get("kind", "")
    spec_bytes = _message(raw, 2) if kind != "SelfSubjectReview" else None
    if kind == "SelfSubjectAccessReview":
        spec: dict[str, object] = {}
        resource = _message(spec_bytes or b"", 1)
        non_resource = _message(spec_bytes or b"", 2)
        if resource is not None:
            spec["resourceAttributes"] = _strings(resource, _RESOURCE_ATTRIBUTES)
        if non_resource is not None:
            spec["nonResourceAttributes"] = _strings(non_resource, _NON_RESOURCE_ATTRIBUTES)
        document["spec"] = spec
    elif kind == "SelfSubjectRulesReview":
        document["spec"] = _strings(spec_bytes or b"", {1: "namespace"})
    elif kind != "SelfSubjectReview":
        raise ProtobufError(f"not a review: kind {kind!r}")
    return document
