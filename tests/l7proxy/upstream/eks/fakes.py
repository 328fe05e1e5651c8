"""Test doubles: a scriptable STS, a hand-moved wall clock, a TLS cluster answering /version."""

from __future__ import annotations

import json
import ssl
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import h11
import trio


class FakeClock:
    """Wall-clock seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_CREDENTIALS = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials>
<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>fake-secret-{n}</SecretAccessKey>
<SessionToken>fake-session-token-{n}</SessionToken><Expiration>{expiration}</Expiration>
</Credentials><AssumedRoleUser><AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>
<Arn>arn:aws:sts::123456789012:assumed-role/fake/{session}</Arn></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>r{n}</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""
_ERROR = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
<RequestId>e{n}</RequestId></ErrorResponse>"""


class FakeSts:
    """An STS on loopback that answers AssumeRole as told: with credentials living
    `lifetime` seconds, or with `error` = (status, code, message); after `delay` seconds.
    `requests` records every call's form parameters."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.error: tuple[int, str, str] | None = None
        self.delay = 0.0
        self.lifetime = 3600.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                params = dict(parse_qsl(self.rfile.read(length).decode()))
                fake.requests.append(params)
                n = len(fake.requests)
                time.sleep(fake.delay)
                if fake.error is None:
                    expiration = datetime.fromtimestamp(time.time() + fake.lifetime, UTC)
                    status, body = (
                        200,
                        _CREDENTIALS.format(
                            key=f"ASIAFAKE{n:08d}",
                            n=n,
                            session=params.get("RoleSessionName", ""),
                            expiration=expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        ),
                    )
                else:
                    status, code, message = fake.error
                    body = _ERROR.format(code=code, message=message, n=n)
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "text/xml")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up mid-answer is expected in these tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class FakeCluster:
    """An HTTPS server answering GET /version; records each request's headers."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self.ssl_context = ssl_context
        self.seen: list[dict[bytes, bytes]] = []
        self.status = 200
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_ssl_over_tcp_listeners(0, self.ssl_context, host="127.0.0.1")
        tcp = listeners[0].transport_listener
        assert isinstance(tcp, trio.SocketListener)
        self.port = tcp.socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(bytes(data))
                    continue
                if isinstance(event, h11.Request):
                    self.seen.append({bytes(k): bytes(v) for k, v in event.headers})
                elif isinstance(event, h11.EndOfMessage):
                    body = json.dumps({"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
                    if self.status != 200:
                        body = json.dumps({"kind": "Status", "message": "Unauthorized"})
                    for out in (
                        h11.Response(
                            status_code=self.status,
                            headers=[("content-type", "application/json")],
                        ),
                        h11.Data(data=body.encode()),
                        h11.EndOfMessage(),
                    ):
                        await stream.send_all(conn.send(out) or b"")
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (trio.BrokenResourceError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)
