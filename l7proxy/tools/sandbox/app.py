"""`SandboxCluster`: a small in-memory kube-apiserver for end-to-end tests and the demo."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from l7proxy.tools.sandbox import discovery, openapi
from l7proxy.tools.sandbox.api import ResourceApi, parse_target
from l7proxy.tools.sandbox.controllers import Controllers
from l7proxy.tools.sandbox.eks_auth import TOKEN_PREFIX, EksTokenVerifier, TokenRejected
from l7proxy.tools.sandbox.exec import EXEC_SUBRESOURCES, ExecApi
from l7proxy.tools.sandbox.rbac import ACCESS_REVIEW_PATH, SandboxRbac
from l7proxy.tools.sandbox.seed import seed
from l7proxy.tools.sandbox.status import ApiError, method_not_allowed, path_not_found, unauthorized
from l7proxy.tools.sandbox.store import Store
from l7proxy.tools.sandbox.wire import encode, read_body, respond, wants_table
from l7proxy.wire.exchange import Exchange, RequestHead
from policy.model import Rule

# What kube's system:public-info-viewer lets anonymous callers read.
_HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
_PUBLIC_PATHS = _HEALTH_PATHS | {"/version"}
SEEN_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request as it reached the cluster, for tests to check what the gateway forwarded.

    The headers carry credentials: they are kept out of repr so they never reach a log."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...] = field(repr=False)
    user: str | None  # who the bearer token authenticated, None if it did not


class SandboxCluster:
    """Serves one request per `handle` call, over any HTTP version's `Exchange`.

    `tokens` maps bearer tokens to usernames; client certificates are not checked. With
    `eks_sts_endpoint`, `k8s-aws-v1.` tokens for `eks_cluster_name` are verified through
    that STS as EKS does (see `eks_auth`): the username is the caller's STS ARN."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, str],
        version: tuple[int, int] = (1, 32),
        clock: Callable[[], float] = time.time,
        rbac: Mapping[str, Sequence[Rule]] | None = None,
        eks_sts_endpoint: str | None = None,
        eks_cluster_name: str = "sandbox",
    ) -> None:
        self._tokens = dict(tokens)
        self.eks = (
            EksTokenVerifier(sts_endpoint=eks_sts_endpoint, cluster_name=eks_cluster_name)
            if eks_sts_endpoint
            else None
        )
        self.rbac = SandboxRbac(rbac)
        self._version = version
        self.store = Store(clock)
        self.store.on_change(Controllers(self.store, clock).react)
        self._api = ResourceApi(self.store, clock)
        self.exec = ExecApi(self.store, clock)
        self.seen: deque[SeenRequest] = deque(maxlen=SEEN_LIMIT)
        seed(self.store)

    async def handle(self, exchange: Exchange) -> None:
        head = exchange.head
        user = await self._user(head)
        self.seen.append(SeenRequest(head.method, head.target, head.headers, user))
        try:
            body = await read_body(exchange)
            if user is None and (head.header(b"authorization") or head.path not in _PUBLIC_PATHS):
                raise unauthorized()
            if head.path == ACCESS_REVIEW_PATH and head.method == "POST" and user is not None:
                await respond(exchange, 201, encode(self.rbac.access_review(user, body)))
                return
            await self._route(exchange, body)
        except ApiError as err:
            if exchange.response_started:  # too late for a Status: a bug, let it surface
                raise
            await respond(exchange, err.code, encode(err.status()))

    async def _user(self, head: RequestHead) -> str | None:
        scheme, _, token = (head.header(b"authorization") or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        if self.eks is not None and token.startswith(TOKEN_PREFIX):
            try:
                return await self.eks.username(token)
            except TokenRejected:
                return None  # as kube-apiserver: 401, the reason only in `eks.rejections`
        return self._tokens.get(token)

    async def _route(self, exchange: Exchange, body: bytes) -> None:
        head = exchange.head
        path = head.path.rstrip("/") or "/"
        segments = path.split("/")[1:]
        if segments[:2] == ["api", "v1"] and len(segments) > 2:
            target = parse_target("", "v1", segments[2:])
            if target.subresource in EXEC_SUBRESOURCES:
                await self.exec.serve(exchange, target)
                return
            await self._api.serve(exchange, target, body)
            return
        if segments[0] == "apis" and len(segments) > 3:
            target = parse_target(segments[1], segments[2], segments[3:])
            await self._api.serve(exchange, target, body)
            return
        doc = self._document(path)
        if doc is None and path not in _HEALTH_PATHS:
            raise path_not_found()
        if head.method != "GET":
            raise method_not_allowed()
        if doc is None:
            await respond(exchange, 200, b"ok", b"text/plain; charset=utf-8")
            return
        if path != "/version":
            wants_table(head.header(b"accept"), tables=False)  # 406 if JSON is not acceptable
        await respond(exchange, 200, encode(doc))

    def _document(self, path: str) -> dict[str, Any] | None:
        """The fixed JSON document served at `path`, if any."""
        segments = path.split("/")[1:]
        if path == "/version":
            major, minor = self._version
            return discovery.version_info(major, minor)
        if path == "/api":
            return discovery.api_versions()
        if path == "/api/v1":
            return discovery.api_resource_list("", "v1")
        if path == "/apis":
            return discovery.api_group_list()
        if segments[0] == "apis" and len(segments) == 2:
            return discovery.api_group(segments[1])
        if segments[0] == "apis" and len(segments) == 3:
            return discovery.api_resource_list(segments[1], segments[2])
        if path == "/openapi/v3":
            return openapi.root()
        if segments[:2] == ["openapi", "v3"]:
            return openapi.group_version_spec("/".join(segments[2:]))
        return None
