"""Request and response plumbing over `Exchange`: bounded bodies, JSON, content negotiation."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import yaml

from l7proxy.tools.sandbox.status import bad_request, not_acceptable, too_large
from l7proxy.wire.exchange import Exchange

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a request body
JSON = b"application/json"
TABLE = b"application/json;as=Table;v=v1;g=meta.k8s.io"
APPLY = "application/apply-patch+yaml"  # server-side apply: YAML, which JSON is a subset of


async def read_body(exchange: Exchange, limit: int = MAX_BODY) -> bytes:
    """The whole request body; past `limit` it stops reading and fails with 413."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await exchange.receive():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad_request(f"the body of the request is not valid JSON: {err}") from err


def parse_apply(body: bytes) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as err:
        raise bad_request(f"the body of the request is not valid YAML: {err}") from err


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def respond(exchange: Exchange, status: int, body: bytes, content_type: bytes = JSON) -> None:
    await exchange.start_response(
        status, [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    )
    await exchange.send(body)
    await exchange.finish()


def query_params(query: str) -> dict[str, str]:
    """The first value of each query parameter."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, value)
    return params


def wants_table(accept: bytes | None, *, tables: bool) -> bool:
    """Whether to answer with a Table (True) or plain JSON (False), taking the first media
    range we can serve. Protobuf and other `as=` forms (aggregated discovery, partial
    metadata) are skipped so the JSON range after them is chosen, as kube would."""
    if not accept:
        return False
    for media_range in accept.decode("latin-1").split(","):
        kind, *raw = (p.strip() for p in media_range.split(";"))
        params = dict(p.partition("=")[::2] for p in raw)
        params.pop("q", None)
        if kind not in ("application/json", "application/*", "*/*"):
            continue
        if "as" not in params:
            return False
        if tables and params["as"] == "Table" and params.get("g") == "meta.k8s.io":
            return True
    raise not_acceptable()
