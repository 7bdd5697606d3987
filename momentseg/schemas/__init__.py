"""The request JSON Schema of the function and ``momentseg serve``."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def request_schema() -> dict[str, Any]:
    """segment_request.schema.json (the request's prompt, frames, task and anchors) with the method options'
    properties derived from their declarations (momentseg.options)."""
    from momentseg.options import request_properties

    schema = json.loads(resources.files(__name__).joinpath("segment_request.schema.json").read_text())
    schema["properties"].update(request_properties())
    return schema
