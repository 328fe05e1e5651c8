"""Every verification rule of `l7proxy.identity.oidc.jwt`, with tokens minted or forged by hand."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st
from josepy.jwk import JWKEC, JWKRSA

from l7proxy.config.settings import Provider
from l7proxy.identity.oidc.jwt import (
    InvalidKeySet,
    KeySet,
    TokenRejected,
    UnknownKey,
    claims_to_identity,
    peek_issuer,
    valid_until,
    verify,
)
from l7proxy.tools.devissuer import EC_KID, RSA_KID, DevIssuer

ISSUER = "https://issuer.test"
NOW = 1_700_000_000.0
PROVIDER = Provider(
    name="corp",
    issuer=ISSUER,
    audiences=("l7proxy",),
    signing_algs=("RS256", "ES256", "PS256", "ES384"),
)

# Keys for hand-forged tokens: the forger needs the private halves.
RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P384_PRIVATE = ec.generate_private_key(ec.SECP384R1())


def _jwk(key: JWKRSA | JWKEC, kid: str, **extra: str) -> dict[str, object]:
    return dict(key.to_json(), kid=kid, **extra)


FORGED_KEYS = KeySet.from_jwks(
    {
        "keys": [
            _jwk(JWKRSA(key=RSA_PRIVATE.public_key()), "forge-rsa"),
            _jwk(JWKEC(key=P384_PRIVATE.public_key()), "forge-p384"),
            _jwk(JWKRSA(key=RSA_PRIVATE.public_key()), "rs512-only", alg="RS512"),
        ]
    }
)


@pytest.fixture(scope="module")
def dev() -> DevIssuer:
    return DevIssuer(ISSUER)


@pytest.fixture(scope="module")
def keys(dev: DevIssuer) -> KeySet:
    return KeySet.from_jwks(dev.jwks())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "l7proxy",
        "iat": int(NOW),
        "exp": int(NOW) + 600,
    }
    base.update(overrides)
    return base


def forge(
    header: Mapping[str, object],
    payload: Mapping[str, object],
    sign: Callable[[bytes], bytes] | None = None,
) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


def rs256(message: bytes) -> bytes:
    return RSA_PRIVATE.sign(message, padding.PKCS1v15(), hashes.SHA256())


def es384(message: bytes) -> bytes:
    r, s = decode_dss_signature(P384_PRIVATE.sign(message, ec.ECDSA(hashes.SHA384())))
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def rejected(
    token: str, *, keys: KeySet = FORGED_KEYS, provider: Provider = PROVIDER, now: float = NOW
) -> TokenRejected:
    """The rejection of `token`, checked never to leak the token or a part of it."""
    with pytest.raises(TokenRejected) as info:
        verify(token, provider=provider, keys=keys, now=now)
    for text in (info.value.reason, str(info.value)):
        assert all(part not in text for part in [token, *token.split(".")] if len(part) > 8)
    return info.value


# --- signatures and algorithms ------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256"])
def test_accepts_signed_tokens(dev: DevIssuer, keys: KeySet, alg: str) -> None:
    token = dev.mint("alice", alg=alg, now=NOW)
    verified = verify(token, provider=PROVIDER, keys=keys, now=NOW)
    assert verified["sub"] == "alice"


def test_accepts_rfc_ps256_with_digest_length_salt() -> None:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    token = forge(
        {"alg": "PS256", "kid": "forge-rsa"},
        claims(),
        lambda m: RSA_PRIVATE.sign(m, pss, hashes.SHA256()),
    )
    assert verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)["sub"] == "alice"


def test_accepts_es384_with_p384_key() -> None:
    token = forge({"alg": "ES384", "kid": "forge-p384"}, claims(), es384)
    assert verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)["iss"] == ISSUER


def test_refuses_alg_none() -> None:
    token = forge({"alg": "none"}, claims())
    assert rejected(token).reason == "token signed with algorithm 'none', which is not accepted"


def test_refuses_hs256() -> None:
    token = forge({"alg": "HS256"}, claims(), lambda m: hmac.digest(b"secret", m, hashlib.sha256))
    assert rejected(token).reason == "token signed with algorithm 'HS256', which is not accepted"


def test_refuses_hs256_keyed_with_the_public_key_even_if_configured() -> None:
    public_pem = RSA_PRIVATE.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge(
        {"alg": "HS256", "kid": "forge-rsa"},
        claims(),
        lambda m: hmac.digest(public_pem, m, hashlib.sha256),
    )
    misconfigured = replace(PROVIDER, signing_algs=("HS256", "RS256"))
    reason = rejected(token, provider=misconfigured).reason
    assert reason == "token signed with algorithm 'HS256', which is not accepted"


def test_refuses_alg_outside_the_provider_allowlist(dev: DevIssuer, keys: KeySet) -> None:
    token = dev.mint("alice", alg="RS256", now=NOW)
    es_only = replace(PROVIDER, signing_algs=("ES256",))
    assert "'RS256', which is not accepted" in rejected(token, keys=keys, provider=es_only).reason


def test_refuses_ec_alg_with_rsa_key() -> None:
    token = forge({"alg": "ES256", "kid": "forge-rsa"}, claims(), rs256)
    assert rejected(token).reason == "signing key 'forge-rsa' does not fit algorithm 'ES256'"


def test_refuses_rsa_alg_with_ec_key(dev: DevIssuer, keys: KeySet) -> None:
    token = forge({"alg": "RS256", "kid": EC_KID}, claims(), rs256)
    assert "does not fit algorithm 'RS256'" in rejected(token, keys=keys).reason


def test_refuses_curve_mismatch() -> None:
    token = forge({"alg": "ES256", "kid": "forge-p384"}, claims(), es384)
    assert rejected(token).reason == "signing key 'forge-p384' does not fit algorithm 'ES256'"


def test_refuses_alg_other_than_the_one_the_jwk_declares() -> None:
    token = forge({"alg": "RS256", "kid": "rs512-only"}, claims(), rs256)
    assert "does not fit algorithm 'RS256'" in rejected(token).reason


def test_refuses_crit_header() -> None:
    token = forge({"alg": "RS256", "kid": "forge-rsa", "crit": ["exp"], "exp": 1}, claims(), rs256)
    assert "critical header" in rejected(token).reason


def test_refuses_tampered_payload(dev: DevIssuer, keys: KeySet) -> None:
    header, _, signature = dev.mint("alice", now=NOW).split(".")
    payload = _b64(json.dumps(claims(sub="admin")).encode())
    token = f"{header}.{payload}.{signature}"
    assert rejected(token, keys=keys).reason == "signature does not verify"


def test_refuses_signature_by_another_key_under_a_known_kid(keys: KeySet) -> None:
    token = forge({"alg": "RS256", "kid": RSA_KID}, claims(), rs256)
    assert rejected(token, keys=keys).reason == "signature does not verify"


def test_refuses_garbage_signature() -> None:
    token = forge({"alg": "ES384", "kid": "forge-p384"}, claims(), lambda m: b"\x01" * 7)
    assert rejected(token).reason == "signature does not verify"


# --- key selection ------------------------------------------------------------------------


def test_unknown_kid_is_its_own_error(keys: KeySet) -> None:
    other = DevIssuer(ISSUER)
    new_kid = other.rotate()
    token = other.mint("alice", now=NOW)
    error = rejected(token, keys=keys)
    assert isinstance(error, UnknownKey)
    assert error.kid == new_kid
    assert error.reason == f"token signed with unknown key {new_kid!r}"


def test_token_without_kid_uses_the_only_key() -> None:
    single = KeySet.from_jwks({"keys": [_jwk(JWKRSA(key=RSA_PRIVATE.public_key()), "only")]})
    token = forge({"alg": "RS256"}, claims(), rs256)
    assert verify(token, provider=PROVIDER, keys=single, now=NOW)["sub"] == "alice"


def test_token_without_kid_tries_every_fitting_key() -> None:
    token = forge({"alg": "ES384"}, claims(), es384)
    assert verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)["sub"] == "alice"


def test_token_without_kid_and_no_fitting_key_is_unknown() -> None:
    only_rsa = KeySet.from_jwks({"keys": [_jwk(JWKRSA(key=RSA_PRIVATE.public_key()), "r")]})
    token = forge({"alg": "ES384"}, claims(), es384)
    error = rejected(token, keys=only_rsa)
    assert isinstance(error, UnknownKey)
    assert error.kid is None


def test_keyset_skips_unusable_keys() -> None:
    rsa_jwk = _jwk(JWKRSA(key=RSA_PRIVATE.public_key()), "good")
    doc = {
        "keys": [
            rsa_jwk,
            dict(rsa_jwk, kid="encryption", use="enc"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA", "kid": "ed"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "incomplete"},
            dict(rsa_jwk, kid=7),
            "not an object",
        ]
    }
    keys = KeySet.from_jwks(doc)
    assert [k.kid for k in keys.keys] == ["good"]


def test_keyset_keeps_only_public_halves(dev: DevIssuer) -> None:
    private_jwks = {"keys": [_jwk(JWKRSA(key=RSA_PRIVATE), "with-d")]}
    (key,) = KeySet.from_jwks(private_jwks).keys
    assert "d" not in key.jwk.to_json()


def test_keyset_requires_a_keys_list() -> None:
    with pytest.raises(InvalidKeySet):
        KeySet.from_jwks({"keys": {}})


# --- claims -------------------------------------------------------------------------------


def signed(**overrides: object) -> str:
    return forge({"alg": "RS256", "kid": "forge-rsa"}, claims(**overrides), rs256)


def test_refuses_expired_token() -> None:
    assert rejected(signed(exp=int(NOW) - 31)).reason == "token has expired"


def test_expiry_allows_leeway() -> None:
    token = signed(exp=int(NOW) - 29)
    assert verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)["sub"] == "alice"
    with pytest.raises(TokenRejected, match="expired"):
        verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW, leeway=0)


def test_refuses_token_without_exp() -> None:
    token = forge({"alg": "RS256", "kid": "forge-rsa"}, {"iss": ISSUER, "aud": "l7proxy"}, rs256)
    assert rejected(token).reason == "token has no expiry"


@pytest.mark.parametrize("exp", ["1700000600", True, None, [1]])
def test_refuses_non_numeric_exp(exp: object) -> None:
    token = forge(
        {"alg": "RS256", "kid": "forge-rsa"},
        {"iss": ISSUER, "aud": "l7proxy", "exp": exp},
        rs256,
    )
    assert rejected(token).reason in ("token claim 'exp' is not a number", "token has no expiry")


def test_refuses_nbf_in_the_future() -> None:
    assert rejected(signed(nbf=int(NOW) + 60)).reason == "token is not valid yet"
    verify(signed(nbf=int(NOW) + 20), provider=PROVIDER, keys=FORGED_KEYS, now=NOW)


def test_refuses_iat_in_the_future() -> None:
    assert rejected(signed(iat=int(NOW) + 60)).reason == "token was issued in the future"


def test_refuses_wrong_audience() -> None:
    reason = rejected(signed(aud="someone-else")).reason
    assert reason == "token audience does not include any of: l7proxy"


def test_audience_list() -> None:
    token = signed(aud=["other", "l7proxy"])
    assert verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)["sub"] == "alice"
    assert "audience" in rejected(signed(aud=["other", 3])).reason
    assert "audience" in rejected(signed(aud=None)).reason


def test_refuses_wrong_issuer() -> None:
    assert rejected(signed(iss="https://evil.test")).reason == "unknown issuer"


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "eyJhbGciOiJSUzI1NiJ9.e30=.AA",  # padding
        "eyJhbGciOiJSUzI1NiJ9.e31.AA",  # non-canonical base64 (trailing bits)
        "eyJhbGciOiJSUzI1NiJ9.W10.AA",  # payload is a JSON array
        "eyJhbGciOiJSUzI1NiJ9.e30.A+A",  # base64, not base64url
        "é.é.é",
    ],
)
def test_refuses_malformed(token: str) -> None:
    assert rejected(token).reason == "malformed token"


def test_refuses_duplicate_claims() -> None:
    header = _b64(b'{"alg":"RS256","kid":"forge-rsa"}')
    payload = _b64(b'{"sub":"alice","sub":"admin"}')
    signing_input = f"{header}.{payload}"
    token = f"{signing_input}.{_b64(rs256(signing_input.encode()))}"
    assert rejected(token).reason == "malformed token"


def test_refuses_header_without_alg() -> None:
    assert rejected(forge({"kid": "forge-rsa"}, claims(), rs256)).reason == "malformed token"


def test_peek_issuer(dev: DevIssuer) -> None:
    assert peek_issuer(dev.mint("alice", now=NOW)) == ISSUER
    with pytest.raises(TokenRejected, match="malformed token"):
        peek_issuer("not-a-token")
    with pytest.raises(TokenRejected, match="token has no issuer"):
        peek_issuer(forge({"alg": "none"}, {"sub": "alice"}))


@given(st.text(max_size=300))
def test_random_text_only_ever_raises_token_rejected(token: str) -> None:
    with pytest.raises(TokenRejected):
        verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)
    with contextlib.suppress(TokenRejected):  # a valid-looking `iss` may come back
        peek_issuer(token)


segment = st.binary(max_size=120).map(_b64)
json_segment = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
).map(lambda value: _b64(json.dumps(value).encode()))
header_segment = st.dictionaries(
    st.sampled_from(["alg", "kid", "crit", "typ", "jwk", "x5c", "x5t"]),
    st.sampled_from(["RS256", "ES384", "none", "forge-rsa", 3, None, [], {}]),
).map(lambda value: _b64(json.dumps(value).encode()))


@given(st.one_of(segment, json_segment, header_segment), st.one_of(segment, json_segment), segment)
def test_random_segments_only_ever_raise_token_rejected(
    header: str, payload: str, signature: str
) -> None:
    with pytest.raises(TokenRejected):
        verify(f"{header}.{payload}.{signature}", provider=PROVIDER, keys=FORGED_KEYS, now=NOW)


# --- claims to identity -------------------------------------------------------------------


def test_identity_from_sub_and_groups() -> None:
    identity = claims_to_identity(claims(groups=["dev", "ops"]), PROVIDER)
    assert identity.username == "alice"
    assert identity.groups == ("dev", "ops")
    assert identity.uid == "alice"
    assert identity.provider == "corp"


def test_identity_prefixes_and_email() -> None:
    provider = replace(
        PROVIDER,
        username_claim="email",
        username_prefix="corp:",
        groups_prefix="corp:",
    )
    identity = claims_to_identity(
        claims(email="alice@example.com", email_verified=True, groups="admins"), provider
    )
    assert identity.username == "corp:alice@example.com"
    assert identity.groups == ("corp:admins",)


def test_identity_requires_the_username_claim() -> None:
    provider = replace(PROVIDER, username_claim="email")
    with pytest.raises(TokenRejected, match="token has no 'email' claim"):
        claims_to_identity(claims(), provider)
    with pytest.raises(TokenRejected, match="token has no 'email' claim"):
        claims_to_identity(claims(email=["a@b"]), provider)


def test_identity_refuses_unverified_email() -> None:
    provider = replace(PROVIDER, username_claim="email")
    with pytest.raises(TokenRejected, match="not verified"):
        claims_to_identity(claims(email="a@example.com", email_verified=False), provider)


def test_identity_dotted_groups_claim() -> None:
    provider = replace(PROVIDER, groups_claim="realm_access.roles")
    identity = claims_to_identity(claims(realm_access={"roles": ["viewer"]}), provider)
    assert identity.groups == ("viewer",)
    assert claims_to_identity(claims(realm_access="x"), provider).groups == ()
    assert claims_to_identity(claims(), provider).groups == ()


def test_identity_literal_claim_name_with_dots() -> None:
    provider = replace(PROVIDER, groups_claim="https://example.com/groups")
    identity = claims_to_identity(claims(**{"https://example.com/groups": ["a"]}), provider)
    assert identity.groups == ("a",)


@pytest.mark.parametrize("groups", [3, ["a", 3], {"a": 1}])
def test_identity_refuses_malformed_groups(groups: object) -> None:
    with pytest.raises(TokenRejected, match="not a string or a list of strings"):
        claims_to_identity(claims(groups=groups), PROVIDER)


def test_identity_required_claims() -> None:
    provider = replace(PROVIDER, required_claims=(("hd", "example.com"), ("tier", "gold")))
    assert claims_to_identity(claims(hd="example.com", tier="gold"), provider).username == "alice"
    with pytest.raises(
        TokenRejected, match="token has no 'tier' claim, which this provider requires"
    ):
        claims_to_identity(claims(hd="example.com"), provider)
    with pytest.raises(TokenRejected, match="token claim 'hd' does not have the required"):
        claims_to_identity(claims(hd="evil.com", tier="gold"), provider)


# --- every asymmetric algorithm, with key type and curve matching it ----------------------

P256_PRIVATE = ec.generate_private_key(ec.SECP256R1())
P521_PRIVATE = ec.generate_private_key(ec.SECP521R1())
ALL_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
EVERY_ALG = replace(PROVIDER, signing_algs=ALL_ALGS)
ALL_KEYS = KeySet.from_jwks(
    {
        "keys": [
            _jwk(JWKRSA(key=RSA_PRIVATE.public_key()), "rsa"),
            _jwk(JWKEC(key=P256_PRIVATE.public_key()), "p256"),
            _jwk(JWKEC(key=P384_PRIVATE.public_key()), "p384"),
            _jwk(JWKEC(key=P521_PRIVATE.public_key()), "p521"),
        ]
    }
)
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_EC_KEYS = {"ES256": (P256_PRIVATE, 32), "ES384": (P384_PRIVATE, 48), "ES512": (P521_PRIVATE, 66)}
_EC_KIDS = {"ES256": "p256", "ES384": "p384", "ES512": "p521"}


def signer(alg: str, ec_key: str | None = None) -> Callable[[bytes], bytes]:
    """A raw JWS signature for `alg` (PS* with a digest-length salt, as RFC 7518 says)."""
    digest = _HASHES[alg[2:]]
    if alg.startswith("RS"):
        return lambda m: RSA_PRIVATE.sign(m, padding.PKCS1v15(), digest())
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(digest()), salt_length=digest().digest_size)
        return lambda m: RSA_PRIVATE.sign(m, pss, digest())
    private, size = _EC_KEYS[ec_key or alg]

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(message, ec.ECDSA(digest())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_accepts_every_asymmetric_algorithm(alg: str) -> None:
    kid = _EC_KIDS.get(alg, "rsa")
    token = forge({"alg": alg, "kid": kid}, claims(), signer(alg))
    assert verify(token, provider=EVERY_ALG, keys=ALL_KEYS, now=NOW)["sub"] == "alice"
    without_kid = forge({"alg": alg}, claims(), signer(alg))  # the fitting key is found
    assert verify(without_kid, provider=EVERY_ALG, keys=ALL_KEYS, now=NOW)["sub"] == "alice"


@pytest.mark.parametrize(
    ("alg", "kid"),
    [("ES256", "p384"), ("ES384", "p521"), ("ES512", "p256"), ("ES256", "rsa"), ("RS512", "p521")],
)
def test_key_type_and_curve_must_match_the_algorithm(alg: str, kid: str) -> None:
    token = forge({"alg": alg, "kid": kid}, claims(), lambda m: b"\x00" * 64)
    reason = rejected(token, keys=ALL_KEYS, provider=EVERY_ALG).reason
    assert reason == f"signing key {kid!r} does not fit algorithm {alg!r}"


def test_es512_signature_by_a_p256_key_is_refused_without_kid() -> None:
    token = forge({"alg": "ES512"}, claims(), signer("ES512", ec_key="ES256"))
    assert rejected(token, keys=ALL_KEYS, provider=EVERY_ALG).reason == "signature does not verify"


@pytest.mark.parametrize("alg", ["HS384", "HS512", "None", "NONE", "EdDSA", "RSA-OAEP", ""])
def test_refuses_other_algorithms_whatever_the_allowlist(alg: str) -> None:
    token = forge({"alg": alg, "kid": "rsa"}, claims(), rs256)
    misconfigured = replace(EVERY_ALG, signing_algs=(*ALL_ALGS, alg))
    reason = rejected(token, keys=ALL_KEYS, provider=misconfigured).reason
    assert reason == f"token signed with algorithm {alg!r}, which is not accepted"


def test_embedded_jwk_header_is_never_trusted() -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = forge(
        {"alg": "RS256", "kid": "rsa", "jwk": JWKRSA(key=attacker.public_key()).to_json()},
        claims(),
        lambda m: attacker.sign(m, padding.PKCS1v15(), hashes.SHA256()),
    )
    assert rejected(token, keys=ALL_KEYS).reason == "signature does not verify"


# --- token types: ID tokens and RFC 9068 access tokens -------------------------------------


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", "application/jwt", None]
)
def test_accepts_id_and_access_token_types(typ: str | None) -> None:
    header: dict[str, object] = {"alg": "RS256", "kid": "forge-rsa"}
    if typ is not None:
        header["typ"] = typ
    token = forge(header, claims(client_id="ci-agent"), rs256)
    assert verify(token, provider=PROVIDER, keys=FORGED_KEYS, now=NOW)["sub"] == "alice"


@pytest.mark.parametrize(
    "typ", ["dpop+jwt", "logout+jwt", "secevent+jwt", "application/jose", "JWE", ""]
)
def test_refuses_tokens_minted_for_other_purposes(typ: str) -> None:
    token = forge({"alg": "RS256", "kid": "forge-rsa", "typ": typ}, claims(), rs256)
    assert rejected(token).reason == (
        f"token type {typ!r} is not accepted: expected an ID token or a JWT access token "
        "(typ JWT or at+jwt)"
    )


def test_refuses_non_string_typ() -> None:
    token = forge({"alg": "RS256", "kid": "forge-rsa", "typ": 1}, claims(), rs256)
    assert rejected(token).reason == "malformed token"


def test_dev_issuer_access_token_verifies(dev: DevIssuer, keys: KeySet) -> None:
    token = dev.mint("ci-agent", typ="at+jwt", now=NOW, extra_claims={"client_id": "ci"})
    assert verify(token, provider=PROVIDER, keys=keys, now=NOW)["client_id"] == "ci"


# --- authorized party -----------------------------------------------------------------------

AZP = replace(PROVIDER, authorized_party="kubectl")


def test_azp_must_equal_the_configured_authorized_party() -> None:
    assert verify(signed(azp="kubectl"), provider=AZP, keys=FORGED_KEYS, now=NOW)["sub"] == "alice"
    assert rejected(signed(azp="other-app"), provider=AZP).reason == (
        "token was issued to another client: its authorized party (azp) is not 'kubectl'"
    )
    assert rejected(signed(azp=["kubectl"]), provider=AZP).reason.startswith(
        "token was issued to another client"
    )
    assert rejected(signed(), provider=AZP).reason == (
        "token has no authorized party (azp); this provider requires 'kubectl'"
    )


def test_azp_is_not_checked_unless_configured() -> None:
    assert verify(signed(azp="anything"), provider=PROVIDER, keys=FORGED_KEYS, now=NOW)


# --- maximum token age ---------------------------------------------------------------------

AGED = replace(PROVIDER, max_token_age=300)


def test_max_token_age_bounds_now_minus_iat() -> None:
    token = signed(iat=int(NOW) - 300, exp=int(NOW) + 3600)
    assert verify(token, provider=AGED, keys=FORGED_KEYS, now=NOW, leeway=0)["sub"] == "alice"
    old = signed(iat=int(NOW) - 301, exp=int(NOW) + 3600)
    reason = rejected(old, provider=AGED, now=NOW + 30).reason  # past the 30 s leeway too
    assert reason == "token was issued more than 300s ago (max_token_age): get a fresh one"
    with pytest.raises(TokenRejected, match="max_token_age"):
        verify(old, provider=AGED, keys=FORGED_KEYS, now=NOW, leeway=0)


def test_max_token_age_requires_iat() -> None:
    reason = rejected(signed(iat=None), provider=AGED).reason
    assert reason == "token has no issue time (iat), which this provider's max_token_age requires"
    assert verify(signed(iat=None), provider=PROVIDER, keys=FORGED_KEYS, now=NOW)  # unbounded


def test_valid_until_is_exp_or_the_age_bound_whichever_is_first() -> None:
    token_claims = claims(iat=int(NOW), exp=int(NOW) + 3600)
    assert valid_until(token_claims, PROVIDER) == NOW + 3600
    assert valid_until(token_claims, AGED) == NOW + 300
    assert valid_until(claims(exp=int(NOW) + 60), AGED) == NOW + 60
