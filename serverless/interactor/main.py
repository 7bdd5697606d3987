"""The Nuclio handler of MomentSeg's CVAT interactor: one frame's mask from ``text_prompts``
(serverless/interactor/function.yaml, momentseg/interact.py, docs/deploy.md)."""

from momentseg.interact import InteractorService
from serverless.main import _body_size, _reply


def init_context(context):
    """Load the model once; a failed load is kept and reported as 503 on every request."""
    context.logger.info("loading MomentSeg (interactor)")
    interactor = InteractorService.from_env()
    if interactor.service.load_error:
        context.logger.error(f"model not loaded: {interactor.service.load_error}")
    context.user_data.interactor = interactor


def handler(context, event):
    interactor = context.user_data.interactor
    limit = interactor.service.limits.max_body_bytes
    try:
        size = _body_size(event)
    except (TypeError, ValueError, RecursionError):
        return _reply(context, 400, {"error": "malformed_json", "message": "the request body is nested too deeply "
                                     "or is not JSON"})
    if size > limit:
        return _reply(context, 413, {"error": "request_too_large", "message": f"the request has {size} bytes; at "
                                     f"most {limit} are accepted (MOMENTSEG_MAX_BODY_BYTES)"})
    status, body = interactor.handle(event.body)
    if status >= 400:
        context.logger.warn(f"request refused ({status} {body['error']}): {body['message']}")
    return _reply(context, status, body)
