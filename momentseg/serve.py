"""``momentseg serve``: the function's service behind a local HTTP server (same request and response)."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from momentseg.service import SegmentService

log = logging.getLogger(__name__)


def make_server(service: SegmentService, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """An HTTP server answering ``POST /`` with the service and ``GET /health`` with its state.

    Requests are accepted concurrently and queue on the service's lock, one at a time on the model.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/health":
                ready = service.pipeline is not None
                self._reply(200 if ready else 503, {"ready": ready, "error": service.load_error})
            else:
                self._reply(404, {"error": "not_found", "message": "POST a request to / (see docs/api.md)"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") not in ("", "/"):
                self._reply(404, {"error": "not_found", "message": "POST requests go to /"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._reply(411, {"error": "length_required", "message": "send a Content-Length header"})
                return
            if length > service.limits.max_body_bytes:
                self._discard(length)
                self._reply(413, {"error": "request_too_large", "message": f"the request has {length} bytes; at "
                                  f"most {service.limits.max_body_bytes} are accepted"})
                return
            status, body = service.handle(self.rfile.read(length))
            self._reply(status, body)

        def _discard(self, length: int) -> None:
            """Read and drop an oversized body in chunks, so the client sees the 413, not a broken pipe."""
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.info("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
