"""``momentseg serve``: the function's service on uvicorn (h11) and Starlette, with the same request
and response as the Nuclio function.

What a production server does, and what a hostile client cannot get around: the request head must
arrive within ``header_timeout_s``, the body within ``read_timeout_s`` of silence and
``body_timeout_s`` in all; the body is refused at ``max_body_bytes`` while it streams in; a request
carrying both ``Content-Length`` and ``Transfer-Encoding`` is refused (request smuggling); at most
``max_pending`` requests are admitted at once, holding at most ``max_buffered_bytes`` of segment
request bodies together (docs/deploy.md states the memory this bounds); every answer, protocol errors
included, is JSON; no CORS headers. Requests are checked completely before they queue for the model, and a request whose
caller leaves or whose deadline passes gives the model back at the next frame.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from momentseg.errors import InvalidInputError
from momentseg.limits import numbers_from_env

if TYPE_CHECKING:  # the service module loads the model's code (torch): the webhook companion runs without it
    from momentseg.service import SegmentService
    from momentseg.service_runs import TaskRuns

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # request line and headers together, as h11 and most servers default
MAX_TARGET_BYTES = 8 * 1024  # the URL, as nginx's default header buffer
LINGER_S = 2.0  # after an early answer, how long what the client still sends is read and dropped;
# also how long a closing connection may make no progress sending its last answer before it is cut


@dataclass(frozen=True)
class ServeSettings:
    """Limits and timeouts of the HTTP layer (the service's own limits are in ``service.Limits``)."""

    max_body_bytes: int = 1 << 30
    header_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    body_timeout_s: float = 600.0
    keep_alive_s: float = 5.0
    max_pending: int = 32  # requests admitted at once: bodies in memory, or waiting for the model
    # segment bodies held at once, all requests together: what bounds memory, not max_pending × max_body
    max_buffered_bytes: int = 2 << 30

    ENV: ClassVar[Mapping[str, str]] = {
        "max_body_bytes": "MOMENTSEG_MAX_BODY_BYTES",
        "header_timeout_s": "MOMENTSEG_HEADER_TIMEOUT",
        "read_timeout_s": "MOMENTSEG_READ_TIMEOUT",
        "body_timeout_s": "MOMENTSEG_BODY_TIMEOUT",
        "keep_alive_s": "MOMENTSEG_KEEP_ALIVE_TIMEOUT",
        "max_pending": "MOMENTSEG_MAX_PENDING",
        "max_buffered_bytes": "MOMENTSEG_MAX_BUFFERED_BYTES",
    }

    def __post_init__(self) -> None:
        if self.max_buffered_bytes < self.max_body_bytes:
            raise InvalidInputError(
                f"MOMENTSEG_MAX_BUFFERED_BYTES ({self.max_buffered_bytes}) must be at least "
                f"MOMENTSEG_MAX_BODY_BYTES ({self.max_body_bytes}): one request must fit"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServeSettings:
        return cls(**numbers_from_env(cls, env))


class BodyBudget:
    """Request body bytes held by all admitted requests together; a body that would go past ``limit``
    while it streams in is refused (503 busy) before more of it is read."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def take(self, count: int) -> None:
        if self.held + count > self.limit:
            raise HTTPError(
                503,
                "busy",
                f"other requests hold {self.held} bytes of the {self.limit} this server "
                "buffers (MOMENTSEG_MAX_BUFFERED_BYTES): try again later",
                {"Retry-After": "30"},
            )
        self.held += count

    def give(self, count: int) -> None:
        self.held -= count


class HTTPError(Exception):
    """A refusal an endpoint answers with ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, dict(headers or {})


class ClientGone(Exception):
    """The caller closed the connection; nobody is left to answer."""


def json_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=dict(headers or {}))


async def read_body(request: Request, settings: ServeSettings, budget: BodyBudget | None = None) -> bytes:
    """The request body, streamed and refused at ``settings.max_body_bytes`` (413) or past ``budget``
    (503) before more is read, or when it stops arriving (408). What was taken from ``budget`` is the
    caller's to give back once the body is no longer held; on a refusal it is given back here."""
    limit = settings.max_body_bytes
    too_large = HTTPError(
        413, "request_too_large", f"the request has more than {limit} bytes (MOMENTSEG_MAX_BODY_BYTES)"
    )
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:  # h11 has checked it is a number
        raise too_large
    body = bytearray()
    deadline = time.monotonic() + settings.body_timeout_s
    try:
        while True:
            wait = min(settings.read_timeout_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(request.receive(), max(wait, 0.0))
            except TimeoutError:
                raise HTTPError(
                    408,
                    "request_timeout",
                    f"the request body did not arrive in time (at most "
                    f"{settings.read_timeout_s:g} s between parts, "
                    f"{settings.body_timeout_s:g} s in all)",
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            part = message.get("body", b"")
            if len(body) + len(part) > limit:
                raise too_large
            if budget is not None:
                budget.take(len(part))
            body += part
            if not message.get("more_body", False):
                return bytes(body)
    except BaseException:
        if budget is not None:
            budget.give(len(body))
        raise


async def _disconnected(request: Request) -> None:
    """Return once the caller has gone (after the body was read, ``receive`` only reports that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _first(awaitable, gone: asyncio.Future, timeout: float | None = None):
    """``awaitable``'s task once done; raises ClientGone or TimeoutError first if that comes first."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task
    task.cancel()
    raise ClientGone() if gone in done else TimeoutError()


def _segment_endpoint(service: SegmentService, settings: ServeSettings):
    from momentseg.service import RequestError, bearer_token

    model_lock = asyncio.Lock()  # waiters hold no thread; the service's own lock is then free
    budget = BodyBudget(settings.max_buffered_bytes)

    async def segment(request: Request) -> JSONResponse:
        token = bearer_token(request.headers.get("authorization"))
        body = await read_body(request, settings, budget)
        try:
            return await _answer(request, token, body)
        finally:
            budget.give(len(body))

    async def _answer(request: Request, token: str | None, body: bytes) -> JSONResponse:
        started = time.monotonic()
        deadline = started + service.limits.request_timeout_s
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            job = await run_in_threadpool(service.prepare, body, token=token)
            try:
                acquired = await _first(model_lock.acquire(), gone, timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise RequestError(
                    503,
                    "busy",
                    f"the model was busy with other requests for "
                    f"{service.limits.request_timeout_s:g} s: try again later",
                    headers={"Retry-After": "30"},
                ) from None
            await acquired
            try:
                cancel = threading.Event()
                work = asyncio.ensure_future(run_in_threadpool(service.execute, job, cancel=cancel, deadline=deadline))
                done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
                if work not in done:
                    cancel.set()  # the run stops at its next frame; the model is free once it has
                result = await work
            finally:
                model_lock.release()
        except (ClientGone, asyncio.CancelledError):
            raise
        except Exception as error:
            status, answer = service.error_response(error)
            log.info("request refused (%d %s): %s", status, answer["error"], answer["message"])
            return JSONResponse(answer, status_code=status, headers=getattr(error, "headers", None))
        finally:
            gone.cancel()
        log.info("segmented %d frames in %.1f s", result["num_frames"], time.monotonic() - started)
        return JSONResponse(result)

    return segment


def _run_routes(runs: TaskRuns, settings: ServeSettings) -> list[Route]:
    """Task runs as a resource (momentseg.service_runs): ``POST /runs`` submits (202 and the run),
    ``GET /runs/{id}`` polls, ``GET /runs/{id}/result`` fetches, ``DELETE /runs/{id}`` cancels."""
    from momentseg.service import bearer_token

    service = runs.service

    def answering(call):
        async def endpoint(request: Request) -> JSONResponse:
            token = bearer_token(request.headers.get("authorization"))
            try:
                status, answer, headers = await call(request, token)
            except HTTPError:
                raise  # the body's own refusals (size, time), answered by the app
            except Exception as error:
                status, answer = service.error_response(error)
                log.info("run request refused (%d %s): %s", status, answer["error"], answer["message"])
                return JSONResponse(answer, status_code=status, headers=getattr(error, "headers", None))
            return JSONResponse(answer, status_code=status, headers=headers)

        return endpoint

    async def submit(request: Request, token):
        run = await run_in_threadpool(runs.submit, await read_body(request, settings), token)
        return 202, run.status(), {"Location": f"/runs/{run.id}"}

    async def poll(request: Request, token):
        return 200, runs.get(request.path_params["run_id"], token).status(), None

    async def result(request: Request, token):
        return 200, runs.take_result(request.path_params["run_id"], token), None

    async def cancel(request: Request, token):
        return 200, runs.cancel(request.path_params["run_id"], token).status(), None

    return [
        Route("/runs", answering(submit), methods=["POST"]),
        Route("/runs/{run_id}", answering(poll), methods=["GET"]),
        Route("/runs/{run_id}", answering(cancel), methods=["DELETE"]),
        Route("/runs/{run_id}/result", answering(result), methods=["GET"]),
    ]


def create_app(
    service: SegmentService, settings: ServeSettings = ServeSettings(), *, routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """``POST /`` segments, ``GET /health`` reports whether the model is loaded, ``/runs`` holds task
    runs; ``routes`` are mounted beside them (their endpoints may use ``read_body`` and raise ``HTTPError``)."""

    async def health(request: Request) -> JSONResponse:
        ready = service.pipeline is not None
        return JSONResponse({"ready": ready, "error": service.load_error}, status_code=200 if ready else 503)

    from momentseg.service_runs import TaskRuns

    runs = TaskRuns(service)
    app = protected_app(
        [
            Route("/", _segment_endpoint(service, settings), methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            *_run_routes(runs, settings),
            *routes,
        ],
        settings,
    )
    app.state.service = service
    app.state.runs = runs
    return app


def protected_app(
    routes: Sequence[BaseRoute], settings: ServeSettings, *, hint: str = "POST a request to / (see docs/api.md)"
) -> Starlette:
    """A Starlette app of ``routes`` with this server's protections: every error (404, 405, ``HTTPError``,
    an endpoint's crash) answered as JSON without internals, and the ``max_pending`` admission limit.
    ``hint`` tells a caller of an unknown path where to go."""

    async def http_exception(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = {404: f"no such endpoint: {hint}", 405: f"{request.method} is not allowed here"}.get(
            error.status_code, str(error.detail)
        )
        return json_error(error.status_code, code, message, error.headers)

    async def refusal(request: Request, error: HTTPError) -> JSONResponse:
        return json_error(error.status, error.code, error.message, error.headers)

    async def internal(request: Request, error: Exception) -> JSONResponse:  # Starlette then logs the trace
        return json_error(
            500, "internal_error", f"internal error ({type(error).__name__}); the server's log has the details"
        )

    # Starlette calls each handler with its own exception class (its annotation names only Exception)
    handlers: dict[type[Exception], Callable[..., Awaitable[JSONResponse]]] = {
        HTTPException: http_exception,
        HTTPError: refusal,
        Exception: internal,
    }
    app = Starlette(
        routes=list(routes),
        exception_handlers=handlers,
        middleware=[Middleware(_Admission, settings=settings)],
    )
    app.router.redirect_slashes = False
    app.state.settings = settings
    return app


class _Admission:
    """ASGI wrapper: at most ``max_pending`` requests at once, a caller that left or stopped reading
    for ``read_timeout_s`` is not answered, and ``Connection: close`` on an answer sent before its
    request's body was read (the rest is never read)."""

    def __init__(self, app, settings: ServeSettings):
        self.app = app
        self.settings = settings
        self.pending = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        body_read = {"done": headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers}

        async def tracked_receive():
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read["done"] = True
            return message

        async def closing_send(message) -> None:
            if message["type"] == "http.response.start" and not body_read["done"]:
                message = dict(message, headers=[*message.get("headers", []), (b"connection", b"close")])
            try:
                await asyncio.wait_for(send(message), self.settings.read_timeout_s)
            except TimeoutError:
                raise ClientGone() from None

        if self.pending >= self.settings.max_pending:
            response = json_error(
                503, "busy", f"{self.pending} requests are in progress: try again later", {"Retry-After": "5"}
            )
            return await response(scope, tracked_receive, closing_send)
        self.pending += 1
        try:
            await self.app(scope, tracked_receive, closing_send)
        except ClientGone:
            pass
        finally:
            self.pending -= 1


def _json_head(status: int, code: str, message: str) -> bytes:
    """A whole JSON response, for answers written below h11 (no request was parsed)."""
    body = json.dumps({"error": code, "message": message}).encode()
    reason = {
        400: "Bad Request",
        408: "Request Timeout",
        414: "URI Too Long",
        431: "Request Header Fields Too Large",
        501: "Not Implemented",
    }[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


class _StrictConnection(h11.Connection):
    """h11 plus the checks it leaves to servers: Content-Length beside Transfer-Encoding is refused
    (RFC 9112 §6.1 allows either reading; a proxy in front may pick the other one), and a head that
    arrived whole is held to the same size limits as one that arrives in parts."""

    def next_event(self):
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            if error.error_status_hint == 431:  # h11 says "Receive buffer too long"
                self._refuse(f"the request head is longer than {MAX_HEAD_BYTES} bytes", 431)
            self.refusal = error
            raise
        if isinstance(event, h11.Request):
            names = {name.lower() for name, _ in event.headers}
            if {b"content-length", b"transfer-encoding"} <= names:
                self._refuse("Content-Length and Transfer-Encoding together", 400)
            if len(event.target) > MAX_TARGET_BYTES:
                self._refuse(f"the URL is longer than {MAX_TARGET_BYTES} bytes", 414)
            if sum(len(name) + len(value) + 4 for name, value in event.headers) > MAX_HEAD_BYTES:
                self._refuse(f"the request headers are longer than {MAX_HEAD_BYTES} bytes", 431)
        return event

    def _refuse(self, message: str, status: int):
        self.refusal = h11.RemoteProtocolError(message, status)
        raise self.refusal


class _LingeringTransport:
    """A transport whose ``close`` first half-closes and drops what the client is still sending for
    ``LINGER_S``, so a client that is mid-upload reads the 413 instead of a reset (nginx's lingering close)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self.lingering = False

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        self.lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._transport.resume_reading()
        self._loop.call_later(LINGER_S, self._close_when_sent, self._transport.get_write_buffer_size())

    def _close_when_sent(self, unsent_before: int) -> None:
        """Close once the answer is out; cut a client that stopped reading it."""
        unsent = self._transport.get_write_buffer_size()
        if unsent == 0 or self._transport.is_closing():
            self._transport.close()
        elif unsent < unsent_before:
            self._loop.call_later(LINGER_S, self._close_when_sent, unsent)
        else:
            self._transport.abort()


class StrictH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head, JSON protocol errors and a
    lingering close."""

    def __init__(self, *args, head_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn = _StrictConnection(h11.SERVER, MAX_HEAD_BYTES)
        self.head_timeout_s = head_timeout_s
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_line_seen = False

    def connection_made(self, transport) -> None:
        self.lingering_transport = _LingeringTransport(transport, self.loop)
        # duck-typed: what the wrapper does not change it forwards to the transport
        super().connection_made(cast(asyncio.Transport, self.lingering_transport))
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.lingering_transport.lingering:
            return
        waiting_for_head = self.conn.their_state is h11.IDLE
        if waiting_for_head:
            self.head_line_seen = self.head_line_seen or b"\n" in data
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and waiting_for_head:
            self._arm_head_timer()
        else:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            self.head_line_seen = False

    def connection_lost(self, exc) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.write(
                _json_head(408, "request_timeout", f"the request head did not arrive in {self.head_timeout_s:g} s")
            )
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        error = getattr(self.conn, "refusal", None)
        status = error.error_status_hint if error is not None else 400
        if status == 431 and not self.head_line_seen:  # h11 ran out of buffer inside the request line
            status, message = 414, f"the request line is longer than {MAX_HEAD_BYTES} bytes"
        elif status in (414, 431):
            message = str(error)
        else:
            status = status if status == 501 else 400
            message = f"malformed HTTP request: {error or msg}"
        self.logger.info("refused a malformed request: %s", message)
        code = {400: "bad_request", 501: "unsupported_request"}.get(status, "request_too_large")
        self.transport.write(_json_head(status, code, message))
        self.transport.close()


def make_server(
    app, host: str | socket.socket = "127.0.0.1", port: int = 8080, settings: ServeSettings = ServeSettings()
) -> uvicorn.Server:
    """A uvicorn server for ``app``; ``host`` may be a bound socket (then ``port`` is ignored).
    Run it with ``server.run(sockets=[sock])`` for a socket, ``server.run()`` otherwise."""
    config = uvicorn.Config(
        app,
        host=host if isinstance(host, str) else "127.0.0.1",
        port=port,
        lifespan="auto",
        # uvicorn calls ``http`` as a protocol factory; its annotation names only classes and names
        http=functools.partial(StrictH11Protocol, head_timeout_s=settings.header_timeout_s),  # type: ignore[arg-type]
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        server_header=False,
        date_header=True,
        log_config=None,
        ws="none",
        proxy_headers=False,
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the address is known before serving starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
