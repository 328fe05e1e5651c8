"""`l7proxy request …` and `l7proxy lock …`: the gateway's `/l7proxy/v1/` API from the
command line, as the caller whose token it sends.

The token comes from `--token-file`, else `$L7PROXY_TOKEN`, else a sign-in with the
`l7proxy login` options (`--issuer`, `--client-id`, … with the OAuth grant as
`--login-grant`). Errors are the gateway's `Status` message on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from l7proxy.identity.login.command import add_grant_arguments, grant_options, obtain
from l7proxy.identity.login.http import Http, LoginError, check_url, ssl_context

API = "/l7proxy/v1"
STATES = ("pending", "approved", "denied", "expired", "revoked")
# `request create --wait`: how often the request is read again while pending.
WAIT_POLL = 1.0


class CommandError(Exception):
    """One line for stderr; never holds the token."""


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = _leaf(actions, "create", "ask for an access request's grant")
    create.add_argument("--grant", dest="grant_name", required=True, metavar="NAME")
    create.add_argument("--reason", required=True, metavar="TEXT")
    create.add_argument("--duration", required=True, metavar="D", help="e.g. 30m, 4h, 1h30m")
    create.add_argument("--wait", action="store_true", help="block until it is decided")
    listing = _leaf(actions, "list", "list the requests you may see")
    listing.add_argument("--state", choices=STATES)
    _leaf(actions, "show", "show one request").add_argument("id", metavar="ID")
    for verdict in ("approve", "deny"):
        review = _leaf(actions, verdict, f"{verdict} a pending request")
        review.add_argument("id", metavar="ID")
        review.add_argument("--reason", required=True, metavar="TEXT")
    revoke = _leaf(actions, "revoke", "end an approved grant now")
    revoke.add_argument("id", metavar="ID")
    revoke.add_argument("--reason", default="", metavar="TEXT")


def add_lock_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = _leaf(actions, "create", "refuse a user, a group or a connection everything")
    target = create.add_mutually_exclusive_group(required=True)
    for kind in ("user", "group", "connection"):
        target.add_argument(f"--{kind}", metavar=kind[0].upper())
    create.add_argument("--duration", metavar="D", help="e.g. 30m; default: until deleted")
    create.add_argument("--message", required=True, metavar="TEXT")
    _leaf(actions, "list", "list the locks in force")
    _leaf(actions, "delete", "lift a lock").add_argument("id", metavar="ID")


def _leaf(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    """A subcommand with the options every call takes: where, whose token, what output."""
    parser = actions.add_parser(name, help=help)
    parser.add_argument("--gateway", required=True, metavar="URL", help="e.g. https://gw:8443")
    parser.add_argument("--ca-file", type=Path, metavar="FILE", help="CA for the gateway's TLS")
    parser.add_argument("--token-file", type=Path, metavar="FILE")
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
    parser.add_argument("--issuer", help="sign in with this OpenID issuer (`l7proxy login`)")
    parser.add_argument("--client-id")
    add_grant_arguments(parser, issuer_ca_flag="--issuer-ca-file", grant_flag="--login-grant")
    return parser


def run_request(args: argparse.Namespace) -> int:
    return _run(args, _request_call)


def run_lock(args: argparse.Namespace) -> int:
    return _run(args, _lock_call)


Call = tuple[str, str, Mapping[str, object] | None]


def _request_call(args: argparse.Namespace) -> Call:
    base = f"{API}/access-requests"
    match args.action:
        case "create":
            body = {"grant": args.grant_name, "reason": args.reason, "duration": args.duration}
            return "POST", base, body
        case "list":
            return (
                "GET",
                base + (f"?{urlencode({'state': args.state})}" if args.state else ""),
                None,
            )
        case "show":
            return "GET", f"{base}/{quote(args.id, safe='')}", None
        case _:  # approve, deny, revoke
            return (
                "POST",
                f"{base}/{quote(args.id, safe='')}/{args.action}",
                {"reason": args.reason},
            )


def _lock_call(args: argparse.Namespace) -> Call:
    base = f"{API}/locks"
    match args.action:
        case "create":
            body: dict[str, object] = {"message": args.message}
            for kind in ("user", "group", "connection"):
                if getattr(args, kind) is not None:
                    body[kind] = getattr(args, kind)
            if args.duration is not None:
                body["duration"] = args.duration
            return "POST", base, body
        case "list":
            return "GET", base, None
        case _:  # delete
            return "DELETE", f"{base}/{quote(args.id, safe='')}", None


def _run(args: argparse.Namespace, call: Callable[[argparse.Namespace], Call]) -> int:
    try:
        client = _Client(args)
        method, path, body = call(args)
        document = client.send(method, path, body)
        if args.action == "create" and getattr(args, "wait", False):
            document = _wait(client, document)
        print(_render(args, document))
    except (CommandError, LoginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    decided = document.get("state")
    return 1 if getattr(args, "wait", False) and decided != "approved" else 0


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self._base = check_url(args.gateway.rstrip("/"), "--gateway")
        self._http = Http(ssl_context(str(args.ca_file) if args.ca_file else None))
        self._token = _token(args)

    def send(self, method: str, path: str, body: Mapping[str, object] | None) -> dict[str, object]:
        answer = self._http.send_json(
            method, self._base + path, body, {"Authorization": f"Bearer {self._token}"}
        )
        if answer.status >= 400:
            reason = answer.doc.get("reason", f"HTTP {answer.status}")
            raise CommandError(f"Error from server ({reason}): {answer.doc.get('message', '')}")
        return answer.doc


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        try:
            token: str = args.token_file.read_text().strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read --token-file {args.token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise CommandError(f"--token-file {args.token_file} is empty")
        return token
    if os.environ.get("L7PROXY_TOKEN", "").strip():
        return os.environ["L7PROXY_TOKEN"].strip()
    if args.issuer and args.client_id:
        return obtain(grant_options(args)).token
    raise CommandError(
        "no token: give --token-file FILE, set $L7PROXY_TOKEN, or sign in with "
        "--issuer URL --client-id ID (the `l7proxy login` options)"
    )


def _wait(client: _Client, document: dict[str, object]) -> dict[str, object]:
    """Read the request again until it is no longer pending (it expires within the hour)."""
    path = f"{API}/access-requests/{quote(str(document['id']), safe='')}"
    print(f"waiting for request {document['id']} to be decided…", file=sys.stderr)
    while document.get("state") == "pending":
        time.sleep(WAIT_POLL)
        document = client.send("GET", path, None)
    return document


def _render(args: argparse.Namespace, document: Mapping[str, object]) -> str:
    if args.output == "json":
        return json.dumps(document, indent=2)
    items = document.get("items")
    if isinstance(items, list):
        lines = [_line(item) for item in items]
        return "\n".join(lines) if lines else "none"
    if args.action == "show":
        return _details(document)
    return _line(document)


def _line(item: Mapping[str, object]) -> str:
    """One request or lock on one line, tab-separated."""
    if "grant" in item:  # an access request
        fields = ("id", "grant", "requester", "state", "duration", "expires", "reason")
    else:
        kind = next(k for k in ("user", "group", "connection") if k in item)
        until = item["expires"] or "until deleted"
        return "\t".join(
            str(v) for v in (item["id"], f"{kind}={item[kind]}", until, item["message"])
        )
    return "\t".join(str(item.get(field, "")) for field in fields)


def _details(request: Mapping[str, object]) -> str:
    keys = ("id", "grant", "requester", "state", "reason", "duration", "created", "expires")
    lines = [f"{key}: {request.get(key, '')}" for key in keys]
    reviews = request.get("reviews")
    for review in reviews if isinstance(reviews, Sequence) else ():
        if isinstance(review, Mapping):
            lines.append(
                f"review: {review.get('decision')} by {review.get('reviewer')} "
                f"at {review.get('at')}: {review.get('reason')}"
            )
    return "\n".join(lines)
