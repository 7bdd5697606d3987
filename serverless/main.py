"""The Nuclio handler CVAT's serverless platform runs (see function.yaml and docs/deploy.md)."""

import json

from momentseg.service import build_service_from_env


def init_context(context):
    """Load the model once per worker; a failed load is kept and reported as 503 on every request."""
    context.logger.info("loading MomentSeg")
    service = build_service_from_env()
    if service.load_error:
        context.logger.error(f"model not loaded: {service.load_error}")
    context.user_data.service = service
    context.logger.info("MomentSeg ready")


def handler(context, event):
    status, body = context.user_data.service.handle(event.body)
    if status >= 400:
        context.logger.warn(f"request refused ({status} {body['error']}): {body['message']}")
    return context.Response(body=json.dumps(body), headers={}, content_type="application/json", status_code=status)
