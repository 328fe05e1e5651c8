"""Label and field selectors, the subset kubectl sends: `=`, `==`, `!=`, existence, `in`/`notin`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from l7proxy.tools.sandbox.status import bad_request

Obj = dict[str, Any]

_SET_TERM = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)$")
_OPS = ("==", "!=", "=")
# kube serves these field labels for every type and a few more per type.
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_EXTRA_FIELDS: Mapping[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "status.phase"),
    "secrets": ("type",),
    "events": (
        *(f"involvedObject.{k}" for k in ("kind", "namespace", "name", "uid", "apiVersion")),
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "type",
    ),
}


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists", "in", "notin"
    values: frozenset[str] = frozenset()

    def matches(self, value: str | None) -> bool:
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        found = value is not None and value in self.values
        return found if self.op in ("=", "in") else not found


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b=c`)."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:i].strip())
            start = i + 1
    terms.append(text[start:].strip())
    return [t for t in terms if t]


def _parse_term(term: str, *, set_based: bool) -> Requirement:
    if set_based and (match := _SET_TERM.match(term)):
        values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
        return Requirement(match[1], match[2], values)
    for op in _OPS:
        key, sep, value = term.partition(op)
        if sep:
            if not key.strip():
                break
            return Requirement(key.strip(), "=" if op == "==" else op, frozenset({value.strip()}))
    if set_based and re.fullmatch(r"!?[^\s!=(),]+", term):
        if term.startswith("!"):
            return Requirement(term[1:], "!exists")
        return Requirement(term, "exists")
    raise bad_request(f"unable to parse requirement: {term!r}")


def _field_value(obj: Obj, path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return None if node is None else str(node)


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed `labelSelector` plus `fieldSelector`; the empty selector matches everything."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, resource: str, label_selector: str, field_selector: str) -> Selector:
        labels = tuple(_parse_term(t, set_based=True) for t in _split_terms(label_selector))
        fields = tuple(_parse_term(t, set_based=False) for t in _split_terms(field_selector))
        allowed = _COMMON_FIELDS + _EXTRA_FIELDS.get(resource, ())
        for req in fields:
            if req.key not in allowed:
                raise bad_request(f"field label not supported: {req.key}")
        return cls(labels, fields)

    def matches(self, obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels.get(r.key)) for r in self.labels) and all(
            r.matches(_field_value(obj, r.key)) for r in self.fields
        )
