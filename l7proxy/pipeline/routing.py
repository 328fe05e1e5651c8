"""Which cluster a request is for, by its path: `/k8s/<connection>/…`.

The prefix is stripped before the request reaches the cluster; the rest of the target,
query included, is forwarded byte for byte as it was authorized.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PREFIX = "/k8s/"


class LocalEndpoint(enum.Enum):
    """Paths the gateway answers itself."""

    HEALTHZ = "/healthz"
    READYZ = "/readyz"
    METRICS = "/metrics"
    NOT_FOUND = ""


@dataclass(frozen=True, slots=True)
class Route:
    connection: str
    path: str  # the cluster-side path, without the prefix and without the query

    def upstream_target(self, query: str) -> str:
        return self.path + (f"?{query}" if query else "")


_LOCAL = {e.value: e for e in LocalEndpoint if e is not LocalEndpoint.NOT_FOUND}


def route(path: str) -> Route | LocalEndpoint:
    if path.startswith(PREFIX):
        connection, slash, rest = path[len(PREFIX) :].partition("/")
        if connection:
            return Route(connection, slash + rest if slash else "/")
    return _LOCAL.get(path, LocalEndpoint.NOT_FOUND)
