"""The Nuclio handler of MomentSeg's CVAT interactor: one frame's mask from ``text_prompts``
(serverless/interactor/function.yaml, momentseg/interact.py, docs/deploy.md)."""

from momentseg.interact import InteractorService
from serverless.main import request_body, serve


def init_context(context):
    """Load the model once; a failed load is kept and reported as 503 on every request."""
    context.logger.info("loading MomentSeg (interactor)")
    interactor = InteractorService.from_env()
    if interactor.service.load_error:
        context.logger.error(f"model not loaded: {interactor.service.load_error}")
    context.user_data.interactor = interactor


def handler(context, event):
    interactor = context.user_data.interactor
    return serve(
        context, event, interactor.service.limits.max_body_bytes, lambda event: interactor.handle(request_body(event))
    )
