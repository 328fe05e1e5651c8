"""Decoding the few Kubernetes protobuf request bodies kubectl sends.

client-go ≥1.31 typed clients encode built-in objects as protobuf
(`application/vnd.kubernetes.protobuf`) with no fallback to JSON, so `kubectl create
namespace|configmap|secret` send protobuf whatever the server answers with. Responses stay
JSON, which those clients also accept. Only the kinds kubectl's generators create
(`create namespace|configmap|secret|deployment|service`, and the pod `debug --copy-to`
makes) are decoded, with the fields those fill; unknown fields are skipped, as protobuf
decoders do. Field numbers are those of k8s.io/api's generated.proto.

The envelope is the magic `k8s\\0` and a `runtime.Unknown` message whose `raw` field holds
the object (k8s.io/apimachinery/pkg/runtime/generated.proto).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from protocols.k8s_protobuf import MAGIC, ProtobufError
from protocols.k8s_protobuf import fields as _fields

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

# A schema maps a field number to (JSON name, field type); a nested schema is a message.
Schema = Mapping[int, tuple[str, Union[str, "Schema", "Repeated"]]]


@dataclass(frozen=True, slots=True)
class Repeated:
    """A repeated message field: a JSON list of `schema` objects."""

    schema: Schema


_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Schema = {1: ("typeMeta", _TYPE_META), 2: ("raw", "raw")}
_OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    6: ("resourceVersion", "string"),
    11: ("labels", "map_string"),
    12: ("annotations", "map_string"),
    14: ("finalizers", "repeated_string"),
}
_LABEL_SELECTOR: Schema = {1: ("matchLabels", "map_string")}
_CONTAINER: Schema = {
    1: ("name", "string"),
    2: ("image", "string"),
    3: ("command", "repeated_string"),
    4: ("args", "repeated_string"),
    6: (
        "ports",
        Repeated({1: ("name", "string"), 3: ("containerPort", "int"), 4: ("protocol", "string")}),
    ),
    5: ("workingDir", "string"),
    7: ("env", Repeated({1: ("name", "string"), 2: ("value", "string")})),
    13: ("terminationMessagePath", "string"),
    14: ("imagePullPolicy", "string"),
    16: ("stdin", "bool"),
    17: ("stdinOnce", "bool"),
    18: ("tty", "bool"),
    20: ("terminationMessagePolicy", "string"),
}
_POD_SPEC: Schema = {
    2: ("containers", Repeated(_CONTAINER)),
    3: ("restartPolicy", "string"),
    4: ("terminationGracePeriodSeconds", "int"),
    6: ("dnsPolicy", "string"),
    7: ("nodeSelector", "map_string"),
    8: ("serviceAccountName", "string"),
    10: ("nodeName", "string"),
    16: ("hostname", "string"),
    19: ("schedulerName", "string"),
    20: ("initContainers", Repeated(_CONTAINER)),
    27: ("shareProcessNamespace", "bool"),
}
_SERVICE_PORT: Schema = {
    1: ("name", "string"),
    2: ("protocol", "string"),
    3: ("port", "int"),
    4: ("targetPort", "int_or_string"),
    5: ("nodePort", "int"),
}
_KINDS: Mapping[tuple[str, str], Schema] = {
    ("v1", "Pod"): {1: ("metadata", _OBJECT_META), 2: ("spec", _POD_SPEC)},
    ("v1", "Namespace"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("finalizers", "repeated_string")}),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "map_string"),
        3: ("binaryData", "map_bytes"),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "map_bytes"),
        3: ("type", "string"),
        4: ("stringData", "map_string"),
        5: ("immutable", "bool"),
    },
    ("apps/v1", "Deployment"): {
        1: ("metadata", _OBJECT_META),
        2: (
            "spec",
            {
                1: ("replicas", "int"),
                2: ("selector", _LABEL_SELECTOR),
                3: ("template", {1: ("metadata", _OBJECT_META), 2: ("spec", _POD_SPEC)}),
                4: ("strategy", {1: ("type", "string")}),
            },
        ),
    },
    ("v1", "Service"): {
        1: ("metadata", _OBJECT_META),
        2: (
            "spec",
            {
                1: ("ports", Repeated(_SERVICE_PORT)),
                2: ("selector", "map_string"),
                3: ("clusterIP", "string"),
                4: ("type", "string"),
                7: ("externalName", "string"),
            },
        ),
    },
}


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    try:
        return value.decode()
    except UnicodeDecodeError as err:
        raise ProtobufError("invalid UTF-8 in a string field") from err


def _int(name: str, value: int | bytes) -> int:
    if isinstance(value, bytes):
        raise ProtobufError(f"{name}: expected a varint")
    return value - (1 << 64) if value >= 1 << 63 else value  # int32/int64 are two's complement


def _bytes(name: str, value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError(f"{name}: expected a message")
    return value


def _entry(value: int | bytes) -> tuple[str, int | bytes]:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a map entry")
    entry = dict(_fields(value))
    return _text(entry.get(1, b"")), entry.get(2, b"")


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, Repeated):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: expected a message")
            out.setdefault(name, []).append(_message(value, kind.schema))
        elif not isinstance(kind, str):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: expected a message")
            out[name] = _message(value, kind)
        elif kind == "string":
            if text := _text(value):  # Go writes "" where its JSON leaves the field out
                out[name] = text
        elif kind == "int":
            out[name] = _int(name, value)
        elif kind == "int_or_string":  # intstr.IntOrString: {1: type, 2: intVal, 3: strVal}
            parts = _message(
                _bytes(name, value), {1: ("t", "int"), 2: ("i", "int"), 3: ("s", "string")}
            )
            out[name] = parts.get("s", "") if parts.get("t") == 1 else parts.get("i", 0)
        elif kind == "raw":
            out[name] = value
        elif kind == "bool":
            if value:  # as "": false is what Go's JSON leaves out
                out[name] = True
        elif kind == "repeated_string":
            out.setdefault(name, []).append(_text(value))
        else:  # map_string, map_bytes: repeated {1: key, 2: value} entries
            key, item = _entry(value)
            if kind == "map_bytes":
                raw = item if isinstance(item, bytes) else b""
                out.setdefault(name, {})[key] = base64.b64encode(raw).decode()
            else:
                out.setdefault(name, {})[key] = _text(item)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a kind listed above."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    envelope = _message(body[len(MAGIC) :], _UNKNOWN)
    type_meta = envelope.get("typeMeta", {})
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    schema = _KINDS.get((api_version, kind))
    if schema is None:
        raise ProtobufError(f"protobuf bodies of {api_version} {kind} are not supported")
    return {"apiVersion": api_version, "kind": kind, **_message(envelope.get("raw", b""), schema)}
