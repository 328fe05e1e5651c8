"""The port through which the request path hands `/mcp/<connection>` to the MCP layer.

The MCP endpoint sits above the pipeline (it makes its Kubernetes requests through
`Gateway.handle`), so the pipeline knows it only by this protocol; the runtime plugs it in.
"""

from __future__ import annotations

from typing import Protocol

from l7proxy.identity.oidc.authenticator import Authenticated
from l7proxy.telemetry.audit import AuditEvent
from l7proxy.wire.exchange import Exchange


class AgentEndpoint(Protocol):
    def challenge(self, exchange: Exchange, connection: str) -> tuple[tuple[bytes, bytes], ...]:
        """The `WWW-Authenticate` header a 401 from the endpoint carries (RFC 9728 §5.1)."""
        ...

    async def metadata(self, exchange: Exchange, connection: str, event: AuditEvent) -> None:
        """Answer the endpoint's OAuth protected resource metadata (RFC 9728 §3)."""
        ...

    async def serve(
        self, exchange: Exchange, connection: str, auth: Authenticated, event: AuditEvent
    ) -> None:
        """Answer one authenticated HTTP request to the endpoint."""
        ...
