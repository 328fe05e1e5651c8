"""The object store: every object, one global resourceVersion, a bounded change history and
the watchers fed from it.

Stored objects are never mutated once stored (every write stores a new dict), so readers get
them without copying and must not modify them. Writes happen without awaiting, so each one,
and the fan-out to watchers, is atomic with respect to other tasks.
"""

from __future__ import annotations

import copy
import json
import random
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from l7proxy.tools.sandbox import defaults
from l7proxy.tools.sandbox.resources import ALL, NAMESPACES, ResourceType
from l7proxy.tools.sandbox.selectors import Selector
from l7proxy.tools.sandbox.status import (
    FieldError,
    already_exists,
    bad_request,
    conflict,
    expired,
    forbidden,
    invalid,
    not_found,
)

Obj = dict[str, Any]
Reaction = Callable[[ResourceType, str, Obj], None]

PROTECTED_NAMESPACES = frozenset({"default", "kube-system"})
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
GENERATED_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # kube's generateName alphabet


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


@dataclass(frozen=True, slots=True)
class _Change:
    resource_version: int
    rtype: ResourceType
    type: str
    obj: Obj
    previous: Obj | None  # the object before a MODIFIED change


class Watcher:
    """One watch: the events owed at its start, then a bounded channel of live ones.

    When the channel is full the store closes it instead of queueing more, so a watcher
    that falls behind sees its stream end (as kube ends it) and memory stays bounded."""

    def __init__(
        self,
        rtype: ResourceType,
        namespace: str | None,
        selector: Selector,
        after: int,
        buffer: int,
        unregister: Callable[[Watcher], None],
    ) -> None:
        self._unregister = unregister
        self._rtype = rtype
        self._namespace = namespace
        self._selector = selector
        self._after = after
        self._send, self.events = trio.open_memory_channel[WatchEvent](buffer)
        self.initial: list[WatchEvent] = []

    def translate(self, change: _Change) -> WatchEvent | None:
        """The event this watcher sees for `change`, if any.

        A modification that moves an object into or out of the selection is an ADDED or
        DELETED event for this watcher, as kube's watch cache reports it."""
        if change.rtype is not self._rtype or change.resource_version <= self._after:
            return None
        namespace = change.obj["metadata"].get("namespace", "")
        if self._namespace is not None and namespace != self._namespace:
            return None
        now = self._selector.matches(change.obj)
        before = change.previous is not None and self._selector.matches(change.previous)
        if change.type != "MODIFIED":
            return WatchEvent(change.type, change.obj) if now else None
        if now:
            return WatchEvent("MODIFIED" if before else "ADDED", change.obj)
        return WatchEvent("DELETED", change.obj) if before else None

    def offer(self, change: _Change) -> bool:
        """Queue the event for `change`; False (and the channel closed) if it is full."""
        event = self.translate(change)
        if event is None:
            return True
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._send.close()
            return False
        return True

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._unregister(self)
        self._send.close()
        self.events.close()


class Store:
    def __init__(
        self, clock: Callable[[], float], *, history: int = 1000, watch_buffer: int = 100
    ) -> None:
        self._clock = clock
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r.key: {} for r in ALL}
        self._rv = 0
        self._history: deque[_Change] = deque(maxlen=history)
        self._floor = 0  # watches may resume from any resourceVersion >= this
        self._watchers: set[Watcher] = set()
        self._watch_buffer = watch_buffer
        self._reactions: list[Reaction] = []

    def on_change(self, reaction: Reaction) -> None:
        """Call `reaction(rtype, type, obj)` after every stored change; it may write too."""
        self._reactions.append(reaction)

    @property
    def resource_version(self) -> int:
        return self._rv

    def _now(self) -> str:
        return rfc3339(self._clock())

    def list(self, rtype: ResourceType, namespace: str | None, selector: Selector) -> list[Obj]:
        """Matching objects sorted by namespace and name, as etcd returns them."""
        objects = self._objects[rtype.key]
        return [
            objects[key]
            for key in sorted(objects)
            if (namespace is None or key[0] == namespace) and selector.matches(objects[key])
        ]

    def exists(self, rtype: ResourceType, namespace: str, name: str) -> bool:
        return (namespace, name) in self._objects[rtype.key]

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._objects[rtype.key].get((namespace, name))
        if obj is None:
            raise not_found(rtype, name)
        return obj

    def create(
        self, rtype: ResourceType, namespace: str, body: Obj, *, dry_run: bool = False
    ) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rtype.namespaced and (meta.get("namespace") or namespace) != namespace:
            raise bad_request(_NAMESPACE_MISMATCH)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(GENERATED_CHARS, k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(
                rtype,
                "",
                FieldError("metadata.name", "Required", "name or generateName is required"),
            )
        if len(name) > 253 or not _NAME.fullmatch(name):
            why = (
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.'"
            )
            raise invalid(
                rtype, name, FieldError("metadata.name", "Invalid", why, json.dumps(name))
            )
        if rtype.namespaced and ("", namespace) not in self._objects[NAMESPACES.key]:
            raise not_found(NAMESPACES, namespace)
        if (namespace, name) in self._objects[rtype.key]:
            raise already_exists(rtype, name)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        for key in ("deletionTimestamp", "resourceVersion", "generation"):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=self._now())
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        defaults.validate(rtype, obj)
        defaults.prepare(rtype, obj, None, now=self._now(), ordinal=self._rv + 1)
        if not dry_run:
            self._write(rtype, "ADDED", obj, None)
        return obj

    def update(
        self, rtype: ResourceType, namespace: str, name: str, body: Obj, *, dry_run: bool = False
    ) -> Obj:
        """Replace an object. A stale `metadata.resourceVersion` in `body` is a conflict."""
        current = self.get(rtype, namespace, name)
        obj = copy.deepcopy(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or meta.get("name", name) != name:
            raise bad_request(f"the name of the object does not match the name on the URL ({name})")
        if rtype.namespaced and (meta.get("namespace") or namespace) != namespace:
            raise bad_request(_NAMESPACE_MISMATCH)
        if meta.get("resourceVersion") not in (None, "", current["metadata"]["resourceVersion"]):
            raise conflict(rtype, name)
        old_meta = current["metadata"]
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta.update(
            name=name,
            uid=old_meta["uid"],
            creationTimestamp=old_meta["creationTimestamp"],
            resourceVersion=old_meta["resourceVersion"],
        )
        if "generation" in old_meta:
            meta["generation"] = old_meta["generation"]
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        defaults.validate(rtype, obj)
        defaults.prepare(rtype, obj, current, now=self._now(), ordinal=self._rv + 1)
        if obj == current:  # kube does not bump resourceVersion on a no-op write
            return current
        if not dry_run:
            self._write(rtype, "MODIFIED", obj, current)
        return obj

    def delete(
        self, rtype: ResourceType, namespace: str, name: str, *, dry_run: bool = False
    ) -> Obj:
        """Remove an object (a namespace with everything in it) and return its last state."""
        current = self.get(rtype, namespace, name)
        if rtype is NAMESPACES and name in PROTECTED_NAMESPACES:
            raise forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if dry_run:
            return current
        if rtype is NAMESPACES:
            for member in ALL:
                for ns, child in list(self._objects[member.key]):
                    if member.namespaced and ns == name:
                        self.delete(member, ns, child)
        gone = copy.deepcopy(current)
        gone["metadata"]["deletionTimestamp"] = self._now()
        self._write(rtype, "DELETED", gone, None)
        return gone

    def _write(self, rtype: ResourceType, kind: str, obj: Obj, previous: Obj | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if kind == "DELETED":
            del self._objects[rtype.key][key]
        else:
            self._objects[rtype.key][key] = obj
        if len(self._history) == self._history.maxlen:
            self._floor = self._history[0].resource_version
        change = _Change(self._rv, rtype, kind, obj, previous)
        self._history.append(change)
        self._watchers.difference_update([w for w in self._watchers if not w.offer(change)])
        for react in self._reactions:
            react(rtype, kind, obj)

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        selector: Selector,
        since: int | None,
    ) -> Watcher:
        """Start a watch; leave it by exiting it as a context manager.

        With `since` None its initial events are ADDED for every matching object, otherwise
        they replay the history after `since` (410 Expired if that history is gone)."""
        if since is not None and since < self._floor:
            raise expired(since, self._floor)
        watcher = Watcher(
            rtype,
            namespace,
            selector,
            self._rv if since is None else since,
            self._watch_buffer,
            self._watchers.discard,
        )
        if since is None:
            watcher.initial = [
                WatchEvent("ADDED", o) for o in self.list(rtype, namespace, selector)
            ]
        else:
            replay = (watcher.translate(c) for c in self._history)
            watcher.initial = [e for e in replay if e is not None]
        self._watchers.add(watcher)
        return watcher
