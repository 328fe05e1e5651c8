"""The stored form of requests and locks round-trips; a foreign row is a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l7proxy.state.codec import (
    decode_lock,
    decode_request,
    encode_lock,
    encode_request,
    lock_document,
    request_document,
)
from l7proxy.state.errors import CorruptRecord, StoreError
from policy.access import AccessRequest, Lock, LockKind, RequestState, Review, Verdict

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
reviews = st.builds(Review, st.text(), st.sampled_from(Verdict), st.text(), times)
requests = st.builds(
    AccessRequest,
    id=st.text(),
    grant=st.text(),
    requester=st.text(),
    reason=st.text(),
    duration=times,
    state=st.sampled_from(RequestState),
    created=times,
    expires=times,
    reviews=st.lists(reviews, max_size=3).map(tuple),
    revoked_by=st.text(),
)
locks = st.builds(
    Lock,
    id=st.text(),
    kind=st.sampled_from(LockKind),
    target=st.text(),
    message=st.text(),
    created_by=st.text(),
    created=times,
    expires=st.none() | times,
)


@given(requests)
def test_a_request_round_trips(request: AccessRequest) -> None:
    assert decode_request(encode_request(request)) == request


@given(locks)
def test_a_lock_round_trips(lock: Lock) -> None:
    assert decode_lock(encode_lock(lock)) == lock


@pytest.mark.parametrize("text", ["", "[]", '{"id": "x"}', '{"state": "nope"}'])
def test_a_row_that_does_not_decode_is_a_store_error(text: str) -> None:
    with pytest.raises(CorruptRecord, match="does not decode") as caught:
        decode_request(text)
    assert isinstance(caught.value, StoreError)
    with pytest.raises(CorruptRecord):
        decode_lock(text)


def test_the_request_document_has_the_contract_fields_in_its_state_at_now() -> None:
    request = AccessRequest(
        "r1",
        "prod-write",
        "alice",
        "why",
        5400.0,
        RequestState.PENDING,
        0.0,
        3600.0,
        (Review("bob", Verdict.APPROVE, "ok", 60.0),),
    )
    assert request_document(request, 3600.0) == {
        "id": "r1",
        "grant": "prod-write",
        "requester": "alice",
        "reason": "why",
        "duration": "1h30m",
        "state": "expired",
        "reviews": [
            {"reviewer": "bob", "decision": "approve", "reason": "ok", "at": "1970-01-01T00:01:00Z"}
        ],
        "created": "1970-01-01T00:00:00Z",
        "expires": "1970-01-01T01:00:00Z",
    }


def test_the_lock_document_names_its_target_by_kind() -> None:
    lock = Lock("l1", LockKind.GROUP, "sre", "incident", "root", 0.0, None)
    assert lock_document(lock) == {
        "id": "l1",
        "group": "sre",
        "message": "incident",
        "created_by": "root",
        "created": "1970-01-01T00:00:00Z",
        "expires": None,
    }
