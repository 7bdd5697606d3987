"""The Nuclio handler through nuclio-sdk's test platform: the body limit applies to what Nuclio hands
over (bytes, text, or JSON it already parsed), and every client error is a 4xx JSON."""

import json

import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.masks import decode_mask, encode_mask

from momentseg.pipeline import SegmentOptions
from momentseg.service import EncodedFrames

from conftest import nuclio_event
from test_service import BAD_REQUESTS, FRAMES, TASK_TOKEN, _drop_none, request, tiny_service


@pytest.fixture(scope="module")
def service(tiny_checkpoint):
    return tiny_service(tiny_checkpoint, MOMENTSEG_TASK_TOKEN=TASK_TOKEN, MOMENTSEG_MAX_BODY_BYTES=str(1 << 20))


@pytest.fixture(scope="module")
def nuclio_call(service):
    import serverless.main as function

    platform = nuclio_sdk.test.Platform()
    original = function.build_service_from_env
    function.build_service_from_env = lambda: service

    def call(body, headers=None, content_type="application/json"):
        event = nuclio_event(body, content_type, headers)
        response = platform.call_handler(function.handler, event)
        assert response.content_type == "application/json"
        return response.status_code, json.loads(response.body), response.headers

    yield call
    function.build_service_from_env = original


def test_valid_request_returns_tracks_that_load_into_cvat_models(nuclio_call, service):
    status, body, _ = nuclio_call(request())
    assert status == 200, body
    assert body["label"] == "dog" and len(body["keyframes"]) == 3 and len(body["similarity"]) == 8
    assert set(body["moment"]) == {"start_frame", "end_frame", "start_sec", "end_sec", "score"}
    (track,) = body["tracks"]
    shapes = [
        models.TrackedShapeRequest(type=s["type"], frame=s["frame"], points=s["points"], outside=s["outside"])
        for s in track["shapes"]
    ]
    models.LabeledTrackRequest(label_id=1, frame=0, shapes=shapes, source="auto")
    # the masks decode with cvat-sdk to exactly what the pipeline produced in-process
    direct = service.pipeline.run(EncodedFrames(FRAMES, 30.0), "the red dog", SegmentOptions(keyframes=3, label="dog"))
    for sent, expected in zip(track["shapes"], direct.tracks[0].shapes):
        if not sent["outside"]:
            np.testing.assert_array_equal(
                decode_mask(sent["points"], image_width=64, image_height=48),
                decode_mask(expected.points, image_width=64, image_height=48),
            )


def test_human_anchor_is_kept_and_body_may_be_parsed_or_raw(nuclio_call):
    hand = np.zeros((48, 64), bool)
    hand[3:9, 40:60] = True
    sent = json.dumps(request(anchors=[{"frame": 5, "mask": encode_mask(hand)}])).encode()
    for content_type in ("application/json", "application/octet-stream"):  # parsed by Nuclio, or raw bytes
        status, body, _ = nuclio_call(sent, content_type=content_type)
        assert status == 200, body
        shape = next(s for s in body["tracks"][0]["shapes"] if s["frame"] == 5)
        assert shape["keyframe"]
        np.testing.assert_array_equal(decode_mask(shape["points"], image_width=64, image_height=48), hand)


def test_polygon_output_and_options(nuclio_call):
    status, body, _ = nuclio_call(
        request(output="polygon", sampling="uniform", threshold=0.5, bidirectional=False, lam=0.5, window=None)
    )
    assert status == 200, body
    assert body["options"]["sampling"] == "uniform" and body["options"]["lam"] == 0.5
    assert body["options"]["bidirectional"] is False and body["options"]["window"] is None
    assert all(s["type"] == "polygon" for s in body["tracks"][0]["shapes"])


# Nuclio parses a JSON body before the handler and keeps the last of two equal keys: the function sees
# {"prompt": "cat", "frames": ["x"]}, where serve refuses the body itself
SEEN_AFTER_NUCLIO_PARSED = {b'{"prompt": "dog", "prompt": "cat", "frames": ["x"]}': (400, "invalid_frame", "frames[0]")}


@pytest.mark.parametrize("body, status, code, message", BAD_REQUESTS)
def test_every_bad_input_is_a_named_4xx_and_the_function_keeps_serving(nuclio_call, body, status, code, message):
    """The same answers as the service gives serve (tests/test_service.py), on bodies as Nuclio delivers them."""
    if isinstance(body, bytes) and body in SEEN_AFTER_NUCLIO_PARSED:
        status, code, message = SEEN_AFTER_NUCLIO_PARSED[body]
    got_status, got, _ = nuclio_call(_drop_none(body), {"Authorization": f"Bearer {TASK_TOKEN}"})
    assert (got_status, got["error"]) == (status, code), got
    assert message in got["message"] and "Traceback" not in got["message"]


def test_the_body_limit_applies_to_json_nuclio_already_parsed(nuclio_call):
    big = request(frames=FRAMES * 2, label="x" * 200)
    big["anchors"] = [{"frame": 0, "mask": [0] * 400_000 + [0, 0, 1, 1]}]
    size = len(json.dumps(big))
    assert size > 1 << 20
    status, body, _ = nuclio_call(big)  # a dict: Nuclio parsed the JSON before the handler
    assert (status, body["error"]) == (413, "request_too_large") and str(size) in body["message"]
    status, body, _ = nuclio_call(request(), {"Content-Length": str(2 << 20)})
    assert (status, body["error"]) == (413, "request_too_large")
    status, body, _ = nuclio_call(b"x" * ((1 << 20) + 1))
    assert (status, body["error"]) == (413, "request_too_large")
    status, body, _ = nuclio_call("x" * ((1 << 20) + 1))
    assert (status, body["error"]) == (413, "request_too_large")


def test_parsed_bodies_nuclio_could_hand_over_are_refused_cleanly(nuclio_call):
    nested = {"prompt": "dog", "frames": FRAMES}
    for _ in range(5000):
        nested = {"anchors": nested}
    status, body, _ = nuclio_call(nested)
    assert status == 400 and body["error"] in ("malformed_json", "invalid_request")
    status, body, _ = nuclio_call(request(threshold=float("nan")))
    assert status == 400
    status, body, _ = nuclio_call(["not", "an", "object"])
    assert (status, body["error"]) == (400, "malformed_json")


def test_task_mode_through_nuclio_needs_the_bearer_token(nuclio_call):
    task = {"prompt": "dog", "task": {"id": 1}}
    status, body, headers = nuclio_call(task)
    assert (status, body["error"]) == (401, "unauthorized") and headers.get("WWW-Authenticate") == "Bearer"
    status, body, _ = nuclio_call(task, {"authorization": "Bearer nope"})
    assert status == 401
    status, body, _ = nuclio_call(task, {"Authorization": f"Bearer {TASK_TOKEN}"})
    assert (status, body["error"]) == (503, "cvat_not_configured")  # authorised; no CVAT is configured here


def test_a_valid_request_is_served_after_the_refusals(nuclio_call):
    assert nuclio_call(request(frames=FRAMES[:3], keyframes=1))[0] == 200
