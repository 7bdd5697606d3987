"""The webhook endpoint: ``POST /webhooks/cvat`` (CVAT's deliveries) and ``GET /webhooks/health``.

A delivery is checked in this order, and nothing is recorded or sent to CVAT until all pass: body size
(413), signature (401), JSON (400), the CVAT host it names (403). A ``create:comment`` carrying a command
is recorded once (202; a redelivery answers 200 ``duplicate``); every other event answers 200 ``ignored``.
The reply to CVAT goes out at once; checking the project and posting "queued" happen right after it.

``webhook_routes`` mounts beside ``momentseg serve``'s own routes (``routes_from_env``: when a webhook
secret is configured); ``create_webhook_app`` is the standalone companion (``momentseg webhooks serve``).
Both run on ``momentseg.serve``'s server and body reader, so they have its timeouts and refusals.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from momentseg.serve import HTTPError, ServeSettings, json_error, protected_app, read_body
from momentseg.webhooks.browser import runs_routes
from momentseg.webhooks.config import WebhookSettings
from momentseg.webhooks.delivery import (
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    comment_created,
    sender_host,
    signature_matches,
)
from momentseg.webhooks.queue import WebhookQueue
from momentseg.webhooks.runs import CvatRuns, record_for

log = logging.getLogger(__name__)


async def _delivery_body(request: Request, http: ServeSettings) -> bytes:
    """The body, read as every request to the server is (408 when it stops arriving), refused at the
    smaller of a delivery's limit and the server's (413) while it streams in."""
    limit = min(MAX_BODY_BYTES, http.max_body_bytes)
    try:
        return await read_body(request, dataclasses.replace(http, max_body_bytes=limit))
    except HTTPError as error:
        if error.status == 413:
            raise HTTPError(413, "delivery_too_large", f"a webhook delivery has at most {limit} bytes") from None
        raise


def webhook_routes(
    settings: WebhookSettings, queue: WebhookQueue, runs: CvatRuns, http: ServeSettings = ServeSettings()
) -> list[BaseRoute]:
    """``POST /webhooks/cvat`` and ``GET /webhooks/health``; ``http``: the server's limits and timeouts.
    Mount them in an app made by ``momentseg.serve`` (it answers their ``HTTPError``s as JSON)."""

    async def deliver(request: Request) -> JSONResponse:
        body = await _delivery_body(request, http)
        if not signature_matches(settings.secret, body, request.headers.get(SIGNATURE_HEADER)):
            return json_error(
                401,
                "bad_signature",
                f"the {SIGNATURE_HEADER} header is missing or does not match the "
                "body signed with this service's webhook secret; nothing was done",
            )
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            return json_error(
                400, "not_a_delivery", "the body is not a CVAT webhook delivery (a JSON object with an event)"
            )
        event = payload["event"]
        if event not in ("ping", "create:comment"):
            return JSONResponse({"ignored": event})
        host = sender_host(payload)
        if host not in settings.cvat_hosts:
            return json_error(
                403,
                "host_not_accepted",
                f"the delivery comes from CVAT host '{host}', not one of "
                f"{sorted(settings.cvat_hosts)}; nothing was done",
            )
        if event == "ping":
            return JSONResponse({"ok": True, "event": "ping"})
        comment = comment_created(payload, host)
        if comment is None:
            return json_error(400, "not_a_delivery", "the create:comment delivery has no comment id, issue and message")
        fields = record_for(comment)
        if fields is None:
            return JSONResponse({"ignored": "the comment is not a command"})
        try:
            record, new = await run_in_threadpool(queue.receive, comment.key, fields)
        except Exception as error:  # the queue's storage (SQLite file, Redis) is not available
            log.error(
                "delivery of %s not recorded: the queue failed (%s: %s)", comment.key, type(error).__name__, error
            )
            return json_error(
                503,
                "queue_unavailable",
                "the service's queue cannot record the command now; nothing "
                "was done (redeliver it from CVAT's webhook page later)",
            )
        if not new:
            return JSONResponse({"duplicate": comment.key, "state": record["state"]})
        return JSONResponse(
            {"accepted": comment.key, "state": record["state"]},
            status_code=202,
            background=BackgroundTask(runs.acknowledge, queue, record),
        )

    async def health(request: Request) -> JSONResponse:
        """Counts of runs by state for anyone; with the service token, also the queue's kind and who
        holds which run."""
        records = await run_in_threadpool(queue.records)
        answer: dict[str, Any] = {"runs": dict(Counter(r["state"] for r in records))}
        given = request.headers.get("authorization", "").encode()
        if settings.token and hmac.compare_digest(given, f"Bearer {settings.token}".encode()):
            answer.update(
                queue="redis" if settings.redis_url else "sqlite",
                pending_tasks=await run_in_threadpool(queue.huey.pending_count),
                running={r["key"]: r.get("worker") for r in records if r["state"] in ("running", "written")},
            )
        return JSONResponse(answer)

    return [Route("/webhooks/cvat", deliver, methods=["POST"]), Route("/webhooks/health", health, methods=["GET"])]


def create_webhook_app(
    settings: WebhookSettings,
    queue: WebhookQueue,
    runs: CvatRuns,
    http: ServeSettings = ServeSettings(),
    cvat_url: str | None = None,
) -> Starlette:
    """The standalone companion with ``momentseg serve``'s protections: the webhook routes, and with
    ``cvat_url`` (where the companion reaches CVAT) the browser's runs API."""
    routes = webhook_routes(settings, queue, runs, http)
    if cvat_url:
        routes += runs_routes(settings, queue, cvat_url, http)
    return protected_app(
        routes, http, hint="CVAT deliveries go to POST /webhooks/cvat, the browser's calls to /momentseg/api/"
    )


def routes_from_env(env: Mapping[str, str], http: ServeSettings) -> list[BaseRoute]:
    """The webhook routes for ``momentseg serve`` when a webhook secret is configured
    (MOMENTSEG_WEBHOOK_SECRET or _FILE), else none; the other settings are then required."""
    if not (env.get("MOMENTSEG_WEBHOOK_SECRET") or env.get("MOMENTSEG_WEBHOOK_SECRET_FILE")):
        return []
    from momentseg.webhooks.cli import build

    settings = WebhookSettings.from_env(env)
    queue, runs = build(settings, env=env)
    return webhook_routes(settings, queue, runs, http) + runs_routes(settings, queue, env["CVAT_HOST"], http)
