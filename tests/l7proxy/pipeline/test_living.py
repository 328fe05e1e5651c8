"""Living access before authorization: locks fail closed when the store is not vouched for."""

from __future__ import annotations

import pytest

from l7proxy.pipeline.errors import Fault, GatewayRefusal
from l7proxy.pipeline.living import with_access
from l7proxy.state.view import StateView
from policy.identity import Identity


async def test_a_view_that_has_not_heard_from_the_store_refuses_with_503() -> None:
    view = StateView(store=None)  # type: ignore[arg-type]  # never polled: no store needed
    with pytest.raises(GatewayRefusal) as refusal:
        with_access(None, view, Identity(username="a", groups=()), "dev")  # type: ignore[arg-type]
    assert refusal.value.fault is Fault.STATE_UNAVAILABLE
    assert "cannot check locks" in str(refusal.value)


def test_without_a_state_store_the_configuration_decides_alone() -> None:
    live = object()
    assert with_access(live, None, Identity(username="a", groups=()), "dev") is live  # type: ignore[arg-type]
