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
from policy.grants import GrantedPolicies


@dataclass(frozen=True, slots=True)
class Live:
    authenticator: Authenticator
    policies: PolicySet
    connectors: Mapping[str, Connector]
    limits: Limits
    routing: Routing
    grants: GrantedPolicies  # `policies` plus what approved access requests add
    recordings_dir: Path | None = None
