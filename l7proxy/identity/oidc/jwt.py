"""Pure JWT verification: josepy checks the signature, then the claims kube-apiserver checks.

ID tokens and JWT access tokens (RFC 9068) alike. No I/O and no clock: the caller passes the
keys and the current time, so every rule is a unit test. Reasons in `TokenRejected` are shown
to callers (401 and audit), so they say what to fix and never contain the token.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from josepy import b64
from josepy import errors as jose_errors
from josepy.jwk import JWK, JWKEC, JWKRSA
from josepy.jws import JWS

from l7proxy.config.settings import Provider
from policy.identity import Identity

# Bounds the work done on a token before its signature is known to be good. It matches the
# listener's header-block limit: a longer token could not have arrived in a header anyway.
MAX_TOKEN_CHARS = 64 * 1024

_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# ES* names both the hash and the curve (RFC 7518 §3.4); a P-384 key under ES256 is refused.
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
# Asymmetric algorithms only: `none` and HMAC are never accepted, whatever the configuration
# says, because an HMAC "secret" would be the issuer's public key (the classic alg confusion).
SUPPORTED_ALGS = _RSA_ALGS | frozenset(_EC_CURVES)

# `typ` (RFC 7515 §4.1.9, compared case-insensitively, "application/" optional): absent or JWT
# for ID tokens, at+jwt for RFC 9068 access tokens. Anything else (dpop+jwt, logout+jwt,
# secevent+jwt, ...) is a JWT minted for another purpose and must not authenticate anyone.
_ACCEPTED_TYPES = frozenset({"jwt", "at+jwt"})

# Kubernetes reserves `system:` for its own users and groups (system:masters, nodes, service
# accounts); a provider that can mint such names could otherwise claim them.
SYSTEM_PREFIX = "system:"

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_MALFORMED = "malformed token"


class TokenRejected(Exception):
    """The token authenticates no one; `reason` is a short phrase safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKey(TokenRejected):
    """No published key matches the token: the issuer may have rotated, so refresh and retry."""

    def __init__(self, kid: str | None) -> None:
        if kid is None:
            super().__init__("no published signing key fits the token")
        else:
            super().__init__(f"token signed with unknown key {_show(kid)}")
        self.kid = kid


class InvalidKeySet(ValueError):
    """A JWKS document without a `keys` list: the issuer's answer cannot be used at all."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key from a JWKS, with the `kid` and `alg` it was published under."""

    kid: str | None
    jwk: JWK
    alg: str | None  # the JWK's own `alg` member: when present, the only algorithm it verifies

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a signature made with `alg` (key type, curve, `alg`)."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg in _RSA_ALGS:
            return isinstance(self.jwk, JWKRSA)
        curve = _EC_CURVES.get(alg)
        return isinstance(self.jwk, JWKEC) and self.jwk.key.curve.name == curve


@dataclass(frozen=True, slots=True)
class KeySet:
    """The usable signature keys of one issuer, looked up by `kid`."""

    keys: tuple[VerificationKey, ...] = ()

    @classmethod
    def from_jwks(cls, doc: Mapping[str, object]) -> KeySet:
        """Keep RSA and EC signature keys; skip the rest, so one odd key breaks nothing."""
        entries = doc.get("keys")
        if not isinstance(entries, list):
            raise InvalidKeySet("JWKS document has no 'keys' list")
        keys = []
        for entry in entries:
            key = _parse_jwk(entry)
            if key is not None:
                keys.append(key)
        return cls(tuple(keys))

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        """Keys that may have signed a token with this header, or `UnknownKey` if none does.

        Without a `kid` every fitting key is tried, as go-oidc in kube-apiserver does.
        """
        if kid is None:
            fitting = tuple(k for k in self.keys if k.fits(alg))
            if not fitting:
                raise UnknownKey(None)
            return fitting
        named = tuple(k for k in self.keys if k.kid == kid)
        if not named:
            raise UnknownKey(kid)
        fitting = tuple(k for k in named if k.fits(alg))
        if not fitting:
            raise TokenRejected(f"signing key {_show(kid)} does not fit algorithm {_show(alg)}")
        return fitting


def _parse_jwk(entry: object) -> VerificationKey | None:
    if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC"):
        return None  # `oct` (symmetric) keys are never usable; unknown types are skipped
    if entry.get("use", "sig") != "sig":
        return None
    kid, alg = entry.get("kid"), entry.get("alg")
    if not (kid is None or isinstance(kid, str)) or not (alg is None or isinstance(alg, str)):
        return None
    try:
        parsed = JWK.from_json(entry)
    except (jose_errors.Error, KeyError, TypeError, ValueError):
        return None
    if not isinstance(parsed, JWKRSA | JWKEC):
        return None
    return VerificationKey(kid=kid, jwk=parsed.public_key(), alg=alg)


@dataclass(frozen=True, slots=True)
class _Parts:
    header: dict[str, object]
    claims: dict[str, object]


def _show(value: str) -> str:
    """Quote a value taken from a token header, cut short: it is attacker-controlled."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _decode_segment(segment: str) -> bytes:
    """Strict base64url: no padding, and only the canonical encoding of the bytes."""
    if _SEGMENT.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise TokenRejected(_MALFORMED)
    data = b64.b64decode(segment)
    if b64.b64encode(data).decode("ascii") != segment:
        raise TokenRejected(_MALFORMED)
    return data


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member")  # parsers disagreeing on which one wins is a hole
    return obj


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise TokenRejected(_MALFORMED) from exc
    if not isinstance(value, dict):
        raise TokenRejected(_MALFORMED)
    return value


def _parse(token: str) -> _Parts:
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenRejected(_MALFORMED)
    segments = token.split(".")
    if len(segments) != 3:
        raise TokenRejected(_MALFORMED)  # compact JWS only: JWE and JSON serialization refused
    header, payload, _signature = (_decode_segment(segment) for segment in segments)
    return _Parts(header=_json_object(header), claims=_json_object(payload))


def peek_issuer(token: str) -> str:
    """The unverified `iss`, only to choose which provider's keys verify the token."""
    issuer = _parse(token).claims.get("iss")
    if not isinstance(issuer, str):
        raise TokenRejected("token has no issuer")
    return issuer


def _numeric(claims: Mapping[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRejected(f"token claim {name!r} is not a number")
    return float(value)


def expiry(claims: Mapping[str, object]) -> float:
    """The `exp` claim: required, because a token without one would be valid forever."""
    exp = _numeric(claims, "exp")
    if exp is None:
        raise TokenRejected("token has no expiry")
    return exp


def valid_until(claims: Mapping[str, object], provider: Provider) -> float:
    """When a verified token stops authenticating: `exp`, or sooner under `max_token_age`.

    Caches and long streams end there, so a token cannot outlive the age bound through them.
    """
    until = expiry(claims)
    iat = _numeric(claims, "iat")
    if provider.max_token_age is not None and iat is not None:
        until = min(until, iat + provider.max_token_age)
    return until


def _check_type(header: Mapping[str, object]) -> None:
    """Refuse JWTs typed for another use (DPoP proofs, logout tokens): same keys, other meaning."""
    typ = header.get("typ")
    if typ is None:
        return
    if not isinstance(typ, str):
        raise TokenRejected(_MALFORMED)
    media = typ.lower()
    if media.startswith("application/"):
        media = media[len("application/") :]
    if media not in _ACCEPTED_TYPES:
        raise TokenRejected(
            f"token type {_show(typ)} is not accepted: expected an ID token or a JWT access "
            "token (typ JWT or at+jwt)"
        )


def _check_signature(token: str, parts: _Parts, provider: Provider, keys: KeySet) -> None:
    header = parts.header
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenRejected(_MALFORMED)
    if alg not in SUPPORTED_ALGS or alg not in provider.signing_algs:
        raise TokenRejected(f"token signed with algorithm {_show(alg)}, which is not accepted")
    if "crit" in header:
        raise TokenRejected("token uses critical header extensions, which are not supported")
    _check_type(header)
    kid = header.get("kid")
    if not (kid is None or isinstance(kid, str)):
        raise TokenRejected(_MALFORMED)
    candidates = keys.candidates(kid, alg)
    try:
        jws = JWS.from_compact(token.encode("ascii"))
    except (jose_errors.Error, KeyError, TypeError, ValueError) as exc:
        raise TokenRejected(_MALFORMED) from exc
    if not any(jws.verify(key.jwk) for key in candidates):
        raise TokenRejected("signature does not verify")


def _check_claims(
    claims: Mapping[str, object], provider: Provider, now: float, leeway: float
) -> None:
    if claims.get("iss") != provider.issuer:
        raise TokenRejected("unknown issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(a in provider.audiences for a in audiences if isinstance(a, str)):
        wanted = ", ".join(provider.audiences)
        raise TokenRejected(f"token audience does not include any of: {wanted}")
    if expiry(claims) <= now - leeway:
        raise TokenRejected("token has expired")
    nbf = _numeric(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise TokenRejected("token is not valid yet")
    iat = _numeric(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise TokenRejected("token was issued in the future")
    if provider.max_token_age is not None:
        if iat is None:
            raise TokenRejected(
                "token has no issue time (iat), which this provider's max_token_age requires"
            )
        if now - iat > provider.max_token_age + leeway:
            raise TokenRejected(
                f"token was issued more than {provider.max_token_age:g}s ago "
                "(max_token_age): get a fresh one"
            )
    if provider.authorized_party is not None:
        azp = claims.get("azp")
        if azp is None:
            raise TokenRejected(
                f"token has no authorized party (azp); this provider requires "
                f"{provider.authorized_party!r}"
            )
        if azp != provider.authorized_party:
            raise TokenRejected(
                f"token was issued to another client: its authorized party (azp) is not "
                f"{provider.authorized_party!r}"
            )


def verify(
    token: str, *, provider: Provider, keys: KeySet, now: float, leeway: float = 30.0
) -> Mapping[str, object]:
    """The token's claims, once its signature, type and every issuer/audience/time/azp rule hold."""
    parts = _parse(token)
    _check_signature(token, parts, provider, keys)
    _check_claims(parts.claims, provider, now, leeway)
    return parts.claims


def _claim_at(claims: Mapping[str, object], path: str) -> object:
    """A claim by literal name (URL-named claims contain dots) or else by dotted path."""
    if path in claims:
        return claims[path]
    node: object = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_distributed(claims: Mapping[str, object], path: str) -> bool:
    """Whether the provider left this claim out of the token and points elsewhere for it.

    OIDC Core §5.6.2 distributed claims (`_claim_names` -> `_claim_sources`); Azure AD does this
    for the groups of a user in too many groups ("group overage"), or sets `hasgroups`.
    """
    names = claims.get("_claim_names")
    if isinstance(names, dict) and (path in names or path.split(".")[0] in names):
        return True
    return path == "groups" and claims.get("hasgroups") is True


def _distributed(path: str, what: str) -> TokenRejected:
    return TokenRejected(
        f"the provider moved the token's {path!r} claim ({what}) to distributed claims "
        "(_claim_names, e.g. Azure AD group overage), which the gateway does not resolve; "
        "have the provider put it in the token itself (e.g. emit only the groups assigned "
        "to the application)"
    )


def _present(claims: Mapping[str, object], path: str, what: str) -> object:
    """The claim's value, None if absent; refused if absent because it is distributed.

    Reading a distributed groups claim as "no groups" would silently drop the caller's groups
    (and any deny policy bound to them), so it is an error, never an empty value.
    """
    value = _claim_at(claims, path)
    if value is None and _is_distributed(claims, path):
        raise _distributed(path, what)
    return value


def _strings(value: object, path: str, what: str) -> tuple[str, ...]:
    """A claim that may be one string or a list of strings (kube accepts both for groups)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise TokenRejected(f"token claim {path!r} ({what}) is not a string or a list of strings")


def _username(claims: Mapping[str, object], provider: Provider) -> str:
    claim = provider.username_claim
    username = _present(claims, claim, "the username")
    if not isinstance(username, str) or not username:
        raise TokenRejected(f"token has no {claim!r} claim")
    # As kube-apiserver: an `email_verified` that is present must be true; an absent one is
    # accepted (many providers only ever issue verified addresses and omit the claim).
    verified = claims.get("email_verified", True)
    if claim == "email" and provider.email_verified_required and verified is not True:
        raise TokenRejected(
            "token email address is not verified (email_verified is not true); verify it "
            "with the provider"
        )
    return provider.username_prefix + username


def _uid(claims: Mapping[str, object], provider: Provider) -> str:
    claim = provider.uid_claim
    if not claim:
        return ""
    uid = _present(claims, claim, "the user's uid")
    if uid is None:
        raise TokenRejected(f"token has no {claim!r} claim for the user's uid (uid_claim)")
    if not isinstance(uid, str):
        raise TokenRejected(f"token claim {claim!r} (uid_claim) is not a string")
    return uid


def _extra(
    claims: Mapping[str, object], provider: Provider
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """As kube's extra mappings: empty strings are dropped, and a key without values is left out."""
    extra = []
    for key, claim in provider.extra_claims:
        value = _present(claims, claim, f"extra {key!r}")
        values = tuple(item for item in _strings(value, claim, f"extra {key!r}") if item)
        if values:
            extra.append((key, values))
    return tuple(extra)


def _check_required(claims: Mapping[str, object], provider: Provider) -> None:
    for claim, required in provider.required_claims:
        value = claims.get(claim)
        if value is None:
            raise TokenRejected(f"token has no {claim!r} claim, which this provider requires")
        if value != required:
            raise TokenRejected(f"token claim {claim!r} does not have the required value")


def _check_user(identity: Identity, provider: Provider) -> None:
    """kube's user validation rule against `system:` names, on the names after prefixes."""
    if provider.allow_system_prefix:
        return
    hint = "set a username_prefix / groups_prefix, or allow_system_prefix: true"
    if identity.username.startswith(SYSTEM_PREFIX):
        raise TokenRejected(
            f"username {_show(identity.username)} has the reserved {SYSTEM_PREFIX!r} prefix "
            f"({hint})"
        )
    for group in identity.groups:
        if group.startswith(SYSTEM_PREFIX):
            raise TokenRejected(
                f"group {_show(group)} has the reserved {SYSTEM_PREFIX!r} prefix ({hint})"
            )


def claims_to_identity(claims: Mapping[str, object], provider: Provider) -> Identity:
    """Map verified claims to the caller, as kube-apiserver's claim mappings do."""
    username = _username(claims, provider)
    groups = _strings(
        _present(claims, provider.groups_claim, "the groups"), provider.groups_claim, "the groups"
    )
    identity = Identity(
        username=username,
        groups=tuple(provider.groups_prefix + group for group in groups),
        uid=_uid(claims, provider),
        extra=_extra(claims, provider),
        provider=provider.name,
    )
    _check_required(claims, provider)
    _check_user(identity, provider)
    return identity
