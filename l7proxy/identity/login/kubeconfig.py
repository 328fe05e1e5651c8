"""`l7proxy kubeconfig`: a kubeconfig whose only credential is the `l7proxy login` plugin.

The cluster entry names the gateway (`<gateway>/k8s/<connection>`) and the gateway's CA; the
user entry runs `l7proxy login` for a token from the identity provider. Nothing in the file
reaches the cluster by itself, which is the point: an agent given this file holds no cluster
credential, and a client secret stays in its own file (`--client-secret-file`), not here.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from l7proxy.identity.login.command import (
    LoginOptions,
    add_grant_arguments,
    grant_options,
)
from l7proxy.identity.login.http import LoginError, check_url

EXEC_API_VERSIONS = ("v1", "v1beta1")  # lightkube reads only v1beta1; login answers both
INSTALL_HINT = "l7proxy login is part of l7proxy (pip install l7proxy); see its README."


@dataclass(frozen=True, slots=True)
class KubeconfigEntry:
    """One context: a cluster (the gateway connection) and a user (the login plugin)."""

    context: str
    server: str
    ca_pem: bytes | None
    login: LoginOptions
    open_browser: bool = True
    tls_server_name: str | None = None  # the name to verify and send as SNI, when not the URL's
    exec_api_version: str = "v1"


def plugin_command() -> list[str]:
    """How to run this very l7proxy again: its entry point script when that is what runs
    (absolute, so kubectl need not find it on PATH), else this interpreter with `-m`."""
    script = Path(sys.argv[0])
    if script.name == "l7proxy" and script.is_file() and os.access(script, os.X_OK):
        return [str(script.absolute())]
    return [sys.executable, "-m", "l7proxy"]


def login_args(options: LoginOptions, *, open_browser: bool = True) -> list[str]:
    """`login …` arguments reproducing `options`; paths absolute, since kubectl runs the
    plugin from whatever directory the user is in."""
    args = ["login", "--issuer", options.issuer, "--client-id", options.client_id]
    args += ["--grant", options.grant]
    if options.scopes:
        args += ["--scope", " ".join(options.scopes)]
    for flag, value in (("--audience", options.audience), ("--resource", options.resource)):
        if value:
            args += [flag, value]
    for flag, path in (
        ("--ca-file", options.ca_file),
        ("--client-secret-file", options.client_secret_file),
        ("--private-key-file", options.private_key_file),
        ("--cache-dir", options.cache_dir),
    ):
        if path is not None:
            args += [flag, str(path.absolute())]
    if options.key_id:
        args += ["--key-id", options.key_id]
    if options.use != "auto":
        args.append(f"--use-{options.use}-token")
    if not open_browser:
        args.append("--no-browser")
    return args


def kubeconfig_document(entries: Sequence[KubeconfigEntry]) -> dict[str, object]:
    """A kubeconfig with one context per entry; the first is the current one."""
    command = plugin_command()
    clusters, users, contexts = [], [], []
    for entry in entries:
        cluster: dict[str, object] = {"server": entry.server}
        if entry.ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(entry.ca_pem).decode()
        if entry.tls_server_name is not None:
            cluster["tls-server-name"] = entry.tls_server_name
        clusters.append({"name": entry.context, "cluster": cluster})
        users.append(
            {
                "name": entry.context,
                "user": {
                    "exec": {
                        "apiVersion": f"client.authentication.k8s.io/{entry.exec_api_version}",
                        "command": command[0],
                        "args": [
                            *command[1:],
                            *login_args(entry.login, open_browser=entry.open_browser),
                        ],
                        "interactiveMode": (
                            "Never" if entry.login.grant == "client-credentials" else "IfAvailable"
                        ),
                        "provideClusterInfo": False,
                        "installHint": INSTALL_HINT,
                    }
                },
            }
        )
        contexts.append(
            {"name": entry.context, "context": {"cluster": entry.context, "user": entry.context}}
        )
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": entries[0].context if entries else "",
        "preferences": {},
    }


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), replacing any earlier one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def gateway_server(gateway: str, connection: str) -> str:
    check_url(gateway, "--gateway")
    if not connection or "/" in connection or connection in (".", ".."):
        raise LoginError(f"--connection must be a connection's name, not {connection!r}")
    if urlsplit(gateway).path.rstrip("/"):
        raise LoginError(f"--gateway is the gateway's base URL, without a path: {gateway!r}")
    return f"{gateway.rstrip('/')}/k8s/{connection}"


def host_server(gateway: str, connection: str, host_suffix: str | None) -> tuple[str, str | None]:
    """`--routing host`: the server URL `https://<connection><host_suffix>[:port]`, and the
    `tls-server-name` to send when the gateway is reached by IP address.

    Without `--host-suffix`, the gateway's own host name is the suffix:
    `--gateway https://k8s.example.com` gives `https://dev.k8s.example.com`.
    """
    gateway_server(gateway, connection)  # the same checks as for path routing
    parts = urlsplit(gateway)
    host = parts.hostname or ""
    by_ip = _is_ip(host)
    if host_suffix is None:
        if by_ip:
            raise LoginError(
                "--routing host with an IP address in --gateway needs --host-suffix "
                "(the routing.host_suffix of the gateway's configuration)"
            )
        host_suffix = "." + host
    if not host_suffix.startswith(".") or len(host_suffix) < 2:
        raise LoginError(
            f'--host-suffix must start with ".", e.g. ".k8s.example.com": {host_suffix!r}'
        )
    name = connection + host_suffix.lower()
    if by_ip:
        return gateway.rstrip("/"), name
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{name}{port}", None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def read_ca(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoginError(f"cannot read --ca-file {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise LoginError(f"--ca-file {path} holds no PEM certificate")
    return data


def add_kubeconfig_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="the gateway's URL, e.g. https://gw:8443")
    parser.add_argument("--connection", required=True, help="the connection's name")
    parser.add_argument("--issuer", required=True, help="the OpenID issuer URL (exact `iss`)")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--ca-file", type=Path, help="the gateway's CA (PEM), embedded")
    parser.add_argument(
        "--routing",
        choices=("path", "host"),
        default="path",
        help="path: server GATEWAY/k8s/CONNECTION (default); host: https://CONNECTION<suffix>",
    )
    parser.add_argument(
        "--host-suffix",
        help='with --routing host: the gateway\'s routing.host_suffix (default: "." + its host)',
    )
    add_grant_arguments(parser, issuer_ca_flag="--issuer-ca-file")
    parser.add_argument(
        "--no-browser", dest="open_browser", action="store_false", help="passed to login"
    )
    parser.add_argument(
        "--exec-api-version",
        choices=EXEC_API_VERSIONS,
        default="v1",
        help="the exec credential API version (default v1; v1beta1 for lightkube)",
    )
    parser.add_argument("--context", help="the context's name (default: l7proxy-CONNECTION)")
    parser.add_argument(
        "--output", type=Path, help="write here (mode 0600) instead of to stdout", metavar="FILE"
    )


def entry_from_args(args: argparse.Namespace) -> KubeconfigEntry:
    """The context the options describe; a `LoginError` for anything that would not work."""
    check_url(args.issuer, "--issuer")
    for flag, path in (
        ("--issuer-ca-file", args.issuer_ca_file),
        ("--client-secret-file", args.client_secret_file),
        ("--private-key-file", args.private_key_file),
    ):
        if path is not None and not path.is_file():
            raise LoginError(f"{flag} {path} is not a file")
    if args.client_secret_file and args.private_key_file:
        raise LoginError("give only one of --client-secret-file, --private-key-file")
    if args.grant == "client-credentials" and not (
        args.client_secret_file or args.private_key_file
    ):
        raise LoginError(
            "--grant client-credentials needs --client-secret-file or --private-key-file"
        )
    if args.routing == "host":
        server, tls_server_name = host_server(args.gateway, args.connection, args.host_suffix)
    elif args.host_suffix is not None:
        raise LoginError("--host-suffix goes with --routing host")
    else:
        server, tls_server_name = gateway_server(args.gateway, args.connection), None
    return KubeconfigEntry(
        context=args.context or f"l7proxy-{args.connection}",
        server=server,
        tls_server_name=tls_server_name,
        ca_pem=read_ca(args.ca_file) if args.ca_file else None,
        login=grant_options(args),
        open_browser=args.open_browser,
        exec_api_version=args.exec_api_version,
    )


def run_kubeconfig(args: argparse.Namespace) -> int:
    """The `kubeconfig` subcommand: the file (or stdout), or one line on stderr and 1."""
    try:
        entry = entry_from_args(args)
    except LoginError as exc:
        print(f"l7proxy kubeconfig: {exc}", file=sys.stderr)
        return 1
    text = yaml.safe_dump(kubeconfig_document([entry]), sort_keys=False)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        write_private(args.output, text)
    except OSError as exc:
        print(f"l7proxy kubeconfig: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (context {entry.context})", file=sys.stderr)
    return 0
