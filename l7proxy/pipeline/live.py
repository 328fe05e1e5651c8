"""The configuration a request is served under, as one immutable snapshot.

A reload builds a new `Live` and swaps it into the gateway in one assignment; each request
takes the snapshot once, at its start, so it never sees half of two configurations, and a
stream opened before a reload goes on under the one it was authorized with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from l7proxy.config.settings import Limits, Routing
from l7proxy.identity.oidc.authenticator import Authenticator
from l7proxy.upstream.credential import Connector
from policy.engine import PolicySet


@dataclass(frozen=True, slots=True)
class Live:
    authenticator: Authenticator
    policies: PolicySet
    connectors: Mapping[str, Connector]
    limits: Limits
    routing: Routing
    recordings_dir: Path | None = None
