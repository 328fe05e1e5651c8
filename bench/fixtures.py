"""Files the benchmark serves and runs from: certificates, upstream documents, nginx and
gateway configurations. Everything lands in one temporary directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import trustme
import yaml

from l7proxy.tools.sandbox import discovery

CLUSTER_TOKEN = "bench-cluster-token"  # the proxies' credential towards the upstream
GROUP = "bench-readers"
PODS_PATH = "/api/v1/namespaces/default/pods"
LOG_PATH = "/api/v1/namespaces/default/pods/web-1/log"
DISCOVERY_PATHS = ("/api", "/apis", "/api/v1")
PREFIX = "/k8s/bench"  # the gateway's connection prefix; the reference nginx strips the same
H1_PREFIX = "/k8s/bench-h1"  # the same upstream documents, reached over HTTP/1.1 only
UPGRADE_PREFIX = "/k8s/upgrade"  # the upgrade scenario's connection, in front of upgrade_server.py


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path  # key and chain in one file
    key: Path


def make_certs(tmp: Path) -> Certs:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certs = Certs(tmp / "ca.pem", tmp / "server.pem", tmp / "server-key.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(certs.cert))
    leaf.private_key_pem.write_to_path(str(certs.key))
    (tmp / "cluster-token").write_text(CLUSTER_TOKEN + "\n")
    return certs


def _pod(name: str, uid: str, ip: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid,
            "resourceVersion": "48213",
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d4b9c8f6",
                    "uid": "5c1f2e8a-3b7d-4c0e-9a41-0f6b2d8e7c13",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "nodeName": "ip-10-0-1-23.ec2.internal",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "hostIP": "10.0.1.23",
            "startTime": "2024-05-01T12:00:02Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T12:00:09Z"}
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": True,
                    "restartCount": 0,
                    "image": "docker.io/library/nginx:1.27",
                    "state": {"running": {"startedAt": "2024-05-01T12:00:08Z"}},
                }
            ],
        },
    }


def pod_list() -> bytes:
    """A realistic PodList of about 2 KB (two running pods owned by a ReplicaSet)."""
    doc = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "48213"},
        "items": [
            _pod("web-7d4b9c8f6-2xk9q", "0b6f6a3e-6e0b-4f61-a1d5-2c3f8e9d7a01", "10.0.1.57"),
            _pod("web-7d4b9c8f6-8mz4t", "9e2d1c4b-7a85-4c36-b0e2-6d9f1a3c5b27", "10.0.1.91"),
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def write_documents(tmp: Path, stream_bytes: int) -> dict[str, Path]:
    """The upstream's documents by URL path, and the large log for the streaming scenario."""
    docroot = tmp / "docroot"
    docroot.mkdir()
    docs = {
        PODS_PATH: ("pods.json", pod_list()),
        "/api": ("api.json", json.dumps(discovery.api_versions()).encode()),
        "/apis": ("apis.json", json.dumps(discovery.api_group_list()).encode()),
        "/api/v1": ("api-v1.json", json.dumps(discovery.api_resource_list("", "v1")).encode()),
    }
    files: dict[str, Path] = {}
    for path, (name, body) in docs.items():
        files[path] = docroot / name
        files[path].write_bytes(body)
    files[LOG_PATH] = docroot / "web-1.log"
    _write_log(files[LOG_PATH], stream_bytes)
    return files


def _write_log(path: Path, size: int) -> None:
    line = b'2024-05-01T12:00:00.000000000Z 10.0.1.1 - - "GET /healthz HTTP/1.1" 200 2 "-"\n'
    block = line * (1024 * 1024 // len(line) + 1)
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = block[:remaining]
            out.write(chunk)
            remaining -= len(chunk)


def _nginx_common(tmp: Path, name: str, workers: int) -> tuple[str, str]:
    """The main-context and http-context lines both nginx configurations share."""
    temp = tmp / f"{name}-temp"
    temp.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes {workers};\n"
        "daemon off;\nmaster_process on;\n"
        f"pid {tmp}/{name}.pid;\n"
        f"error_log {tmp}/{name}-error.log warn;\n"
        "events { worker_connections 16384; }\n"
    ), (
        "access_log off;\n"
        + "".join(
            f"{kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + "keepalive_requests 100000000;\nkeepalive_timeout 300s;\n"
    )


def upstream_nginx_conf(
    tmp: Path, port: int, h1_port: int, certs: Certs, files: dict[str, Path]
) -> Path:
    """A TLS upstream serving the documents at their cluster paths: on `port` with h2 and
    HTTP/1.1, on `h1_port` with HTTP/1.1 only (no h2 in its ALPN)."""
    main, http = _nginx_common(tmp, "upstream", 2)
    locations = "".join(
        f"    location = {path} {{ alias {file}; }}\n"
        for path, file in files.items()
        if path != LOG_PATH
    )
    servers = "".join(
        "  server {\n"
        f"    listen 127.0.0.1:{listen};\n"
        f"    ssl_certificate {certs.cert};\n    ssl_certificate_key {certs.key};\n"
        "    default_type application/json;\n"
        f"{locations}"
        f"    location = {LOG_PATH} {{ default_type text/plain; alias {files[LOG_PATH]}; }}\n"
        "  }\n"
        for listen in (f"{port} ssl http2", f"{h1_port} ssl")
    )
    conf = main + "http {\n" + http + "sendfile on;\n" + servers + "}\n"
    path = tmp / "upstream.conf"
    path.write_text(conf)
    return path


def reference_nginx_conf(
    tmp: Path, port: int, upstream_port: int, upgrade_port: int, certs: Certs, workers: int
) -> Path:
    """The reference: nginx proxy_pass, TLS with h2 towards clients, pooled keep-alive TLS
    connections towards the upstream, the caller's Authorization replaced like the gateway
    does, and no response buffering (a Kubernetes API proxy must stream watches). Under
    UPGRADE_PREFIX, WebSocket-style upgrade proxying (any Upgrade token) to the upgrade
    server, over TLS on both sides like the gateway."""
    main, http = _nginx_common(tmp, "reference", workers)
    conf = (
        main + "http {\n" + http + "  upstream cluster {\n"
        f"    server 127.0.0.1:{upstream_port};\n"
        "    keepalive 64;\n    keepalive_requests 100000000;\n    keepalive_timeout 300s;\n"
        "  }\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port} ssl http2;\n"
        f"    ssl_certificate {certs.cert};\n    ssl_certificate_key {certs.key};\n"
        f"    location {PREFIX}/ {{\n"
        "      proxy_pass https://cluster/;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        f'      proxy_set_header Authorization "Bearer {CLUSTER_TOKEN}";\n'
        "      proxy_buffering off;\n"
        "      proxy_read_timeout 300s;\n"
        "      proxy_ssl_verify on;\n"
        f"      proxy_ssl_trusted_certificate {certs.ca};\n"
        "      proxy_ssl_name localhost;\n"
        "      proxy_ssl_session_reuse on;\n"
        "    }\n"
        f"    location {UPGRADE_PREFIX}/ {{\n"
        f"      proxy_pass https://127.0.0.1:{upgrade_port}/;\n"
        "      proxy_http_version 1.1;\n"
        "      proxy_set_header Upgrade $http_upgrade;\n"
        '      proxy_set_header Connection "upgrade";\n'
        f'      proxy_set_header Authorization "Bearer {CLUSTER_TOKEN}";\n'
        "      proxy_buffering off;\n"
        "      proxy_read_timeout 300s;\n"
        "      proxy_ssl_verify on;\n"
        f"      proxy_ssl_trusted_certificate {certs.ca};\n"
        "      proxy_ssl_name localhost;\n"
        "    }\n"
        "  }\n}\n"
    )
    path = tmp / "reference.conf"
    path.write_text(conf)
    return path


def gateway_conf(
    tmp: Path,
    name: str,
    *,
    port: int,
    upstream_port: int,
    issuer: str,
    workers: int,
    h1_upstream_port: int | None = None,
    policies: list[dict[str, object]] | None = None,
) -> Path:
    """The gateway with OIDC, policy and a file audit sink; connection `bench` (or whatever
    `name` says) reaches the upstream with a static token, and with `h1_upstream_port`
    connection `<name>-h1` reaches the HTTP/1.1-only upstream the same way. `policies`
    replace the one that lets group `bench-readers` read."""
    upstreams = {name: upstream_port}
    if h1_upstream_port is not None:
        upstreams[f"{name}-h1"] = h1_upstream_port
    config = {
        "listen": {
            "address": f"127.0.0.1:{port}",
            "tls": {"cert_file": "server.pem", "key_file": "server-key.pem"},
        },
        "workers": workers,
        "identity": {
            "providers": [
                {
                    "name": "bench-sso",
                    "issuer": issuer,
                    "audiences": ["l7proxy"],
                    "username_claim": "sub",
                    "groups_claim": "groups",
                    "signing_algs": ["RS256"],
                    "ca_file": "ca.pem",
                }
            ]
        },
        "connections": [
            {
                "name": connection,
                "type": "static",
                "server": f"https://127.0.0.1:{upstream}",
                "certificate_authority_file": "ca.pem",
                "token_file": "cluster-token",
            }
            for connection, upstream in upstreams.items()
        ],
        "policies": policies
        or [
            {
                "name": f"{connection}-readers",
                "groups": [GROUP],
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
                        "non_resource_urls": ["/version", "/api", "/api/*", "/apis", "/apis/*"],
                    },
                ],
                "deny": [
                    {
                        "verbs": ["*"],
                        "api_groups": [""],
                        "resources": ["secrets"],
                        "namespaces": ["*"],
                    }
                ],
            }
            for connection in upstreams
        ],
        "audit": {"sink": f"audit-{name}.jsonl"},
    }
    path = tmp / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def mitmproxy_command(
    mitmdump: Path, *, port: int, upstream_port: int, certs: Certs, addon: Path
) -> list[str]:
    """The Python peer: mitmdump in reverse-proxy mode towards the same upstream, TLS with
    the bench certificate towards clients (h2 and HTTP/1.1), the upstream verified against
    the bench CA, and `addon` rewriting the prefix and the credential like nginx does."""
    return [
        str(mitmdump), "--quiet",
        "--mode", f"reverse:https://127.0.0.1:{upstream_port}",
        "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--certs", f"*={certs.cert}",
        "--set", f"ssl_verify_upstream_trusted_ca={certs.ca}",
        "--set", "stream_large_bodies=64k",
        "--set", f"bench_prefix={PREFIX}",
        "--set", f"bench_token={CLUSTER_TOKEN}",
        "-s", str(addon),
    ]  # fmt: skip
