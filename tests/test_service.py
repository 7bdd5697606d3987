"""The Nuclio handler through nuclio-sdk's test platform, and `momentseg serve` over real HTTP."""

import base64
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.masks import decode_mask, encode_mask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from momentseg.pipeline import SegmentOptions
from momentseg.serve import make_server
from momentseg.service import EncodedFrames

from conftest import TINY_PIXELS, synthetic_frames


def b64(frame, ext=".png"):
    ok, data = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return base64.b64encode(data.tobytes()).decode()


FRAMES = [b64(f) for f in synthetic_frames(8)]


def request(**extra):
    body = {"prompt": "the red dog", "frames": FRAMES, "keyframes": 3, "label": "dog"}
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def service(tiny_checkpoint):
    import os

    from momentseg.service import build_service_from_env

    env = dict(os.environ, MOMENTSEG_CHECKPOINT=str(tiny_checkpoint), MOMENTSEG_DEVICE="cpu",
               MOMENTSEG_MAX_FRAMES="20", MOMENTSEG_MAX_BODY_BYTES=str(4 << 20))
    built = build_service_from_env(env)
    assert built.load_error is None
    # the tiny model's pixel budgets keep CPU tests fast
    original = built.pipeline.run

    def run(frames, prompt, options, **kw):
        import dataclasses

        return original(frames, prompt, dataclasses.replace(options, tsg_pixels=TINY_PIXELS,
                                                            image_pixels=TINY_PIXELS), **kw)

    built.pipeline.run = run
    return built


@pytest.fixture(scope="module")
def nuclio_call(service):
    import serverless.main as function

    platform = nuclio_sdk.test.Platform()
    original = function.build_service_from_env
    function.build_service_from_env = lambda: service

    def call(body):
        response = platform.call_handler(function.handler, nuclio_sdk.Event(body=body, content_type="application/json"))
        return response.status_code, json.loads(response.body)

    yield call
    function.build_service_from_env = original


def test_valid_request_returns_tracks_that_load_into_cvat_models(nuclio_call, service):
    status, body = nuclio_call(request())
    assert status == 200, body
    assert body["label"] == "dog" and len(body["keyframes"]) == 3 and len(body["similarity"]) == 8
    assert set(body["moment"]) == {"start_frame", "end_frame", "start_sec", "end_sec", "score"}
    (track,) = body["tracks"]
    shapes = [models.TrackedShapeRequest(type=s["type"], frame=s["frame"], points=s["points"], outside=s["outside"])
              for s in track["shapes"]]
    models.LabeledTrackRequest(label_id=1, frame=0, shapes=shapes, source="auto")
    # the masks decode with cvat-sdk to exactly what the pipeline produced in-process
    direct = service.pipeline.run(EncodedFrames(FRAMES, 30.0), "the red dog", SegmentOptions(keyframes=3, label="dog"))
    for sent, expected in zip(track["shapes"], direct.tracks[0].shapes):
        if not sent["outside"]:
            np.testing.assert_array_equal(decode_mask(sent["points"], image_width=64, image_height=48),
                                          decode_mask(expected.points, image_width=64, image_height=48))


def test_human_anchor_is_kept_in_the_response(nuclio_call):
    hand = np.zeros((48, 64), bool)
    hand[3:9, 40:60] = True
    status, body = nuclio_call(request(anchors=[{"frame": 5, "mask": encode_mask(hand)}]))
    assert status == 200, body
    shape = next(s for s in body["tracks"][0]["shapes"] if s["frame"] == 5)
    assert shape["keyframe"]
    np.testing.assert_array_equal(decode_mask(shape["points"], image_width=64, image_height=48), hand)


def test_polygon_output_and_options(nuclio_call):
    status, body = nuclio_call(request(output="polygon", sampling="uniform", threshold=0.5,
                                       bap={"bidirectional": False, "lambda": 0.5}))
    assert status == 200, body
    assert body["options"]["sampling"] == "uniform" and body["options"]["lam"] == 0.5
    assert all(s["type"] == "polygon" for s in body["tracks"][0]["shapes"])


BAD_REQUESTS = [
    (b"{not json", 400, "malformed_json", "not valid JSON"),
    ([1, 2], 400, "malformed_json", "JSON object"),
    ({"frames": FRAMES}, 400, "invalid_request", "'prompt' is a required property"),
    (request(prompt=""), 400, "invalid_request", "prompt"),
    (request(prompt="   "), 400, "invalid_request", "prompt is empty"),
    (request(prompt="x" * 1001), 400, "invalid_request", "prompt"),
    ({"prompt": "dog"}, 400, "invalid_request", "exactly one of 'frames'"),
    (request(task={"id": 3}), 400, "invalid_request", "exactly one of 'frames'"),
    (request(frames=["@@@"]), 400, "invalid_frame", "frames[0] is not valid base64"),
    (request(frames=[base64.b64encode(b"not an image").decode()]), 400, "invalid_frame", "frames[0]"),
    (request(frames=FRAMES[:2] + [b64(synthetic_frames(1, 40, 40)[0])]), 400, "frame_size_mismatch", "frames[2]"),
    (request(frames=FRAMES * 3), 413, "too_many_frames", "24 frames"),
    (request(keyframes=0), 400, "invalid_request", "keyframes"),
    (request(sampling="best"), 400, "invalid_request", "sampling"),
    (request(output="box"), 400, "invalid_request", "output"),
    (request(threshold=1.5), 400, "invalid_request", "threshold"),
    (request(bap={"lambda": -1}), 400, "invalid_request", "bap/lambda"),
    (request(colour="red"), 400, "invalid_request", "colour"),
    (request(anchors=[{"frame": 8, "mask": [0, 1, 0, 0, 0, 0]}]), 400, "invalid_anchor", "frame 8"),
    (request(anchors=[{"frame": 1, "mask": encode_mask(np.ones((60, 70), bool))}]), 400, "invalid_anchor", "64x48"),
    ({"image": FRAMES[0]}, 400, "needs_prompt", "text prompt"),
]


@pytest.mark.parametrize("body, status, code, message", BAD_REQUESTS)
def test_every_bad_input_is_a_named_4xx_and_the_function_keeps_serving(nuclio_call, body, status, code, message):
    got_status, got = nuclio_call(body)
    assert (got_status, got["error"]) == (status, code), got
    assert message in got["message"]
    assert "Traceback" not in got["message"]


def test_body_over_the_byte_limit_is_413(service):
    status, body = service.handle(b" " * (5 << 20))
    assert status == 413 and body["error"] == "request_too_large"


def test_task_mode_without_cvat_configuration_is_503(service):
    status, body = service.handle({"prompt": "dog", "task": {"id": 1}})
    assert status == 503 and body["error"] == "cvat_not_configured"


def test_model_not_loaded_is_503():
    from momentseg.service import build_service_from_env

    broken = build_service_from_env({"MOMENTSEG_CHECKPOINT": "/nowhere/at/all", "MOMENTSEG_DEVICE": "cpu"})
    status, body = broken.handle(request())
    assert status == 503 and body["error"] == "model_not_loaded" and "not a folder" in body["message"]
    status, body = build_service_from_env({"MOMENTSEG_DEVICE": "cpu"}).handle(request())
    assert status == 503 and "MOMENTSEG_CHECKPOINT" in body["message"]


def test_out_of_memory_is_reported_and_the_next_request_served(service):
    import torch

    original = service.pipeline.run
    calls = []

    def run_out_of_memory(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(*args, **kwargs)

    service.pipeline.run = run_out_of_memory
    try:
        status, body = service.handle(request())
        assert status == 503 and body["error"] == "out_of_memory"
        assert service.handle(request())[0] == 200
    finally:
        service.pipeline.run = original


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
fields = st.sampled_from(["prompt", "frames", "task", "fps", "label", "output", "keyframes", "threshold",
                          "sampling", "bap", "anchors", "image"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(fields, json_values, max_size=5) | json_values | st.binary(max_size=40))
def test_fuzzed_requests_get_well_formed_answers(service, body):
    status, answer = service.handle(body if not isinstance(body, (list, int, float, bool, type(None))) else json.dumps(body))
    assert status in (200, 400, 413, 503) and isinstance(answer, dict)
    if status != 200:
        assert set(answer) == {"error", "message"}
    json.dumps(answer)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(request())), json_values)
def test_mutated_valid_requests_get_well_formed_answers(service, key, value):
    body = request(frames=FRAMES[:2], keyframes=1)
    body[key] = value
    status, answer = service.handle(body)
    assert status in (200, 400, 413) and isinstance(answer, dict)


def test_a_valid_request_succeeds_after_the_fuzzing(service):
    assert service.handle(request(frames=FRAMES[:3]))[0] == 200


@pytest.fixture(scope="module")
def server(service):
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_answers_like_the_function(server, nuclio_call):
    status, body = post(server + "/", request())
    assert status == 200
    assert body["tracks"] == nuclio_call(request())[1]["tracks"]
    for bad, expected_status, code, _ in BAD_REQUESTS[:4] + BAD_REQUESTS[11:12]:
        got_status, got = post(server + "/", bad if isinstance(bad, bytes) else bad)
        assert (got_status, got["error"]) == (expected_status, code)
    with urllib.request.urlopen(server + "/health", timeout=10) as response:
        assert json.loads(response.read())["ready"] is True


def test_serve_queues_concurrent_requests(server):
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: post(server + "/", request(frames=FRAMES[:5])), range(2)))
    assert [status for status, _ in results] == [200, 200]
    assert results[0][1]["tracks"] == results[1][1]["tracks"]


def test_serve_refuses_an_oversized_body_before_reading_it(server):
    status, body = post(server + "/", b"x" * (5 << 20))
    assert status == 413 and body["error"] == "request_too_large"


def test_serve_command_starts_and_answers(tiny_checkpoint):
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "momentseg.cli", "serve", "--checkpoint", str(tiny_checkpoint), "--port", "0",
         "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving MomentSeg on http://127.0.0.1:")
        url = line.split()[3]
        with urllib.request.urlopen(url + "health", timeout=30) as response:
            assert json.loads(response.read()) == {"ready": True, "error": None}
        status, body = post(url, {"prompt": ""})
        assert status == 400 and body["error"] == "invalid_request"
    finally:
        process.terminate()
        process.wait(timeout=30)
