"""`l7proxy demo`: the whole picture on one machine, with nothing to configure.

A sandbox cluster, a development OpenID issuer and the gateway in front of the cluster, all on
127.0.0.1 with TLS from a CA made for the run. Two demo identities sign in the way an agent
would (`l7proxy login`, client credentials): a read-only agent and an admin. Everything the
demo writes goes under one folder (default `./demo`): the CA, the gateway's configuration,
the client secrets (0600), a kubeconfig with a context per identity, the audit log and the
session recordings. Ctrl-C stops it all.

The CA is made with `cryptography` (already a dependency) rather than trustme, which is a
test tool: the demo is part of the product, and a few lines do not justify a new runtime
dependency.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TextIO

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from l7proxy.identity.login.command import LoginOptions
from l7proxy.identity.login.kubeconfig import KubeconfigEntry, kubeconfig_document, write_private

HOST = "127.0.0.1"
CONNECTION = "sandbox"
CLUSTER_USER = "system:serviceaccount:l7proxy:gateway"  # who the sandbox takes the gateway for
_CERT_LIFETIME = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class DemoUser:
    context: str  # also the client id at the issuer
    subject: str
    groups: tuple[str, ...]


USERS = (
    DemoUser("demo-agent", "agent-7@demo.l7proxy", ("ai-agents-readonly",)),
    DemoUser("demo-admin", "admin@demo.l7proxy", ("platform-admins",)),
)


def demo_policies(connection: str) -> list[dict[str, object]]:
    """The demo's two policies on `connection` (the end-to-end tests use them too): agents
    read everything but Secrets; platform admins may do anything."""
    return [
        {
            "name": "agents-readonly",
            "groups": ["ai-agents-readonly"],
            "connection": connection,
            "allow": [
                {
                    "verbs": ["get", "list", "watch"],
                    "api_groups": ["*"],
                    "resources": ["*"],
                    "namespaces": ["*"],
                },
                {
                    "verbs": ["get"],
                    "non_resource_urls": [
                        "/version",
                        "/version/",
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/openapi/*",
                    ],
                },
            ],
            "deny": [
                {"verbs": ["*"], "api_groups": [""], "resources": ["secrets"], "namespaces": ["*"]}
            ],
        },
        {
            "name": "platform-admins",
            "groups": ["platform-admins"],
            "connection": connection,
            "allow": [
                {"verbs": ["*"], "api_groups": ["*"], "resources": ["*"], "namespaces": ["*"]},
                {"verbs": ["*"], "non_resource_urls": ["*"]},
            ],
        },
    ]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path("demo"), help="where the demo writes (default: ./demo)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="the gateway's port (default: any free port)"
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 (one line on stderr) if it cannot start."""
    import trio  # the gateway's stack is loaded only for the demo, not for `login`

    from l7proxy.config.loader import ConfigError

    failure: str | None = None
    try:
        trio.run(partial(_demo, args.dir, args.port, sys.stdout))
    except* (OSError, ConfigError) as group:
        failure = "; ".join(str(exc) for exc in group.exceptions)
    except* KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        print("l7proxy demo: stopped", file=sys.stderr)
    if failure is not None:
        print(f"l7proxy demo: cannot start: {failure}", file=sys.stderr)
        return 1
    return 0


def _prepare(directory: Path) -> dict[str, Path]:
    """The folder and its fixed files: CA, TLS key pair, the cluster's token, fresh cache."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    shutil.rmtree(directory / "cache", ignore_errors=True)  # tokens from an earlier run's keys
    (directory / "recordings").mkdir(exist_ok=True)
    ca_pem, chain_pem, key_pem = _certificates()
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "gateway.pem",
        "key": directory / "gateway-key.pem",
        "cluster_token": directory / "cluster-token",
    }
    paths["ca"].write_bytes(ca_pem)
    paths["cert"].write_bytes(chain_pem)
    write_private(paths["key"], key_pem.decode())
    write_private(paths["cluster_token"], secrets.token_urlsafe(32) + "\n")
    return paths


async def _demo(directory: Path, port: int, out: TextIO) -> None:
    import structlog
    import trio

    from l7proxy.config.loader import load_config
    from l7proxy.config.settings import Limits
    from l7proxy.runtime.server import run_gateway
    from l7proxy.tools.devissuer import DevClient, DevIssuer
    from l7proxy.tools.sandbox import SandboxCluster
    from l7proxy.wire.listener import serve, server_ssl_context

    paths = _prepare(directory)
    # Service logs go to a file, so the terminal shows only what to try.
    with (directory / "l7proxy.log").open("a") as log_file:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=structlog.WriteLoggerFactory(file=log_file),
            cache_logger_on_first_use=True,
        )
        tls = partial(server_ssl_context, str(paths["cert"]), str(paths["key"]))
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                issuer = DevIssuer()
                for user in USERS:
                    secret = secrets.token_urlsafe(24)
                    write_private(directory / f"{user.context}.secret", secret + "\n")
                    issuer.add_client(DevClient(user.context, secret, user.subject, user.groups))
                await nursery.start(partial(issuer.serve, host=HOST, ssl_context=tls()))

                cluster_token = paths["cluster_token"].read_text().strip()
                cluster = SandboxCluster(tokens={cluster_token: CLUSTER_USER})
                bound = await nursery.start(
                    partial(
                        serve,
                        cluster.handle,
                        host=HOST,
                        port=0,
                        ssl_context=tls(),
                        limits=Limits(),
                    )
                )
                config_path = _write_config(directory, issuer.issuer, bound[0][1], port)
                bound = await nursery.start(run_gateway, load_config(config_path))
                gateway = f"https://{HOST}:{bound[0][1]}"
                _write_kubeconfig(directory, gateway, issuer.issuer, paths["ca"])
                out.write(_banner(directory, gateway, issuer.issuer))
                out.flush()
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    print("l7proxy demo: stopped", file=sys.stderr)


def _write_config(directory: Path, issuer: str, cluster_port: int, port: int) -> Path:
    config = {
        "listen": {
            "address": f"{HOST}:{port}",
            "tls": {"cert_file": "gateway.pem", "key_file": "gateway-key.pem"},
        },
        "workers": 1,
        "identity": {
            "providers": [
                {
                    "name": "demo-issuer",
                    "issuer": issuer,
                    "audiences": ["l7proxy"],
                    "username_claim": "sub",
                    "groups_claim": "groups",
                    "signing_algs": ["RS256", "ES256"],
                    "ca_file": "ca.pem",
                }
            ]
        },
        "connections": [
            {
                "name": CONNECTION,
                "type": "static",
                "server": f"https://{HOST}:{cluster_port}",
                "certificate_authority_file": "ca.pem",
                "token_file": "cluster-token",
            }
        ],
        "policies": demo_policies(CONNECTION),
        "audit": {"sink": "audit.jsonl", "recordings_dir": "recordings"},
    }
    path = directory / "gateway.yaml"
    header = "# Written by `l7proxy demo` for this run (the issuer and cluster ports change).\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def _write_kubeconfig(directory: Path, gateway: str, issuer: str, ca: Path) -> None:
    entries = [
        KubeconfigEntry(
            context=user.context,
            server=f"{gateway}/k8s/{CONNECTION}",
            ca_pem=ca.read_bytes(),
            login=LoginOptions(
                issuer=issuer,
                client_id=user.context,
                grant="client-credentials",
                ca_file=ca,
                client_secret_file=directory / f"{user.context}.secret",
                cache_dir=directory / "cache",
            ),
        )
        for user in USERS
    ]
    text = yaml.safe_dump(kubeconfig_document(entries), sort_keys=False)
    write_private(directory / "kubeconfig", text)


def _banner(directory: Path, gateway: str, issuer: str) -> str:
    kc = f"kubectl --kubeconfig {directory / 'kubeconfig'}"
    agent, admin = USERS
    return f"""\
l7proxy demo is running; Ctrl-C stops it. Everything is in {directory}/:
  gateway  {gateway}/k8s/{CONNECTION}   policies in {directory / "gateway.yaml"}
  mcp      {gateway}/mcp/{CONNECTION}   (MCP over Streamable HTTP, for AI agents)
  issuer   {issuer}   (development OIDC issuer, loopback only)
  users    {agent.context}: {agent.subject} in {", ".join(agent.groups)} (read-only)
           {admin.context}: {admin.subject} in {", ".join(admin.groups)}
  audit    {directory / "audit.jsonl"}, session recordings in {directory / "recordings"}/

Try:
  {kc} --context {agent.context} get pods
  {kc} --context {agent.context} delete pod web-1   # refused: read-only
  {kc} --context {agent.context} auth can-i delete pods
  {kc} --context {admin.context} get pods -w
"""


def _certificates() -> tuple[bytes, bytes, bytes]:
    """(CA PEM, leaf chain PEM, leaf key PEM) for 127.0.0.1 and localhost, valid 30 days."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "l7proxy demo CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "l7proxy demo")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca_pem, leaf.public_bytes(serialization.Encoding.PEM) + ca_pem, key_pem


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
