"""The few HTTP calls sign-in makes: discovery GET, form-encoded POSTs to the token endpoints.

Synchronous stdlib `urllib`: the plugin is a short-lived process run by kubectl, one request at a
time, so an event loop would only add start-up cost. Every answer is size- and time-limited,
and no message built here ever contains a request body (which may carry a secret or a code).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from l7proxy import __version__

MAX_BYTES = 1 << 20
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class LoginError(Exception):
    """Sign-in cannot go on; the message is one line for the user and never holds a secret."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer: its HTTP status and the object (OAuth errors come back as 4xx JSON)."""

    status: int
    doc: dict[str, object]


def check_url(url: str, what: str) -> str:
    """https only, except plain http on loopback (a developer's own issuer)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise LoginError(f"{what} is not a valid URL: {url!r}") from None
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise LoginError(f"{what} must be an https URL: {url!r}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A token endpoint that redirects is misconfigured; following it could leak the form."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


class Http:
    """HTTPS with the given trust (the system's, or `--ca-file`) and a per-request timeout."""

    def __init__(self, ssl_context: ssl.SSLContext, *, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ssl_context), _NoRedirects()
        )

    def get_json(self, url: str) -> dict[str, object]:
        answer = self._send(urllib.request.Request(url, headers=self._headers()))
        if answer.status != 200:
            raise LoginError(f"{url} answered HTTP {answer.status}")
        return answer.doc

    def post_form(
        self, url: str, fields: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> Answer:
        """POST `application/x-www-form-urlencoded` (RFC 6749 §3.2); any JSON answer returns."""
        request = urllib.request.Request(
            url,
            data=urlencode(fields).encode("ascii"),
            headers={
                **self._headers(),
                "Content-Type": "application/x-www-form-urlencoded",
                **(headers or {}),
            },
            method="POST",
        )
        return self._send(request)

    def send_json(
        self,
        method: str,
        url: str,
        document: Mapping[str, object] | None,
        headers: Mapping[str, str],
    ) -> Answer:
        """Any method, with an optional JSON body; any JSON answer returns (the gateway's
        own API answers its errors as `Status` objects)."""
        data = None if document is None else json.dumps(document).encode()
        kind = {} if data is None else {"Content-Type": "application/json"}
        request = urllib.request.Request(
            url, data=data, headers={**self._headers(), **kind, **headers}, method=method
        )
        return self._send(request)

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": f"l7proxy-login/{__version__}"}

    def _send(self, request: urllib.request.Request) -> Answer:
        url = request.full_url
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return Answer(response.status, _json_object(url, response.read(MAX_BYTES + 1)))
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read(MAX_BYTES + 1)
            try:
                return Answer(exc.code, _json_object(url, body))
            except LoginError:
                raise LoginError(f"{url} answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise LoginError(f"cannot reach {url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
            raise LoginError(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _json_object(url: str, body: bytes) -> dict[str, object]:
    if len(body) > MAX_BYTES:
        raise LoginError(f"{url} answered more than {MAX_BYTES} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise LoginError(f"{url} did not answer with JSON") from None
    if not isinstance(doc, dict):
        raise LoginError(f"{url} did not answer with a JSON object")
    return doc


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust store, or only `ca_file` when given."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise LoginError(f"cannot read CA file {ca_file}: {exc}") from None
