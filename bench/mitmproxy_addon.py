"""mitmproxy addon for the bench's Python peer (`mitmdump -s`; runs in bench/.peers, not in
the project's environment): what the nginx reference does to each request, no more.

Strips the connection prefix (`--set bench_prefix=/k8s/bench`), answers 404 outside it, and
replaces `Authorization` with the cluster token (`--set bench_token=...`).
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.addonmanager import Loader
from mitmproxy.ctx import options


class BenchRewrite:
    def load(self, loader: Loader) -> None:
        loader.add_option("bench_prefix", str, "", "connection prefix to strip")
        loader.add_option("bench_token", str, "", "cluster token to send upstream")

    def request(self, flow: http.HTTPFlow) -> None:
        prefix = options.bench_prefix
        path = flow.request.path
        if not path.startswith(prefix + "/"):
            flow.response = http.Response.make(404, b"not under the bench prefix")
            return
        flow.request.path = path[len(prefix) :]
        flow.request.headers["authorization"] = f"Bearer {options.bench_token}"


addons = [BenchRewrite()]
