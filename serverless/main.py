"""The Nuclio handler CVAT's serverless platform runs (see function.yaml and docs/deploy.md)."""

import json

from momentseg.service import bearer_token, build_service_from_env


def init_context(context):
    """Load the model once per worker; a failed load is kept and reported as 503 on every request."""
    context.logger.info("loading MomentSeg")
    service = build_service_from_env()
    if service.load_error:
        context.logger.error(f"model not loaded: {service.load_error}")
    context.user_data.service = service
    context.logger.info("MomentSeg ready")


def _header(event, name):
    for key, value in (event.headers or {}).items():
        if str(key).lower() == name.lower():
            return value if isinstance(value, str) else str(value)
    return None


def _body_size(event):
    """The size of the body as sent: Nuclio may hand over JSON already parsed, so for a parsed body
    the declared length is taken, or else the length of the body written out again."""
    body = event.body
    if isinstance(body, (bytes, bytearray, str)):
        return len(body)
    declared = _header(event, "Content-Length")
    if declared is not None and declared.strip().isdigit():
        return int(declared)
    return len(json.dumps(body).encode())


def request_body(event):
    """The body as ``momentseg serve`` would read it, so both answer alike. Nuclio hands over the raw
    bytes, or, for a JSON content type, the parsed value: an object is the request; any other parsed
    value (a JSON string holding JSON, a list, a number) is written back so the service refuses it
    exactly as it refuses those bytes on ``serve``."""
    body = event.body
    if isinstance(body, (bytes, bytearray, dict)):
        return body
    return json.dumps(body).encode()


def _reply(context, status, body):
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return context.Response(body=json.dumps(body), headers=headers, content_type="application/json", status_code=status)


def serve(context, event, limit, handle):
    """Refuse a body that cannot be measured (400) or is over ``limit`` bytes (413) before any work, else
    reply with ``handle(event)``'s (status, body); every refusal is logged. Both functions' handlers."""
    try:
        size = _body_size(event)
    except (TypeError, ValueError, RecursionError):
        return _reply(
            context, 400, {"error": "malformed_json", "message": "the request body is nested too deeply or is not JSON"}
        )
    if size > limit:
        context.logger.warn(f"request refused (413): {size} bytes")
        return _reply(
            context,
            413,
            {
                "error": "request_too_large",
                "message": f"the request has {size} bytes; at most {limit} are accepted (MOMENTSEG_MAX_BODY_BYTES)",
            },
        )
    status, body = handle(event)
    if status >= 400:
        context.logger.warn(f"request refused ({status} {body['error']}): {body['message']}")
    return _reply(context, status, body)


def handler(context, event):
    service = context.user_data.service
    return serve(
        context,
        event,
        service.limits.max_body_bytes,
        lambda event: service.handle(request_body(event), token=bearer_token(_header(event, "Authorization"))),
    )
