"""The value types the configuration schema is made of, each with the message it fails with.

A failure is a `PydanticCustomError` of type `l7proxy` whose context says what went wrong
and where, relative to the value being checked: `at` (extra key path), `line` (which node's
line: the value's, its key's, or the parent mapping's) and `first` (another key path whose
line the message names). The loader turns that into `file:line: key: why`. `{got}` in a
message is the offending value as the file spells it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, WrapValidator
from pydantic_core import PydanticCustomError

from policy.access import parse_duration

Line = Literal["value", "key", "parent"]
Loc = tuple[str | int, ...]


def fail(message: str, *, at: Loc = (), line: Line = "value", first: Loc = ()) -> Exception:
    return PydanticCustomError(
        "l7proxy", "{message}", {"message": message, "at": at, "line": line, "first": first}
    )


def got(expected: str) -> Exception:
    return fail(f"expected {expected}, got {{got}}")


def _expect(expected: str) -> WrapValidator:
    """Any failure of the inner type reads `expected <what>, got <value>`."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValueError:  # pydantic's ValidationError is one
            raise got(expected) from None

    return WrapValidator(validate)


def _sequence(what: str, *, nonempty: bool) -> BeforeValidator:
    def validate(value: Any) -> Any:
        if not isinstance(value, tuple):
            raise got(what)
        if nonempty and not value:
            raise fail(f"expected a non-empty {what.removeprefix('a ')}")
        return value

    return BeforeValidator(validate)


def matching(pattern: str, what: str, flags: int = 0) -> AfterValidator:
    compiled = re.compile(pattern, flags)

    def validate(value: str) -> str:
        if not compiled.fullmatch(value):
            raise fail(f"expected {what}, got {value!r}")
        return value

    return AfterValidator(validate)


def _url(*schemes: str) -> AfterValidator:
    expected = " or ".join(f"{scheme}://" for scheme in schemes)

    def validate(url: str) -> str:
        if not _is_url(url, schemes):
            raise fail(f"expected an {expected} URL, got {url!r}")
        return url

    return AfterValidator(validate)


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number, or out of range
        return False
    return (
        parts.scheme in schemes
        and bool(parts.hostname)
        and port_ok
        and not parts.query
        and not parts.fragment
        and parts.username is None
        and not any(char.isspace() for char in url)
    )


def _resolve(value: str, info: ValidationInfo) -> str:
    """Absolute, against the configuration file's directory, and without `..`."""
    base: Path = (info.context or {})["base"]
    return os.path.normpath(base / value)


def _readable_file(value: str, info: ValidationInfo) -> str:
    """A file the gateway reads at startup: checked now so that it fails here, located."""
    path = _resolve(value, info)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise fail(f"file not found: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise fail(f"cannot use {path}: {exc}") from None
    if not stat.S_ISREG(mode):
        raise fail(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise fail(f"file not readable: {path}")
    return path


def _stdout_or_path(value: str, info: ValidationInfo) -> str:
    return value if value == "stdout" else _resolve(value, info)


def _base64(value: str) -> str:
    """Whitespace is dropped: a long value is often wrapped over several lines."""
    data = "".join(value.split())
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise fail("expected base64 data (a PEM CA bundle, base64-encoded)") from None
    return data


def unique(what: str, attribute: str) -> AfterValidator:
    """Items of a list whose `attribute` must differ (names, issuers)."""

    def validate(items: tuple[Any, ...]) -> tuple[Any, ...]:
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            value = getattr(item, attribute)
            if value in seen:
                raise fail(
                    f"duplicate {what} {value!r}",
                    at=(index, attribute),
                    first=(seen[value], attribute),
                )
            seen[value] = index
        return items

    return AfterValidator(validate)


def split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*"
)


def ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise fail(f'expected "host:port" (IPv6 as "[::1]:8443"), got {text!r}')
    if host.startswith("[") and host.endswith("]"):
        if not isinstance(ip(host[1:-1]), ipaddress.IPv6Address):
            raise fail(f"expected an IPv6 address in brackets, got {text!r}")
    elif ":" in host:
        raise fail(f'an IPv6 address needs brackets, as in "[::1]:8443"; got {text!r}')
    elif ip(host) is None and not _HOSTNAME.fullmatch(host):
        raise fail(f"expected a host name or IP address before the port, got {text!r}")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise fail(f"expected a port number 0-65535 after the host, got {text!r}")
    return text


def _extra_keys(claims: dict[str, str]) -> dict[str, str]:
    """Keys as kube-apiserver checks its extra mappings (lowercase domain-prefixed paths)."""
    for name in claims:
        if not _EXTRA_KEY.fullmatch(name):
            raise fail(
                "expected an extra key that is a lowercase domain-prefixed path, "
                f"e.g. example.com/tenant, got {name!r}",
                at=(name,),
                line="key",
            )
        domain = name.partition("/")[0]
        if any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io")):
            raise fail(
                f"the domain {domain!r} is reserved for Kubernetes; use your own domain",
                at=(name,),
                line="key",
            )
    return claims


_EXTRA_KEY = re.compile(
    r"(?=[^/]{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[a-z0-9/\-._~%!$&'()*+,;=:]+"
)

# Asymmetric algorithms only: a token signed with a shared secret could have been minted by
# anyone holding that secret, and `none` is not a signature at all.
SIGNING_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


def _signing_algs(algs: tuple[str, ...]) -> tuple[str, ...]:
    expected = f"expected some of: {', '.join(SIGNING_ALGS)}"
    for index, alg in enumerate(algs):
        if alg.upper() in ("NONE", "HS256", "HS384", "HS512"):
            raise fail(
                f"{alg!r} is never accepted: `none` and HMAC (HS256, HS384, HS512) tokens "
                f"are refused ({expected})",
                at=(index,),
            )
        if alg not in SIGNING_ALGS:
            raise fail(f"unknown algorithm {alg!r} ({expected})", at=(index,))
    return algs


def _urls(urls: tuple[str, ...]) -> tuple[str, ...]:
    """As RBAC has them: a path, with `*` only as a final suffix."""
    for index, url in enumerate(urls):
        if not (url.startswith("/") or url == "*") or "*" in url[:-1]:
            raise fail(
                f"expected a path starting with '/', '*' only at its end, got {url!r}", at=(index,)
            )
    return urls


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError:
        raise fail(f"expected a duration like 30m, 4h or 1h30m, got {text!r}") from None
    return text


def _postgres_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        # Not echoed: the URL may carry a password.
        raise fail("expected a postgresql:// URL (libpq's form)")
    return url


def _some_roles(roles: dict[str, str]) -> dict[str, str]:
    if not roles:
        raise fail("expected at least one role: key -> IAM role ARN")
    return roles


T = TypeVar("T")
ListOf = Annotated[tuple[T, ...], _sequence("a list", nonempty=False)]
SomeOf = Annotated[tuple[T, ...], Field(min_length=1), _sequence("a list", nonempty=True)]
AnyText = str
Text = Annotated[str, Field(min_length=1)]
Texts = Annotated[tuple[str, ...], _sequence("a list of strings", nonempty=False)]
SomeTexts = Annotated[
    tuple[str, ...], Field(min_length=1), _sequence("a list of strings", nonempty=True)
]
Flag = bool
PositiveInt = Annotated[int, Field(ge=1), _expect("an integer >= 1")]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False), _expect("a number > 0")]
Bound = Annotated[float, Field(ge=0, allow_inf_nan=False), _expect("a number >= 0 (0: no bound)")]
SessionSeconds = Annotated[
    int,
    Field(ge=900, le=43200),  # AssumeRole's DurationSeconds: 15 minutes to 12 hours
    _expect("whole seconds from 900 to 43200 (15 minutes to 12 hours)"),
]
HttpsUrl = Annotated[Text, _url("https")]
HttpUrl = Annotated[Text, _url("https", "http")]  # a local STS stand-in may well be plain HTTP
File = Annotated[Text, AfterValidator(_readable_file)]
RelativePath = Annotated[Text, AfterValidator(_resolve)]
Sink = Annotated[Text, AfterValidator(_stdout_or_path)]
Address = Annotated[Text, AfterValidator(_address)]
Base64 = Annotated[Text, AfterValidator(_base64)]
ConnectionName = Annotated[
    Text,
    matching(
        r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        "a DNS label (lowercase letters, digits and '-', at most 63, starting and ending with"
        " a letter or digit: it appears in /k8s/<name>/)",
    ),
]
HostSuffix = Annotated[
    Text,
    matching(
        r"(?=.{2,253}\Z)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+",
        'a lowercase DNS suffix starting with ".", e.g. ".k8s.example.com"',
    ),
]
Claims = dict[str, AnyText]
ExtraClaims = Annotated[dict[str, Text], AfterValidator(_extra_keys)]
SigningAlgs = Annotated[SomeTexts, AfterValidator(_signing_algs)]
NonResourceUrls = Annotated[SomeTexts, AfterValidator(_urls)]
RoleArn = Annotated[
    Text,
    matching(
        r"arn:aws[-a-z]*:iam::[0-9]{12}:role/[-\w+=,.@/]+",
        "an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
        re.ASCII,
    ),
]
Duration = Annotated[Text, AfterValidator(_duration)]
PostgresUrl = Annotated[Text, AfterValidator(_postgres_url)]
Roles = Annotated[dict[str, RoleArn], AfterValidator(_some_roles)]
