"""The gateway's configuration as frozen values, parsed and validated once by `config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from policy.access import Grant, Subjects
from policy.model import Policy


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int
    tls: TLSFiles | None  # None: plain HTTP (only for loopback development)


@dataclass(frozen=True, slots=True)
class Routing:
    """How a request names its connection besides `/k8s/<connection>/`."""

    # With a suffix, `<connection><host_suffix>` (by SNI, else Host) routes from the root.
    host_suffix: str = ""  # e.g. ".k8s.example.com"; "" routes by path only


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the listener enforces; defaults are kube-apiserver-like."""

    # Header block (all field lines of one request). Go's net/http default is 1 MiB;
    # kubectl never sends more than a few KiB, so 64 KiB leaves room and bounds memory.
    max_header_bytes: int = 64 * 1024
    # Request target. 8 KiB matches common proxies (nginx large_client_header_buffers).
    max_url_bytes: int = 8 * 1024
    # Concurrent HTTP/2 streams per connection; Go's http2 server advertises 250.
    max_concurrent_streams: int = 250
    # Time to receive a complete request head on a new or idle connection.
    header_read_timeout: float = 10.0
    # A connection with no request in flight is closed after this long.
    idle_timeout: float = 120.0
    # Time to establish a TCP+TLS connection to a cluster.
    upstream_connect_timeout: float = 10.0
    # Time to wait for a cluster's response head (not its body: watches live long).
    upstream_response_timeout: float = 60.0
    # Upper bound on one streaming request (watch, logs -f, exec, port-forward); 0: none.
    max_stream_duration: float = 0.0
    # A watch, log stream or session outlives its caller's token by at most this long.
    token_expiry_grace: float = 0.0
    # An upgraded session (exec, attach, port-forward) with no bytes either way for this
    # long is closed; the kubelet's streaming idle timeout defaults to 4 hours.
    upgrade_idle_timeout: float = 4 * 3600.0
    # On SIGTERM, streams still open this long after draining began are ended (`ended_by:
    # gateway shutdown`); Kubernetes' default terminationGracePeriodSeconds is 30 s too.
    shutdown_grace: float = 30.0


@dataclass(frozen=True, slots=True)
class Provider:
    """An OIDC identity provider, as kube-apiserver's JWT authenticator configures one."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    username_claim: str = "sub"
    username_prefix: str = ""
    groups_claim: str = "groups"
    groups_prefix: str = ""
    required_claims: tuple[tuple[str, str], ...] = ()
    signing_algs: tuple[str, ...] = ("RS256", "ES256")
    ca_file: Path | None = None
    # When set, the token's `azp` must equal it: the token was issued to this client.
    authorized_party: str | None = None
    # Seconds since `iat` after which a token is refused whatever its `exp`; None: no bound.
    max_token_age: float | None = None
    # An `email` username needs `email_verified` true when the token carries that claim.
    email_verified_required: bool = True
    # Claim (dotted path allowed) giving Identity.uid; "": no uid.
    uid_claim: str = "sub"
    # (extra key, claim path): Identity.extra, e.g. ("example.com/tenant", "tenant").
    extra_claims: tuple[tuple[str, str], ...] = ()
    # Whether usernames and groups may start with Kubernetes' reserved `system:`.
    allow_system_prefix: bool = False


@dataclass(frozen=True, slots=True)
class StaticConnection:
    """A cluster reached with a fixed credential: a bearer token or a client certificate."""

    name: str
    server: str
    certificate_authority_file: Path | None = None
    token_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class EksConnection:
    """An EKS cluster reached with IAM roles assumed through STS."""

    name: str
    cluster_name: str
    region: str
    roles: tuple[tuple[str, str], ...]  # (role key, role ARN)
    server: str | None = None
    certificate_authority_data: str | None = None
    sts_endpoint: str | None = None
    eks_endpoint: str | None = None  # override for DescribeCluster, e.g. a local EKS
    external_id: str | None = None  # AssumeRole's ExternalId, when the trust policy asks
    source_identity: bool = False  # also set SourceIdentity (needs sts:SetSourceIdentity)
    session_duration: int = 3600  # AssumeRole's DurationSeconds (900 to the role's maximum)


Connection = StaticConnection | EksConnection


@dataclass(frozen=True, slots=True)
class Audit:
    sink: str = "stdout"  # "stdout" or a file path
    recordings_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class StateStore:
    """Where access requests and locks live (`state:`): PostgreSQL when `postgres` is set
    (several replicas), else the SQLite file `sqlite` (one host)."""

    sqlite: Path = Path("l7proxy-state.db")  # relative to the configuration file's folder
    postgres: str | None = None  # a libpq URL, e.g. postgresql://l7proxy@db.internal/l7proxy


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    listen: Listen
    workers: int
    providers: tuple[Provider, ...]
    connections: tuple[Connection, ...]
    policies: tuple[Policy, ...]
    audit: Audit = field(default_factory=Audit)
    limits: Limits = field(default_factory=Limits)
    routing: Routing = field(default_factory=Routing)
    state: StateStore = field(default_factory=StateStore)
    admins: Subjects = field(default_factory=Subjects)  # may place and lift locks
    access_requests: tuple[Grant, ...] = ()

    def connection(self, name: str) -> Connection | None:
        for conn in self.connections:
            if conn.name == name:
                return conn
        return None
