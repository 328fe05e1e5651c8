"""Which cluster a request is for: by host name (`<connection><host_suffix>`, when
`routing.host_suffix` is set) or by path (`/k8s/<connection>/…`).

A request routed by path has the prefix stripped before it reaches the cluster; one routed
by host keeps its path from the root, so clients that drop a server's base path
(`kubectl get --raw`, exec and port-forward in some UIs) work. Either way the rest of the
target, query included, is forwarded byte for byte as it was authorized.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PREFIX = "/k8s/"
MCP_PREFIX = "/mcp/"
# RFC 9728 §3.1: the metadata of resource `/mcp/<c>` is at this prefix plus its path.
METADATA_PREFIX = "/.well-known/oauth-protected-resource"


class LocalEndpoint(enum.Enum):
    """Paths the gateway answers itself."""

    HEALTHZ = "/healthz"
    READYZ = "/readyz"
    METRICS = "/metrics"
    STATE_API = "/l7proxy/v1/"  # a prefix: access requests and locks
    NOT_FOUND = ""


@dataclass(frozen=True, slots=True)
class Route:
    connection: str
    path: str  # the cluster-side path, without the prefix and without the query

    def upstream_target(self, query: str) -> str:
        return self.path + (f"?{query}" if query else "")


@dataclass(frozen=True, slots=True)
class AgentRoute:
    """`/mcp/<connection>`, the MCP endpoint, or (`metadata`) its protected resource
    metadata at `/.well-known/oauth-protected-resource/mcp/<connection>`."""

    connection: str
    metadata: bool = False


@dataclass(frozen=True, slots=True)
class Misdirected:
    """The TLS server name and the Host header name different connections (RFC 9110
    §15.5.20: 421): answering for either would let one name reach the other's cluster."""

    message: str


_LOCAL = {e.value: e for e in LocalEndpoint if e is not LocalEndpoint.NOT_FOUND}
_LOCAL_PREFIXES = (LocalEndpoint.STATE_API,)


def route(
    path: str, *, server_name: str = "", host: str = "", host_suffix: str = ""
) -> Route | AgentRoute | LocalEndpoint | Misdirected:
    """`server_name` is the connection's TLS SNI, `host` the Host header (or `:authority`)
    with its port, `host_suffix` the configured `routing.host_suffix` ("": by path only).
    The MCP paths come first: kube-apiserver serves nothing under them."""
    agent = _agent_route(path)
    if agent is not None:
        return agent
    if host_suffix:
        by_host = _route_by_host(path, server_name, host, host_suffix)
        if by_host is not None:
            return by_host
    if path.startswith(PREFIX):
        connection, slash, rest = path[len(PREFIX) :].partition("/")
        if connection:
            return Route(connection, slash + rest if slash else "/")
    for endpoint in _LOCAL_PREFIXES:
        if path.startswith(endpoint.value):
            return endpoint
    return _LOCAL.get(path, LocalEndpoint.NOT_FOUND)


def _agent_route(path: str) -> AgentRoute | None:
    metadata = path.startswith(METADATA_PREFIX + MCP_PREFIX)
    rest = path.removeprefix(METADATA_PREFIX) if metadata else path
    if not rest.startswith(MCP_PREFIX):
        return None
    connection = rest[len(MCP_PREFIX) :]
    if not connection or "/" in connection:
        return None
    return AgentRoute(connection, metadata)


def _route_by_host(
    path: str, server_name: str, host: str, suffix: str
) -> Route | Misdirected | None:
    """SNI first; without SNI, Host. With both naming connections, they must agree."""
    by_sni = connection_of_host(server_name, suffix)
    by_host = connection_of_host(_without_port(host), suffix)
    if by_sni and by_host and by_sni != by_host:
        return Misdirected(
            f'the TLS server name names connection "{by_sni}" but the Host header names "{by_host}"'
        )
    connection = by_sni if server_name else by_host
    return Route(connection, path) if connection else None


def connection_of_host(name: str, suffix: str) -> str:
    """The connection `<connection><suffix>` names (one DNS label), or ""."""
    name = name.lower().removesuffix(".")
    if not name.endswith(suffix):
        return ""
    label = name[: -len(suffix)]
    return label if label and "." not in label else ""


def _without_port(host: str) -> str:
    if host.startswith("["):  # an IPv6 literal names no connection
        return ""
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host
