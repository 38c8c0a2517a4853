"""A tiny real HTTP server on 127.0.0.1 (random port) for tests, run in a background thread.

The stand-ins for OpenAI, Prometheus and Loki build on it: a test talks to them over real
sockets with the real clients (openai, httpx), so timeouts, status codes and headers are
exercised the way they are in production, and nothing reaches the internet. ``use_tls`` makes any
of them answer over HTTPS (tests/support/certs.py makes the certificates).
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow server)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


Handler = Callable[[Request], Reply]


class _Server(ThreadingHTTPServer):
    """A threading server that speaks TLS on accepted connections once ``ssl_context`` is set.

    The handshake runs in the request's thread (``do_handshake_on_connect=False``), so a client
    that refuses the certificate never blocks the accept loop; its failure is kept, not printed.
    """

    ssl_context: ssl.SSLContext | None = None
    tls_failures: list[BaseException]

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError)):
            self.tls_failures.append(error)
            return
        super().handle_error(request, client_address)


class StandinServer:
    """Serve ``handler`` until closed; every request is recorded in ``requests``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._stop = threading.Event()
        standin = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                standin.requests.append(request)
                reply = standin.handler(request)
                if reply.delay and standin._stop.wait(reply.delay):
                    return
                payload, content_type = reply.encoded()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": content_type, **reply.headers}
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.tls_failures = []
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def use_tls(self, cert: Path, key: Path, *, client_ca: Path | None = None) -> "StandinServer":
        """Answer over HTTPS with ``cert``/``key`` from now on (client certificates required with ``client_ca``)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        self._server.ssl_context = context
        return self

    @property
    def tls_failures(self) -> list[BaseException]:
        """Handshakes that failed on the server's side (a client refused the certificate, or had none)."""
        return self._server.tls_failures

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        scheme = "https" if self._server.ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}"

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "StandinServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a server that is down."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
