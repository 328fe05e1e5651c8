from __future__ import annotations

import json

import pytest

from l7proxy.pipeline import redaction
from l7proxy.pipeline.errors import Fault, GatewayRefusal
from l7proxy.pipeline.internal import InternalExchange
from l7proxy.pipeline.redaction import RedactingExchange, redacted_request_headers, redaction_for
from l7proxy.wire.exchange import ClientDisconnected, RequestHead
from policy.engine import PolicySet
from policy.identity import Identity
from policy.model import Policy, Rule
from protocols.attributes import resolve
from protocols.secret_redaction import REDACTED

READ = Rule(verbs=("get", "list", "watch"), api_groups=("*",), resources=("*",))
RITA = Identity(username="rita", groups=("readers",))
POLICIES = PolicySet(
    [
        Policy(
            name="readers",
            connection="dev",
            groups=("readers",),
            allow=(READ,),
            redact_secrets=True,
        )
    ]
)


def _redacted(method: str, path: str, query: str = "", who: Identity = RITA) -> bool:
    attributes = resolve(method, path, query)
    decision = POLICIES.decide(who, "dev", attributes)
    return redaction_for(attributes, decision, POLICIES, who, "dev")


def test_only_reads_of_secrets_by_a_redacted_caller_are_rewritten() -> None:
    assert _redacted("GET", "/api/v1/namespaces/a/secrets/s")
    assert _redacted("GET", "/api/v1/secrets")
    assert _redacted("GET", "/api/v1/namespaces/a/secrets", "watch=true")
    assert not _redacted("GET", "/api/v1/namespaces/a/configmaps/c")
    assert not _redacted("DELETE", "/api/v1/namespaces/a/secrets/s")
    assert not _redacted("GET", "/api/v1/secrets", who=Identity(username="x", groups=("other",)))


def _exchange() -> InternalExchange:
    return InternalExchange(
        "GET", "/k8s/dev/api/v1/secrets", [(b"accept", b"*/*")], max_response_bytes=1 << 20
    )


def test_the_upstream_headers_ask_for_json_without_compression() -> None:
    head = RequestHead("GET", "/x", ((b"accept", b"*/*"),), "1.1")
    headers = redacted_request_headers(head, [(b"accept", b"*/*"), (b"accept-encoding", b"gzip")])
    assert headers == [(b"accept", b"application/json")]


def test_a_protobuf_only_client_is_refused_with_406() -> None:
    head = RequestHead("GET", "/x", ((b"accept", b"application/vnd.kubernetes.protobuf"),), "1.1")
    with pytest.raises(GatewayRefusal) as caught:
        redacted_request_headers(head, [])
    assert caught.value.fault is Fault.NOT_ACCEPTABLE


async def test_a_whole_answer_is_held_and_sent_redacted_with_its_new_length() -> None:
    inner = _exchange()
    wrapped = RedactingExchange(inner, watch=False)
    body = json.dumps({"kind": "Secret", "data": {"k": "c2VjcmV0"}}).encode()
    await wrapped.start_response(200, [(b"content-length", str(len(body)).encode())])
    assert not inner.response_started  # held, so a failure can still be refused
    await wrapped.send(body[:10])
    await wrapped.send(body[10:])
    await wrapped.finish()
    assert json.loads(inner.body)["data"] == {"k": REDACTED}
    assert inner.header(b"content-length") == str(len(inner.body))


async def test_a_watch_streams_each_event_redacted_as_it_completes() -> None:
    inner = _exchange()
    wrapped = RedactingExchange(inner, watch=True)
    await wrapped.start_response(200, [])
    assert inner.response_started
    event = json.dumps({"type": "ADDED", "object": {"data": {"k": "dg=="}}}).encode()
    await wrapped.send(event)
    assert inner.body == b""  # not whole yet
    await wrapped.send(b"\n")
    assert json.loads(inner.body)["object"]["data"] == {"k": REDACTED}


async def test_an_answer_too_large_to_redact_is_refused_before_its_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redaction, "MAX_BODY_BYTES", 8)
    inner = _exchange()
    wrapped = RedactingExchange(inner, watch=False)
    await wrapped.start_response(200, [])
    with pytest.raises(GatewayRefusal) as caught:
        await wrapped.send(b'{"kind": "SecretList"}')
    assert caught.value.fault is Fault.UNREDACTABLE and not inner.response_started


async def test_an_internal_exchange_keeps_its_bound_and_says_it_cut() -> None:
    exchange = InternalExchange("GET", "/x", [], max_response_bytes=4)
    await exchange.send(b"abc")
    with pytest.raises(ClientDisconnected):
        await exchange.send(b"def")
    assert (bytes(exchange.body), exchange.truncated) == (b"abcd", True)
