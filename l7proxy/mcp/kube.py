"""Kubernetes requests for a tool call, made through the gateway's own request path.

Every request is an `InternalExchange` handed to `Gateway.handle` with the caller's
verified identity: routed to the connection, resolved, authorized by the caller's
policies, forwarded with the connection's credential and audited with the tool call's id
as its `parent_audit_id`. The caller's token is never in it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from l7proxy.pipeline.gateway import Gateway
from l7proxy.pipeline.internal import Caller, InternalExchange

# What one response may hold in memory; tools cut their own output far below this.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
JSON = "application/json"


class ToolError(Exception):
    """A tool call that fails: its message is the tool result's text (`isError`)."""


@dataclass(frozen=True, slots=True)
class KubeResponse:
    status: int
    body: bytes
    truncated: bool
    audit_id: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        if self.truncated:
            raise ToolError(
                f"the answer is larger than {MAX_RESPONSE_BYTES} bytes: ask for less "
                "(limit, selectors, a namespace)"
            )
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ToolError(f"the cluster's answer is not JSON (HTTP {self.status})") from exc

    def failure(self) -> ToolError:
        """The refusal as the tool's error: a Status' message (a 403's names what was
        refused and why), else the status line."""
        try:
            document = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        if isinstance(document, dict) and document.get("kind") == "Status":
            reason = document.get("reason") or self.status
            return ToolError(f"{reason} ({self.status}): {document.get('message', '')}")
        return ToolError(f"HTTP {self.status}: {self.body[:500].decode('utf-8', 'replace')}")


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One resource type as discovery names it."""

    group: str
    version: str
    name: str  # plural, e.g. "deployments"
    kind: str
    namespaced: bool

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.name}"
        if name:
            base += f"/{quote(name, safe='')}"
        return base + (f"/{subresource}" if subresource else "")


Query = Mapping[str, str] | Sequence[tuple[str, str]]
# Called after each request with its method and path, e.g. to report progress.
Progress = Callable[[str], Awaitable[None]]


GATEWAY_API = "/l7proxy/v1/"


class KubeClient:
    def __init__(
        self, gateway: Gateway, connection: str, caller: Caller, progress: Progress | None = None
    ) -> None:
        self.gateway = gateway
        self.connection = connection
        self.caller = caller
        self.progress = progress
        self.audit_ids: list[str] = []  # of every request made, in order

    def exchange(
        self,
        method: str,
        path: str,
        query: Query | None = None,
        *,
        body: bytes = b"",
        content_type: str = "",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> InternalExchange:
        # The gateway's own API (access requests) is not under a connection.
        target = path if path.startswith(GATEWAY_API) else f"/k8s/{self.connection}{path}"
        if query:
            target += "?" + urlencode(query, quote_via=quote)
        fields = [(b"accept", JSON.encode()), (b"user-agent", b"l7proxy-mcp"), *headers]
        if content_type:
            fields.append((b"content-type", content_type.encode()))
        if body:
            fields.append((b"content-length", str(len(body)).encode()))
        return InternalExchange(method, target, fields, body, max_response_bytes=MAX_RESPONSE_BYTES)

    async def run(self, exchange: InternalExchange) -> KubeResponse:
        await self.gateway.handle(exchange, self.caller)
        response = KubeResponse(
            exchange.status, bytes(exchange.body), exchange.truncated, exchange.header(b"audit-id")
        )
        self.audit_ids.append(response.audit_id)
        if self.progress is not None:
            await self.progress(f"{exchange.head.method} {exchange.head.path}")
        return response

    async def request(
        self, method: str, path: str, query: Query | None = None, **options: Any
    ) -> KubeResponse:
        """One request (see `exchange` for the options), its whole response kept."""
        return await self.run(self.exchange(method, path, query, **options))

    async def ok_json(self, method: str, path: str, query: Query | None = None, **kw: Any) -> Any:
        """A request that must succeed; its JSON body, or the refusal as `ToolError`."""
        response = await self.request(method, path, query, **kw)
        if not response.ok:
            raise response.failure()
        return response.json()

    async def discover(self, resource: str, api_version: str = "") -> ApiResource:
        """The resource type `resource` names — plural, singular, kind or short name,
        optionally `name.group` — found through discovery, core API first."""
        name, _, group = resource.strip().partition(".")
        if not name:
            raise ToolError("name a resource type, e.g. pods or deployments.apps")
        if api_version:
            group, _, version = api_version.rpartition("/")
            candidates = [(group, version)]
        elif group:
            candidates = await self._group_versions(only=group)
        else:
            candidates = [("", "v1"), *await self._group_versions()]
        for group_name, version in candidates:
            found = await self._find(group_name, version, name)
            if found is not None:
                return found
        raise ToolError(f'the cluster serves no resource type "{resource}"')

    async def _group_versions(self, only: str | None = None) -> list[tuple[str, str]]:
        groups = (await self.ok_json("GET", "/apis")).get("groups") or []
        found = []
        for group in groups:
            if only is not None and group.get("name") != only:
                continue
            preferred = (group.get("preferredVersion") or {}).get("version")
            if preferred:
                found.append((str(group["name"]), str(preferred)))
        return found

    async def _find(self, group: str, version: str, name: str) -> ApiResource | None:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        response = await self.request("GET", path)
        if response.status == 404:
            return None
        if not response.ok:
            raise response.failure()
        wanted = name.lower()
        for entry in response.json().get("resources") or []:
            if "/" in entry.get("name", ""):
                continue  # a subresource
            names = {
                entry.get("name", ""),
                entry.get("singularName", ""),
                str(entry.get("kind", "")).lower(),
                *entry.get("shortNames", ()),
            }
            if wanted in names:
                return ApiResource(
                    group,
                    version,
                    entry["name"],
                    entry.get("kind", ""),
                    bool(entry.get("namespaced")),
                )
        return None
