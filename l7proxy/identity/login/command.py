"""`l7proxy login`: the kubectl exec credential plugin.

kubectl runs it before talking to the gateway and reads one `ExecCredential` from its stdout.
Order of preference: a cached token that is still good for a minute, a cached refresh token,
then the grant itself (which may need a person). Everything for the user goes to stderr;
stdout carries only the credential, so even a browser launcher's chatter is kept off it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from l7proxy.identity.login import grants
from l7proxy.identity.login.cache import Entry, TokenCache, default_cache_dir
from l7proxy.identity.login.http import Http, LoginError, ssl_context
from l7proxy.identity.login.oauth import ClientAuth, OAuthError, Provider, discover, jwt_claims
from l7proxy.identity.login.oauth import load_private_key as _load_private_key

GRANTS = ("auth-code", "device", "client-credentials")
Grant = Literal["auth-code", "device", "client-credentials"]
TokenUse = Literal["auto", "id", "access"]
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
# A cached token is reused until this long before it expires; kubectl is told the same.
EXPIRY_SKEW = 60.0
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class LoginOptions:
    issuer: str
    client_id: str
    grant: Grant = "auth-code"
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    resource: str | None = None
    ca_file: Path | None = None
    use: TokenUse = "auto"
    client_secret: str | None = None
    client_secret_file: Path | None = None
    private_key_file: Path | None = None
    key_id: str | None = None
    open_browser: bool = True
    redirect_port: int = 0
    timeout: float = DEFAULT_TIMEOUT
    cache_dir: Path | None = None

    @property
    def effective_scopes(self) -> tuple[str, ...]:
        """`openid` for a person's sign-in (an ID token is what the gateway reads), none by
        default for an agent (the provider decides)."""
        if self.scopes:
            return self.scopes
        return () if self.grant == "client-credentials" else ("openid",)

    def extra_params(self) -> dict[str, str]:
        extra: dict[str, str] = {}
        if self.audience:
            extra["audience"] = self.audience
        if self.resource:
            extra["resource"] = self.resource
        return extra

    def cache_key(self) -> list[str]:
        return [
            self.issuer,
            self.client_id,
            " ".join(sorted(self.effective_scopes)),
            self.grant,
            self.audience or "",
            self.resource or "",
        ]


@dataclass(frozen=True, slots=True)
class Credential:
    token: str
    kind: Literal["id", "access"]
    expires_at: float | None  # Unix time; None when the provider did not say


def select(response: Mapping[str, object], obtained_at: float, use: TokenUse) -> Credential | None:
    """The token to hand kubectl: the ID token unless told otherwise or there is none."""
    id_token = response.get("id_token")
    if use == "id" or (use == "auto" and isinstance(id_token, str)):
        if not isinstance(id_token, str):
            return None
        claims = jwt_claims(id_token) or {}
        exp = claims.get("exp")
        return Credential(id_token, "id", float(exp) if isinstance(exp, int | float) else None)
    access = response.get("access_token")
    if not isinstance(access, str):
        return None
    candidates: list[float] = []
    expires_in = response.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        candidates.append(obtained_at + float(expires_in))
    exp = (jwt_claims(access) or {}).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        candidates.append(float(exp))
    return Credential(access, "access", min(candidates) if candidates else None)


def _usable(credential: Credential | None, now: float) -> bool:
    return (
        credential is not None
        and credential.expires_at is not None
        and credential.expires_at - EXPIRY_SKEW > now
    )


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def obtain(options: LoginOptions) -> Credential:
    """A credential from the cache, a refresh, or the grant; the cache is updated."""
    cache = TokenCache(options.cache_dir or default_cache_dir(), options.cache_key())
    with cache.locked():
        entry = cache.load()
        now = time.time()
        cached = select(entry.response, entry.obtained_at, options.use) if entry else None
        if cached is not None and _usable(cached, now):
            return cached
        http = Http(ssl_context(str(options.ca_file) if options.ca_file else None))
        provider = discover(http, options.issuer)
        auth = client_auth(options)
        if entry is not None:
            refreshed = _try_refresh(http, provider, auth, entry, options, cache)
            if refreshed is not None:
                return refreshed
        now = time.time()
        response = _run_grant(http, provider, auth, options)
        credential = select(response, now, options.use)
        if credential is None:
            raise LoginError(_missing_token(options.use))
        cache.store(response, now)
        return credential


def _try_refresh(
    http: Http,
    provider: Provider,
    auth: ClientAuth,
    entry: Entry,
    options: LoginOptions,
    cache: TokenCache,
) -> Credential | None:
    refresh_token = entry.response.get("refresh_token")
    if not isinstance(refresh_token, str):
        return None
    now = time.time()
    try:
        response = grants.refresh(http, provider, auth, refresh_token)
    except OAuthError as exc:
        _announce(f"The cached refresh token was not accepted ({exc.error}); signing in again.")
        cache.clear()
        return None
    if "refresh_token" not in response:  # not rotated: the old one stays good
        response = {**response, "refresh_token": refresh_token}
    previous = select(entry.response, entry.obtained_at, options.use)
    credential = select(response, now, options.use)
    if credential is None or (previous is not None and credential.kind != previous.kind):
        return None  # e.g. no new ID token on refresh: the grant gives one
    cache.store(response, now)
    return credential


def _run_grant(
    http: Http, provider: Provider, auth: ClientAuth, options: LoginOptions
) -> dict[str, object]:
    scopes, extra = options.effective_scopes, options.extra_params()
    match options.grant:
        case "client-credentials":
            return grants.client_credentials(http, provider, auth, scopes=scopes, extra=extra)
        case "device":
            return grants.device_code(
                http, provider, auth, scopes=scopes, extra=extra, announce=_announce
            )
        case "auth-code":
            return grants.authorization_code(
                http,
                provider,
                auth,
                scopes=scopes,
                extra=extra,
                announce=_announce,
                open_browser=options.open_browser,
                redirect_port=options.redirect_port,
                timeout=options.timeout,
            )


def _missing_token(use: TokenUse) -> str:
    if use == "access":
        return "the provider's token response has no access_token"
    if use == "id":
        return (
            "the provider's token response has no id_token "
            "(ask for the openid scope, or pass --use-access-token)"
        )
    return "the provider's token response has neither an id_token nor an access_token"


def client_auth(options: LoginOptions) -> ClientAuth:
    """The client's credential from the options; at most one kind may be given."""
    given = [
        name
        for name, value in (
            ("--client-secret", options.client_secret),
            ("--client-secret-file", options.client_secret_file),
            ("--private-key-file", options.private_key_file),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise LoginError(f"give only one of {', '.join(given)}")
    if options.private_key_file is not None:
        key, alg, kid = _load_private_key(options.private_key_file, options.key_id)
        return ClientAuth(options.client_id, key=key, key_alg=alg, key_id=kid)
    secret = options.client_secret
    if options.client_secret_file is not None:
        try:
            secret = options.client_secret_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise LoginError(
                f"cannot read --client-secret-file {options.client_secret_file}: {exc}"
            ) from None
        if not secret:
            raise LoginError(f"--client-secret-file {options.client_secret_file} is empty")
    return ClientAuth(options.client_id, secret=secret)


def exec_credential(credential: Credential, api_version: str, now: float) -> dict[str, object]:
    """The `ExecCredential` kubectl reads. Its expiry is a minute early, so kubectl asks again
    while the cache would already refresh (unless the token is shorter-lived than that)."""
    status: dict[str, object] = {"token": credential.token}
    if credential.expires_at is not None:
        expiry = credential.expires_at - EXPIRY_SKEW
        if expiry <= now:
            expiry = credential.expires_at
        status["expirationTimestamp"] = (
            datetime.fromtimestamp(int(expiry), UTC).isoformat().replace("+00:00", "Z")
        )
    return {"apiVersion": api_version, "kind": "ExecCredential", "status": status}


def exec_api_version(environ: Mapping[str, str]) -> str:
    """The version kubectl asked for in KUBERNETES_EXEC_INFO (v1 when absent or unknown)."""
    raw = environ.get("KUBERNETES_EXEC_INFO")
    if raw:
        try:
            info = json.loads(raw)
        except ValueError:
            raise LoginError("KUBERNETES_EXEC_INFO is not JSON") from None
        version = info.get("apiVersion") if isinstance(info, dict) else None
        if version in EXEC_API_VERSIONS:
            return str(version)
    return EXEC_API_VERSIONS[0]


@contextlib.contextmanager
def _stdout_kept_for_credential() -> Iterator[int]:
    """Point fd 1 at stderr while signing in (a browser launcher may write to it) and yield
    a duplicate of the real stdout for the credential."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(real, 1)
        os.close(real)


def add_login_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issuer", required=True, help="the OpenID issuer URL (exact `iss`)")
    parser.add_argument("--client-id", required=True)
    add_grant_arguments(parser, issuer_ca_flag="--ca-file")
    parser.add_argument(
        "--client-secret", help="the client's secret (prefer --client-secret-file: argv is public)"
    )
    parser.add_argument(
        "--no-browser",
        dest="open_browser",
        action="store_false",
        help="auth-code: print the sign-in URL instead of opening a browser",
    )
    parser.add_argument(
        "--redirect-port",
        type=int,
        default=0,
        help="auth-code: the loopback port for the redirect (default: any free port)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="auth-code: how long to wait for the browser, in seconds",
    )


def add_grant_arguments(
    parser: argparse.ArgumentParser, *, issuer_ca_flag: str, grant_flag: str = "--grant"
) -> None:
    """The options `l7proxy kubeconfig` passes through to `l7proxy login` (there the issuer's
    CA is `--issuer-ca-file`, since its `--ca-file` is the gateway's; `l7proxy request` names
    the OAuth grant `--login-grant`, since its `--grant` is an access request's)."""
    parser.add_argument(grant_flag, dest="grant", choices=GRANTS, default="auth-code")
    parser.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="repeatable, or space-separated (default: openid; none for client-credentials)",
    )
    parser.add_argument("--audience", help="sent as the `audience` parameter")
    parser.add_argument("--resource", help="sent as the RFC 8707 `resource` parameter")
    parser.add_argument(
        issuer_ca_flag,
        dest="issuer_ca_file",
        type=Path,
        metavar="PEM",
        help="CA bundle (PEM) for the issuer's TLS (default: the system's)",
    )
    use = parser.add_mutually_exclusive_group()
    use.add_argument("--use-id-token", dest="use", action="store_const", const="id")
    use.add_argument("--use-access-token", dest="use", action="store_const", const="access")
    parser.set_defaults(use="auto")
    parser.add_argument("--client-secret-file", type=Path, metavar="FILE")
    parser.add_argument(
        "--private-key-file",
        type=Path,
        metavar="PEM",
        help="client-credentials: PEM key for private_key_jwt client authentication",
    )
    parser.add_argument("--key-id", help="the `kid` for --private-key-file (default: thumbprint)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="where tokens are cached (default: $XDG_CACHE_HOME/l7proxy)",
    )


def split_scopes(values: Sequence[str]) -> tuple[str, ...]:
    scopes: list[str] = []
    for value in values:
        scopes.extend(s for s in value.split() if s not in scopes)
    return tuple(scopes)


def grant_options(args: argparse.Namespace) -> LoginOptions:
    """The options `add_grant_arguments` gives, shared by `login` and `kubeconfig`."""
    return LoginOptions(
        issuer=args.issuer,
        client_id=args.client_id,
        grant=args.grant,
        scopes=split_scopes(args.scope),
        audience=args.audience,
        resource=args.resource,
        ca_file=args.issuer_ca_file,
        use=args.use,
        client_secret_file=args.client_secret_file,
        private_key_file=args.private_key_file,
        key_id=args.key_id,
        cache_dir=args.cache_dir,
    )


def options_from_args(args: argparse.Namespace) -> LoginOptions:
    return dataclasses.replace(
        grant_options(args),
        client_secret=args.client_secret,
        open_browser=args.open_browser,
        redirect_port=args.redirect_port,
        timeout=args.timeout,
    )


def run_login(args: argparse.Namespace) -> int:
    """The `login` subcommand: one ExecCredential on stdout, or one line on stderr and 1."""
    try:
        options = options_from_args(args)
        api_version = exec_api_version(os.environ)
        with _stdout_kept_for_credential() as stdout:
            credential = obtain(options)
            document = exec_credential(credential, api_version, time.time())
            data = (json.dumps(document) + "\n").encode()
            while data:
                data = data[os.write(stdout, data) :]
    except LoginError as exc:
        print(f"l7proxy login: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("l7proxy login: interrupted", file=sys.stderr)
        return 1
    return 0
