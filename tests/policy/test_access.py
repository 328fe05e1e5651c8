"""The access-request state machine and the lock rules: every transition, every refusal,
and a hypothesis state machine that drives random sequences of them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from policy.access import (
    PENDING_TTL,
    AccessRefused,
    AccessRequest,
    Grant,
    Lock,
    LockKind,
    RefusalKind,
    RequestState,
    Subjects,
    Verdict,
    active_grants,
    create_lock,
    create_request,
    format_duration,
    locks_matching,
    may_see,
    parse_duration,
    review_request,
    revoke_request,
)
from policy.identity import Identity

NOW = 1_800_000_000.0
ALICE = Identity("alice", ("sre",))
BOB = Identity("bob", ("sre-leads",))
CAROL = Identity("carol", ("sre-leads", "sre"))
MALLORY = Identity("mallory", ("dev",))
GRANT = Grant(
    "prod-write",
    "prod-admin",
    requesters=Subjects(groups=("sre",)),
    approvers=Subjects(groups=("sre-leads",), users=("alice",)),
    min_approvals=1,
    max_duration=4 * 3600,
)


def pending(grant: Grant = GRANT, duration: float = 1800) -> AccessRequest:
    return create_request(grant, ALICE, id="r1", reason="incident 42", duration=duration, now=NOW)


def test_a_request_starts_pending_for_an_hour() -> None:
    request = pending()
    assert request.state is RequestState.PENDING
    assert request.expires == NOW + PENDING_TTL
    assert (request.requester, request.grant, request.reviews) == ("alice", "prod-write", ())


def test_only_requesters_may_request() -> None:
    with pytest.raises(AccessRefused, match="not one of its requesters") as caught:
        create_request(GRANT, MALLORY, id="r", reason="x", duration=60, now=NOW)
    assert caught.value.kind is RefusalKind.FORBIDDEN


@pytest.mark.parametrize(("reason", "duration"), [("", 60), ("  ", 60), ("x", 0), ("x", -5)])
def test_a_request_needs_a_reason_and_a_positive_duration(reason: str, duration: float) -> None:
    with pytest.raises(AccessRefused) as caught:
        create_request(GRANT, ALICE, id="r", reason=reason, duration=duration, now=NOW)
    assert caught.value.kind is RefusalKind.INVALID


def test_max_duration_caps_the_grant() -> None:
    request = pending(duration=24 * 3600)
    approved = review_request(request, GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW + 10)
    assert approved.duration == GRANT.max_duration
    assert approved.expires == NOW + 10 + GRANT.max_duration


def test_an_approval_approves_and_the_grant_runs_from_then() -> None:
    approved = review_request(pending(), GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW + 60)
    assert approved.state is RequestState.APPROVED
    assert approved.expires == NOW + 60 + 1800
    assert [(r.reviewer, r.verdict) for r in approved.reviews] == [("bob", Verdict.APPROVE)]


def test_a_denial_decides_at_once() -> None:
    two = Grant("g", "p", GRANT.requesters, GRANT.approvers, min_approvals=2)
    denied = review_request(pending(two), two, BOB, Verdict.DENY, reason="no", now=NOW)
    assert denied.state is RequestState.DENIED


def test_min_approvals_counts_distinct_approvers() -> None:
    two = Grant("g", "p", GRANT.requesters, GRANT.approvers, min_approvals=2)
    once = review_request(pending(two), two, BOB, Verdict.APPROVE, reason="ok", now=NOW)
    assert once.state is RequestState.PENDING
    with pytest.raises(AccessRefused, match="already reviewed") as caught:
        review_request(once, two, BOB, Verdict.APPROVE, reason="again", now=NOW)
    assert caught.value.kind is RefusalKind.CONFLICT
    twice = review_request(once, two, CAROL, Verdict.APPROVE, reason="ok", now=NOW)
    assert twice.state is RequestState.APPROVED


def test_a_requester_never_approves_their_own_request() -> None:
    # alice is named an approver too: still not of her own request.
    with pytest.raises(AccessRefused, match="their own request") as caught:
        review_request(pending(), GRANT, ALICE, Verdict.APPROVE, reason="me", now=NOW)
    assert caught.value.kind is RefusalKind.FORBIDDEN


def test_only_approvers_review() -> None:
    with pytest.raises(AccessRefused, match="not one of its approvers"):
        review_request(pending(), GRANT, MALLORY, Verdict.APPROVE, reason="ok", now=NOW)


def test_a_review_needs_a_reason() -> None:
    with pytest.raises(AccessRefused, match="reason is required"):
        review_request(pending(), GRANT, BOB, Verdict.APPROVE, reason="", now=NOW)


def test_a_pending_request_expires_after_an_hour() -> None:
    request = pending()
    assert request.effective(NOW + PENDING_TTL - 1).state is RequestState.PENDING
    assert request.effective(NOW + PENDING_TTL).state is RequestState.EXPIRED
    with pytest.raises(AccessRefused, match="it is expired, not pending"):
        review_request(request, GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW + PENDING_TTL)


def test_an_approved_grant_expires_after_its_duration() -> None:
    approved = review_request(pending(), GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW)
    assert active_grants([approved], ALICE, NOW + 1799) == (approved,)
    assert active_grants([approved], ALICE, NOW + 1800) == ()
    assert approved.effective(NOW + 1800).state is RequestState.EXPIRED


@pytest.mark.parametrize("who", [ALICE, BOB])
def test_the_requester_or_an_approver_revokes(who: Identity) -> None:
    approved = review_request(pending(), GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW)
    revoked = revoke_request(approved, GRANT, who, is_admin=False, now=NOW + 5)
    assert (revoked.state, revoked.expires, revoked.revoked_by) == (
        RequestState.REVOKED,
        NOW + 5,
        who.username,
    )
    assert active_grants([revoked], ALICE, NOW + 6) == ()


def test_an_admin_revokes_and_others_may_not() -> None:
    approved = review_request(pending(), GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW)
    with pytest.raises(AccessRefused, match="nor an admin"):
        revoke_request(approved, GRANT, MALLORY, is_admin=False, now=NOW)
    assert revoke_request(approved, GRANT, MALLORY, is_admin=True, now=NOW).state is (
        RequestState.REVOKED
    )


@pytest.mark.parametrize("state", ["pending", "denied", "revoked", "expired"])
def test_only_an_approved_request_is_revoked(state: str) -> None:
    request = pending()
    if state == "denied":
        request = review_request(request, GRANT, BOB, Verdict.DENY, reason="no", now=NOW)
    elif state == "revoked":
        request = review_request(request, GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW)
        request = revoke_request(request, GRANT, BOB, is_admin=False, now=NOW)
    when = NOW + PENDING_TTL if state == "expired" else NOW
    with pytest.raises(AccessRefused, match=f"it is {state}, not approved") as caught:
        revoke_request(request, GRANT, ALICE, is_admin=True, now=when)
    assert caught.value.kind is RefusalKind.CONFLICT


@pytest.mark.parametrize("state", ["approved", "denied"])
def test_a_decided_request_takes_no_more_reviews(state: str) -> None:
    verdict = Verdict.APPROVE if state == "approved" else Verdict.DENY
    decided = review_request(pending(), GRANT, BOB, verdict, reason="x", now=NOW)
    with pytest.raises(AccessRefused, match=f"it is {state}, not pending"):
        review_request(decided, GRANT, CAROL, Verdict.APPROVE, reason="ok", now=NOW)


def test_active_grants_are_the_callers_own() -> None:
    approved = review_request(pending(), GRANT, BOB, Verdict.APPROVE, reason="ok", now=NOW)
    assert active_grants([approved, pending()], ALICE, NOW) == (approved,)
    assert active_grants([approved], Identity("alice2", ("sre",)), NOW) == ()


def test_requests_are_seen_by_their_requester_approvers_and_admins() -> None:
    request = pending()
    assert may_see(request, GRANT, ALICE, is_admin=False)
    assert may_see(request, GRANT, BOB, is_admin=False)
    assert may_see(request, GRANT, MALLORY, is_admin=True)
    assert not may_see(request, GRANT, MALLORY, is_admin=False)
    assert not may_see(request, None, BOB, is_admin=False)  # a grant since removed


# -- locks ----------------------------------------------------------------------------------
def lock(kind: LockKind, target: str, duration: float | None = None) -> Lock:
    return create_lock(
        kind, target, id="l", message="incident", by=BOB, is_admin=True, duration=duration, now=NOW
    )


@pytest.mark.parametrize(
    ("kind", "target", "who", "connection", "matches"),
    [
        (LockKind.USER, "alice", ALICE, "dev", True),
        (LockKind.USER, "alice", BOB, "dev", False),
        (LockKind.GROUP, "sre-leads", CAROL, "dev", True),
        (LockKind.GROUP, "sre-leads", ALICE, "dev", False),
        (LockKind.CONNECTION, "prod", ALICE, "prod", True),
        (LockKind.CONNECTION, "prod", ALICE, "dev", False),
    ],
)
def test_a_lock_matches_its_user_group_or_connection(
    kind: LockKind, target: str, who: Identity, connection: str, matches: bool
) -> None:
    assert bool(locks_matching([lock(kind, target)], who, connection, NOW)) is matches


def test_a_lock_with_a_duration_lapses() -> None:
    brief = lock(LockKind.USER, "alice", duration=60)
    assert locks_matching([brief], ALICE, "dev", NOW + 59) == (brief,)
    assert locks_matching([brief], ALICE, "dev", NOW + 60) == ()
    assert lock(LockKind.USER, "alice").active(NOW + 10**9)


def test_only_admins_place_locks() -> None:
    with pytest.raises(AccessRefused, match="not an admin") as caught:
        create_lock(
            LockKind.USER, "x", id="l", message="m", by=BOB, is_admin=False, duration=None, now=NOW
        )
    assert caught.value.kind is RefusalKind.FORBIDDEN


@pytest.mark.parametrize(
    ("target", "message", "duration"), [("", "m", None), ("x", " ", None), ("x", "m", 0.0)]
)
def test_a_lock_needs_a_target_a_message_and_a_positive_duration(
    target: str, message: str, duration: float | None
) -> None:
    with pytest.raises(AccessRefused) as caught:
        create_lock(
            LockKind.USER,
            target,
            id="l",
            message=message,
            by=BOB,
            is_admin=True,
            duration=duration,
            now=NOW,
        )
    assert caught.value.kind is RefusalKind.INVALID


# -- durations ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("4h", 14400), ("1h30m", 5400), ("90s", 90), ("2d", 172800)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "1.5h", "30m1h", "-1h", "1 h", "1hh"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**8))
def test_a_formatted_duration_parses_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.text(max_size=12))
def test_parse_duration_returns_seconds_or_value_error(text: str) -> None:
    try:
        assert parse_duration(text) >= 0
    except ValueError as exc:
        assert "is not a duration" in str(exc)


# -- the state machine, driven at random ----------------------------------------------------
PEOPLE = (ALICE, BOB, CAROL, MALLORY, Identity("dave", ("sre-leads",)))
ALLOWED = {
    RequestState.PENDING: {RequestState.APPROVED, RequestState.DENIED, RequestState.EXPIRED},
    RequestState.APPROVED: {RequestState.REVOKED, RequestState.EXPIRED},
}


class RequestMachine(RuleBasedStateMachine):
    """One request under random reviews, revokes and the passing of time; every step
    either refuses with `AccessRefused` or makes a transition the diagram allows."""

    def __init__(self) -> None:
        super().__init__()
        self.now = NOW
        self.grant: Grant | None = None
        self.request: AccessRequest | None = None
        self.approved_at: float | None = None

    @precondition(lambda self: self.request is None)
    @rule(
        min_approvals=st.integers(1, 3),
        max_duration=st.integers(60, 7200),
        duration=st.integers(1, 10_000),
    )
    def create(self, min_approvals: int, max_duration: int, duration: int) -> None:
        self.grant = Grant(
            "g", "p", GRANT.requesters, GRANT.approvers, min_approvals, float(max_duration)
        )
        self.request = create_request(
            self.grant, ALICE, id="r", reason="why", duration=duration, now=self.now
        )

    @precondition(lambda self: self.request is not None)
    @rule(who=st.sampled_from(PEOPLE), verdict=st.sampled_from(Verdict))
    def review(self, who: Identity, verdict: Verdict) -> None:
        grant = self.grant
        assert grant is not None
        self._step(lambda r: review_request(r, grant, who, verdict, reason="x", now=self.now))

    @precondition(lambda self: self.request is not None)
    @rule(who=st.sampled_from(PEOPLE), is_admin=st.booleans())
    def revoke(self, who: Identity, is_admin: bool) -> None:
        self._step(lambda r: revoke_request(r, self.grant, who, is_admin=is_admin, now=self.now))

    @rule(seconds=st.integers(0, 5000))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    def _step(self, transition: Callable[[AccessRequest], AccessRequest]) -> None:
        assert self.request is not None
        before = self.request.effective(self.now).state
        try:
            after = transition(self.request)
        except AccessRefused:
            return
        if after.state is not before:
            assert after.state in ALLOWED.get(before, set()), (before, after.state)
            if after.state is RequestState.APPROVED:
                self.approved_at = self.now
        self.request = after

    @invariant()
    def approvals_come_from_distinct_approvers_never_the_requester(self) -> None:
        if self.request is None or self.grant is None:
            return
        reviewers = [r.reviewer for r in self.request.reviews]
        assert len(reviewers) == len(set(reviewers))
        assert self.request.requester not in reviewers
        approvals = sum(1 for r in self.request.reviews if r.verdict is Verdict.APPROVE)
        if self.request.state is RequestState.APPROVED:
            assert approvals >= self.grant.min_approvals
        if self.request.state is RequestState.PENDING:
            assert approvals < self.grant.min_approvals

    @invariant()
    def a_grant_is_active_only_while_approved_and_within_max_duration(self) -> None:
        if self.request is None or self.grant is None:
            return
        active = active_grants([self.request], ALICE, self.now)
        assert bool(active) is (self.request.effective(self.now).state is RequestState.APPROVED)
        if active:
            assert self.approved_at is not None
            assert self.now - self.approved_at < self.grant.max_duration


TestRequestMachine = RequestMachine.TestCase
