"""Lists in pages, as kube-apiserver serves `limit` and `continue`.

kubectl asks for pages of 500 (`--chunk-size`), clients page through big lists, and the MCP
`list_resources` tool hands an agent the `continue` token of a page. A page holds at most
`limit` objects in the list's order (namespace, then name); when more follow, the list's
metadata carries `continue` (the key to resume after) and, for a list without selectors,
`remainingItemCount`. Unlike etcd, the sandbox keeps no snapshot for a token: a later page
shows the objects as they are when it is asked for, after the last key of the one before.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from l7proxy.tools.sandbox.status import bad_request

Obj = dict[str, Any]


@dataclass(frozen=True)
class Page:
    items: list[Obj]
    continue_token: str  # "" on the last page
    remaining: int  # objects after this page

    def metadata(self, resource_version: str, *, count_remaining: bool) -> Obj:
        meta: Obj = {"resourceVersion": resource_version}
        if self.continue_token:
            meta["continue"] = self.continue_token
            if count_remaining:
                meta["remainingItemCount"] = self.remaining
        return meta


def page(objects: list[Obj], params: dict[str, str]) -> Page:
    """The page of `objects` (sorted by namespace and name) that `params` ask for."""
    limit_text = params.get("limit", "")
    if limit_text and not limit_text.isdigit():
        raise bad_request(f"limit must be a non-negative integer, got {limit_text!r}")
    limit = int(limit_text or 0)
    token = params.get("continue", "")
    if token:
        after = _decode(token)
        objects = [o for o in objects if _key(o) > after]
    if not limit or len(objects) <= limit:
        return Page(objects, "", 0)
    items = objects[:limit]
    return Page(items, _encode(_key(items[-1])), len(objects) - limit)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _encode(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"start": list(key)}).encode()).decode()


def _decode(token: str) -> tuple[str, str]:
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))["start"]
        namespace, name = start
        if isinstance(namespace, str) and isinstance(name, str):
            return namespace, name
    except (ValueError, binascii.Error, KeyError, TypeError):
        pass
    raise bad_request("continue key is not valid")
