"""A connection's way into its cluster: the connector for its `type`."""

from __future__ import annotations

from typing import assert_never

import trio

from l7proxy.config.settings import Connection, EksConnection, Limits, StaticConnection
from l7proxy.upstream.credential import Connector, CredentialMetrics
from l7proxy.upstream.static import StaticConnector


def build_connector(
    conn: Connection,
    limits: Limits,
    nursery: trio.Nursery,
    metrics: CredentialMetrics | None = None,
) -> Connector:
    if isinstance(conn, StaticConnection):
        return StaticConnector(conn, limits, nursery)
    if isinstance(conn, EksConnection):
        # Imported here: it keeps aiobotocore out of gateways that have no EKS connection.
        from l7proxy.upstream.eks.connector import EksConnector

        return EksConnector(conn, limits, nursery, metrics=metrics)
    assert_never(conn)
