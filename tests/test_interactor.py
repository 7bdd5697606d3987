"""The CVAT interactor (serverless/interactor): one frame's mask from text, through nuclio-sdk's test
platform on the tiny model; its function.yaml read the way CVAT reads it."""

import base64
import json
from pathlib import Path

import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest
import yaml

from momentseg.interact import MAX_PROMPTS, InteractorService, segment_image
from momentseg.masks import Polygon, polygons_to_mask
from momentseg.pipeline import SegmentOptions
from momentseg.service import EncodedFrames

from conftest import TINY_PIXELS, nuclio_event, synthetic_frames
from test_function_yaml import read_like_cvat
from test_service import b64, bomb_jpeg, tiny_service

ROOT = Path(__file__).resolve().parents[1]
# random weights never answer [SEG] unless the answer is teacher-forced
OPTIONS = SegmentOptions(image_pixels=TINY_PIXELS, force_answer=True)
FRAME = synthetic_frames(1)[0]
IMAGE = b64(FRAME)


def cvat_call(text_prompts, **extra):
    """What CVAT's lambda manager sends an interactor (pos_points and neg_points always, obj_bbox null
    without a box), with ``text_prompts`` as an API client passes them."""
    return {"image": IMAGE, "pos_points": [], "neg_points": [], "obj_bbox": None, "text_prompts": text_prompts, **extra}


@pytest.fixture(scope="module")
def service(tiny_checkpoint):
    return tiny_service(tiny_checkpoint, MOMENTSEG_MAX_BODY_BYTES=str(1 << 20))


@pytest.fixture(scope="module")
def nuclio_call(service):
    import serverless.interactor.main as function

    platform = nuclio_sdk.test.Platform()
    interactor = InteractorService(service, OPTIONS)

    def with_tiny_model(context):
        context.user_data.interactor = interactor
        return context

    def call(body, content_type="application/json"):
        event = nuclio_event(body, content_type)
        response = platform.call_handler_with_context_mutation(function.handler, event, with_tiny_model)
        assert response.content_type == "application/json"
        return response.status_code, json.loads(response.body)

    return call


def full_mask(shape, height, width):
    """CVAT's reading of a function's mask: the box's bitmap row by row, then [xtl, ytl, xbr, ybr]."""
    *bitmap, left, top, right, bottom = shape["mask"]
    mask = np.zeros((height, width), bool)
    mask[top : bottom + 1, left : right + 1] = np.array(bitmap, bool).reshape(bottom - top + 1, right - left + 1)
    return mask


def test_the_text_gets_the_frames_mask_at_once(nuclio_call, service):
    status, shapes = nuclio_call(cvat_call(["the red disc"]))
    assert status == 200, shapes
    (shape,) = shapes
    assert shape["type"] == "mask" and shape["label"] == "object" and 0 < shape["confidence"] <= 1
    expected = segment_image(service.pipeline, EncodedFrames([IMAGE], 1.0), "the red disc", OPTIONS)
    height, width = FRAME.shape[:2]
    np.testing.assert_array_equal(full_mask(shape, height, width), expected.mask)
    # the polygon CVAT uses when asked for polygons outlines a part of the mask
    polygon = polygons_to_mask([Polygon(np.array(shape["points"]).reshape(-1, 2))], width, height)
    assert polygon.any() and (polygon & expected.mask).sum() >= 0.8 * polygon.sum()


def test_each_description_is_one_shape_and_parsed_or_raw_bodies_work(nuclio_call):
    sent = json.dumps(cvat_call(["the red disc", "the grey background"])).encode()
    for content_type in ("application/json", "application/octet-stream"):  # parsed by Nuclio, or raw bytes
        status, shapes = nuclio_call(sent, content_type)
        assert status == 200 and len(shapes) == 2
    status, shapes = nuclio_call(cvat_call("the red disc"))  # one description as a string
    assert status == 200 and len(shapes) == 1


def test_an_answer_without_seg_is_no_shape(service):
    interactor = InteractorService(service, OPTIONS)
    status, shapes = interactor.handle(cvat_call(["the red disc"], force_answer=False))
    assert status == 200 and shapes == []  # random weights do not say [SEG] by themselves


@pytest.mark.parametrize(
    "body, status, code, message",
    [
        ({"image": IMAGE, "pos_points": [[10, 10]], "neg_points": [], "obj_bbox": None}, 400, "needs_text", "/segment"),
        (cvat_call([]), 400, "needs_text", "text_prompts"),
        (cvat_call(["  "]), 400, "needs_text", "no text"),
        (cvat_call(["the disc"], pos_points=[[3, 4]]), 400, "points_not_used", "without points"),
        (cvat_call(["the disc"], obj_bbox=[[1, 2], [30, 40]]), 400, "points_not_used", "box"),
        (cvat_call(["the <|image_pad|> disc"]), 400, "invalid_request", "text_prompts[0]"),
        (cvat_call(["x" * 2000]), 400, "invalid_request", "characters"),
        (cvat_call(["the disc"] * (MAX_PROMPTS + 1)), 400, "invalid_request", "text_prompts"),
        (cvat_call([{"text": "the disc"}]), 400, "invalid_request", "text_prompts/0"),
        (cvat_call(["the disc"], image="@@not base64"), 400, "invalid_frame", "image is not valid base64"),
        (cvat_call(["the disc"], image=base64.b64encode(b"GIF89a....").decode()), 400, "invalid_frame", "image"),
        (cvat_call(["the disc"], image=base64.b64encode(bomb_jpeg()).decode()), 413, "frame_too_large", "pixels"),
        ({"text_prompts": ["the disc"]}, 400, "invalid_request", "'image' is a required property"),
        ([IMAGE], 400, "malformed_json", "JSON object"),
        (b"{nope", 400, "malformed_json", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "malformed_json", "JSON"),
        (b'{"image": "' + b"A" * (1 << 20) + b'"}', 413, "request_too_large", "MOMENTSEG_MAX_BODY_BYTES"),
    ],
)
def test_bad_input_is_a_named_4xx_and_the_function_keeps_serving(nuclio_call, body, status, code, message):
    got_status, got = nuclio_call(body)
    assert (got_status, got["error"]) == (status, code), got
    assert message in got["message"] and set(got) == {"error", "message"}
    assert nuclio_call(cvat_call(["the red disc"]))[0] == 200


def test_a_model_that_did_not_load_answers_503_with_the_reason(monkeypatch):
    import serverless.interactor.main as function

    monkeypatch.setenv("MOMENTSEG_CHECKPOINT", "/no/such/checkpoint")
    monkeypatch.setenv("MOMENTSEG_DEVICE", "cpu")
    context = nuclio_sdk.Context(logger=nuclio_sdk.Logger(10, "test"), platform=nuclio_sdk.test.Platform())
    function.init_context(context)
    response = function.handler(context, nuclio_sdk.Event(body=cvat_call(["the disc"])))
    answer = json.loads(response.body)
    assert response.status_code == 503 and answer["error"] == "model_not_loaded"
    assert "/no/such" not in answer["message"]


# --- function.yaml files, as CVAT and Nuclio read them ----------------------------------------


def test_cvat_lists_the_interactor_and_says_what_it_needs():
    config = yaml.safe_load((ROOT / "serverless" / "interactor" / "function.yaml").read_text())
    metadata, spec = config["metadata"], config["spec"]
    assert metadata["namespace"] == "cvat" and metadata["labels"]["nuclio.io/project-name"] == "cvat"
    annotations = metadata["annotations"]
    assert all(isinstance(v, str) for v in annotations.values())
    read = read_like_cvat(annotations)
    assert annotations["type"] == "interactor" and read["version"] >= 1
    assert read["min_pos_points"] == 0 and read["min_neg_points"] == 0 and "startswith_box" not in annotations
    assert "text_prompts" in read["help_message"] and "/segment" in read["help_message"]
    module_name, function_name = spec["handler"].split(":")
    module = __import__(module_name, fromlist=[function_name])
    assert callable(getattr(module, function_name)) and callable(module.init_context)
    trigger = next(iter(spec["triggers"].values()))
    env = {item["name"]: item.get("value") for item in spec["env"]}
    assert int(env["MOMENTSEG_MAX_BODY_BYTES"]) <= trigger["attributes"]["maxRequestBodySize"]
    video = yaml.safe_load((ROOT / "function.yaml").read_text())
    assert metadata["name"] != video["metadata"]["name"]
    assert spec["build"]["directives"] == video["spec"]["build"]["directives"]  # one package, one install


def test_the_video_function_declares_its_timeout_and_token_settings_without_a_secret():
    spec = yaml.safe_load((ROOT / "function.yaml").read_text())["spec"]
    env = {item["name"]: item.get("value") for item in spec["env"]}
    assert 0 < float(env["MOMENTSEG_REQUEST_TIMEOUT"]) < int(spec["eventTimeout"].rstrip("s"))
    assert env["MOMENTSEG_TASK_TOKEN"] == "" and env["MOMENTSEG_TASK_TOKEN_FILE"] == ""  # task mode off until set
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert all(
        f"`{name}`" in deploy
        for name in ("MOMENTSEG_REQUEST_TIMEOUT", "MOMENTSEG_TASK_TOKEN", "MOMENTSEG_TASK_TOKEN_FILE")
    )
