"""The service without a transport: every check happens before the model, every refusal is a named 4xx
that leaks no path or host, task mode needs the shared token, and a request past its deadline or
whose caller left gives the model back."""

import base64
import dataclasses
import json
import resource
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest
from cvat_sdk.masks import encode_mask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from momentseg.limits import image_size
from momentseg.service import Limits, build_service_from_env

from conftest import TINY_PIXELS, synthetic_frames

TASK_TOKEN = "s3cret-task-token"


def b64(frame, ext=".png"):
    ok, data = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return base64.b64encode(data.tobytes()).decode()


FRAMES = [b64(f) for f in synthetic_frames(8)]


def request(**extra):
    body = {"prompt": "the red dog", "frames": FRAMES, "keyframes": 3, "label": "dog"}
    body.update(extra)
    return body


def with_tiny_budgets(pipeline):
    """The tiny model's pixel budgets keep CPU tests fast; its random weights never answer [FIND]/[SEG]
    unless the answer is teacher-forced."""
    original = pipeline.run

    def run(frames, prompt, options, **kw):
        return original(
            frames,
            prompt,
            dataclasses.replace(options, tsg_pixels=TINY_PIXELS, image_pixels=TINY_PIXELS, force_answer=True),
            **kw,
        )

    pipeline.run = run
    return pipeline


def tiny_service(checkpoint, pipeline=None, **env):
    """The service as the function builds it from its environment, on the tiny checkpoint."""
    built = build_service_from_env(
        {
            "MOMENTSEG_CHECKPOINT": str(checkpoint),
            "MOMENTSEG_DEVICE": "cpu",
            "MOMENTSEG_MAX_FRAMES": "20",
            "MOMENTSEG_MAX_BODY_BYTES": str(4 << 20),
            **env,
        },
        pipeline=pipeline,
    )
    assert built.load_error is None, built.load_error
    if pipeline is None:
        with_tiny_budgets(built.pipeline)
    return built


@pytest.fixture(scope="module")
def service(tiny_checkpoint):
    return tiny_service(tiny_checkpoint, MOMENTSEG_TASK_TOKEN=TASK_TOKEN)


def bomb_jpeg(width=16384, height=16384):
    """A few hundred bytes of JPEG whose header declares width x height pixels."""
    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(data.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bomb_png(width=40000, height=40000):
    ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(data.tobytes())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


BAD_REQUESTS = [
    (b"{not json", 400, "malformed_json", "not valid JSON"),
    (b"\xff\xfe{}", 400, "malformed_json", "UTF-8"),
    ([1, 2], 400, "malformed_json", "JSON object"),
    (json.dumps(json.dumps(request())).encode(), 400, "malformed_json", "JSON object"),  # encoded twice
    (b'"dog"', 400, "malformed_json", "JSON object"),
    (b"null", 400, "malformed_json", "JSON object"),
    ({"frames": FRAMES}, 400, "invalid_request", "'prompt' is a required property"),
    (request(prompt=""), 400, "invalid_request", "prompt"),
    (request(prompt="   "), 400, "invalid_request", "prompt is empty"),
    (request(prompt="\u200b\u200c\u200d\u2060\ufeff"), 400, "invalid_request", "prompt is empty"),
    (request(prompt="x" * 1001), 400, "invalid_request", "prompt"),
    ({"prompt": "dog"}, 400, "invalid_request", "exactly one of 'frames'"),
    (request(task={"id": 3}), 400, "invalid_request", "exactly one of 'frames'"),
    (request(frames=["@@@"]), 400, "invalid_frame", "frames[0] is not valid base64"),
    (request(frames=[base64.b64encode(b"not an image").decode()]), 400, "invalid_frame", "frames[0]"),
    (
        request(frames=[FRAMES[0], b64(synthetic_frames(1)[0], ".bmp")]),
        400,
        "invalid_frame",
        "frames[1]: not a JPEG or PNG",
    ),
    (request(frames=FRAMES[:2] + [b64(synthetic_frames(1, 40, 40)[0])]), 400, "frame_size_mismatch", "frames[2]"),
    (request(frames=FRAMES * 3), 413, "too_many_frames", "24 frames"),
    (request(frames=[base64.b64encode(bomb_jpeg()).decode()]), 413, "frame_too_large", "frames[0]"),
    (request(frames=[FRAMES[0], base64.b64encode(bomb_png()).decode()]), 413, "frame_too_large", "frames[1]"),
    (request(frames=[base64.b64encode(bomb_jpeg(5000, 4000)).decode()]), 413, "frame_too_large", "5000x4000"),
    (request(keyframes=0), 400, "invalid_request", "keyframes"),
    (request(keyframes=3.0), 400, "invalid_request", "keyframes: 3.0 is not of type 'integer'"),
    (request(sampling="best"), 400, "invalid_request", "sampling"),
    (request(output="box"), 400, "invalid_request", "output"),
    (request(threshold=1.5), 400, "invalid_request", "threshold"),
    (request(fps=1e-320), 400, "invalid_request", "fps"),  # 1/fps would overflow to infinity
    (request(lam=-1), 400, "invalid_request", "lam"),
    (request(window=0), 400, "invalid_request", "window"),
    (request(force_answer="yes"), 400, "invalid_request", "force_answer"),
    (request(colour="red"), 400, "invalid_request", "colour"),
    (request(anchors=[{"frame": 8, "mask": [0, 1, 0, 0, 0, 0]}]), 400, "invalid_anchor", "frame 8"),
    (request(anchors=[{"frame": 1, "mask": encode_mask(np.ones((60, 70), bool))}]), 400, "invalid_anchor", "64x48"),
    (request(anchors=[{"frame": 1, "mask": [1] * 5}] * 21), 413, "too_many_anchors", "21 anchors"),
    ({"image": FRAMES[0]}, 400, "needs_prompt", "text prompt"),
    # what JSON parsing lets through
    (
        b'{"prompt": "dog", "frames": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "malformed_json",
        "nested too deeply",
    ),
    (json.dumps(request(colour={"x": [[[[[[[[[[1]]]]]]]]]]})).encode(), 400, "invalid_request", "nested deeper than 8"),
    (
        json.dumps(request()).replace('"keyframes": 3', '"keyframes": 1e999').encode(),
        400,
        "invalid_request",
        "keyframes: numbers must be finite",
    ),
    (
        json.dumps(request()).replace('"keyframes": 3', '"keyframes": ' + "9" * 5000).encode(),
        400,
        "malformed_json",
        "not valid JSON",
    ),
    (
        json.dumps(request()).replace('"keyframes": 3', '"keyframes": ' + "9" * 30).encode(),
        400,
        "invalid_request",
        "keyframes: the number is out of range",
    ),
    (
        json.dumps(request()).replace('"keyframes": 3', '"keyframes": NaN').encode(),
        400,
        "invalid_request",
        "keyframes: numbers must be finite",
    ),
    (json.dumps(request(threshold=float("nan"))).encode(), 400, "invalid_request", "threshold: numbers must be finite"),
    (request(threshold=float("inf")), 400, "invalid_request", "threshold: numbers must be finite"),
    (request(keyframes=2**70), 400, "invalid_request", "keyframes: the number is out of range"),
    (b'{"prompt": "dog", "prompt": "cat", "frames": ["x"]}', 400, "malformed_json", "'prompt' appears twice"),
    (
        b'{"prompt": "the \\ud800 dog", "frames": ["x"]}',
        400,
        "invalid_request",
        "prompt: contains an unpaired surrogate",
    ),
    (request(label="\udfff"), 400, "invalid_request", "label: contains an unpaired surrogate"),
    (request(label="x" * 20_000), 400, "invalid_request", "label: text of 20000 characters"),
    (request(task={"id": 42.0}, frames=None), 400, "invalid_request", "task/id: 42.0 is not of type 'integer'"),
    (request(task={"id": 2**40}, frames=None), 400, "invalid_request", "task/id"),
    (request(task={"id": 4, "frames": "0-9,5-12"}, frames=None), 400, "invalid_request", "runs must ascend"),
    (request(task={"id": 4, "frames": "9-3"}, frames=None), 400, "invalid_request", "runs must ascend"),
    (request(task={"id": 4, "frames": "0-9;12"}, frames=None), 400, "invalid_request", "task/frames"),
    (request(task={"id": 4, "frames": "0-9", "frame_step": 2}, frames=None), 400, "invalid_request", "not both"),
    (request(task={"id": 4, "frames": "0-9999999999"}, frames=None), 413, "too_many_frames", "10000000000 frames"),
]


def _drop_none(body):
    return {k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else body


@pytest.mark.parametrize("body, status, code, message", BAD_REQUESTS)
def test_every_bad_input_is_a_named_4xx(service, body, status, code, message):
    got_status, got = service.handle(_drop_none(body), token=TASK_TOKEN)
    assert (got_status, got["error"]) == (status, code), got
    assert message in got["message"]
    assert set(got) == {"error", "message"} and "Traceback" not in got["message"]


def test_refusals_happen_before_the_model_lock(service):
    """A malformed request, a decompression bomb or a bad token never waits for the model."""
    hostile = [body for body, status, _, _ in BAD_REQUESTS if status in (400, 413)]
    assert service._lock.acquire(timeout=5)  # another request is running on the model
    try:
        started = time.monotonic()
        for body in hostile:
            assert 400 <= service.handle(_drop_none(body), token=TASK_TOKEN)[0] < 500
        assert service.handle({"prompt": "dog", "task": {"id": 1}}, token="wrong")[0] == 401
        assert time.monotonic() - started < 30
    finally:
        service._lock.release()


def test_a_pixel_bomb_is_refused_from_its_header_without_decoding(service):
    data = bomb_jpeg()
    assert len(data) < 1000 and image_size(bomb_jpeg(64, 48), 10**6) == (48, 64)
    rss = max_rss_mb()
    started = time.monotonic()
    for _ in range(40):
        status, body = service.handle(request(frames=[base64.b64encode(data).decode()] * 8))
        assert (status, body["error"]) == (413, "frame_too_large")
    assert time.monotonic() - started < 10
    assert max_rss_mb() - rss < 200  # one decode of 16384² RGB would need 768 MB


def test_a_jpeg_turned_by_exif_is_measured_as_decoders_show_it():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°
    Image.new("RGB", (64, 48)).save(buffer, "JPEG", exif=exif)
    height, width = image_size(buffer.getvalue(), 10**6)
    decoded = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    assert (height, width) == decoded.shape[:2] == (64, 48)


def test_a_frame_whose_pixels_are_broken_is_a_400_from_the_run(service):
    truncated = base64.b64decode(FRAMES[5])[:60]  # the header survives, the pixels do not
    status, body = service.handle(request(frames=FRAMES[:5] + [base64.b64encode(truncated).decode()]))
    assert (status, body["error"]) == (400, "invalid_frame") and "frames[5]" in body["message"]
    assert service.handle(request(frames=FRAMES[:3], keyframes=1))[0] == 200


def test_special_tokens_in_the_prompt_are_refused(service):
    for token in ("<|video_pad|>", "<|image_pad|>", "[SEG]", "<|im_end|>"):
        status, body = service.handle(request(prompt=f"the dog {token} jumping"))
        assert status == 400 and body["error"] == "invalid_request" and "prompt" in body["message"], (token, body)


def test_task_mode_needs_the_shared_token(tiny_checkpoint, service):
    task = {"prompt": "dog", "task": {"id": 1}}
    status, body = service.handle(task)
    assert (status, body["error"]) == (401, "unauthorized") and TASK_TOKEN not in json.dumps(body)
    assert service.handle(task, token=TASK_TOKEN[:-1] + "X")[0] == 401
    closed = tiny_service(tiny_checkpoint, pipeline=service.pipeline)
    status, body = closed.handle(task, token=TASK_TOKEN)
    assert (status, body["error"]) == (403, "task_mode_disabled")
    assert closed.handle(request(frames=FRAMES[:3], keyframes=1))[0] == 200  # frames mode needs no token


def test_task_mode_reads_the_task_from_cvat_with_credentials_from_files(tiny_checkpoint, service, tmp_path):
    from cvat_stub import TOKEN, CvatStub

    stub = CvatStub()
    try:
        stub.add_task(7, synthetic_frames(6), ["dog"])
        (tmp_path / "cvat").write_text(f"CVAT_ACCESS_TOKEN={TOKEN}\n")
        (tmp_path / "task").write_text(TASK_TOKEN + "\n")
        from_files = tiny_service(
            tiny_checkpoint,
            pipeline=service.pipeline,
            CVAT_HOST=stub.url,
            CVAT_CREDENTIALS_FILE=str(tmp_path / "cvat"),
            MOMENTSEG_TASK_TOKEN_FILE=str(tmp_path / "task"),
        )
        status, body = from_files.handle(
            {"prompt": "the dog", "task": {"id": 7, "frame_start": 1}, "keyframes": 2}, token=TASK_TOKEN
        )
        assert status == 200, body
        assert body["frames"] == [1, 2, 3, 4, 5]
        status, body = from_files.handle({"prompt": "the dog", "task": {"id": 8}}, token=TASK_TOKEN)
        assert (status, body["error"]) == (404, "task_not_found")
        assert stub.url not in body["message"] and "127.0.0.1" not in body["message"]
    finally:
        stub.close()


def test_responses_name_no_internal_path_host_or_credential(tiny_checkpoint, service, tmp_path):
    missing = tmp_path / "models" / "gone"
    broken = build_service_from_env({"MOMENTSEG_CHECKPOINT": str(missing), "MOMENTSEG_DEVICE": "cpu"})
    status, body = broken.handle(request())
    assert (status, body["error"]) == (503, "model_not_loaded") and "not a folder" in body["message"]
    assert str(tmp_path) not in json.dumps(body) and str(tmp_path) not in broken.load_error
    status, body = build_service_from_env({"MOMENTSEG_DEVICE": "cpu"}).handle(request())
    assert status == 503 and "MOMENTSEG_CHECKPOINT" in body["message"]

    host = "http://admin:hunter2@127.0.0.1:9"  # nothing listens on the discard port
    unreachable = tiny_service(
        tiny_checkpoint,
        pipeline=service.pipeline,
        CVAT_HOST=host,
        CVAT_ACCESS_TOKEN="tok",
        MOMENTSEG_TASK_TOKEN=TASK_TOKEN,
    )
    status, body = unreachable.handle({"prompt": "dog", "task": {"id": 3}}, token=TASK_TOKEN)
    assert status in (502, 503, 504), body
    for secret in ("hunter2", "admin", "127.0.0.1", ":9"):
        assert secret not in body["message"], body
    status, body = service.handle(request(frames=FRAMES[:3], keyframes=1))
    assert status == 200 and str(tiny_checkpoint) not in json.dumps(body)
    assert body["model"]["checkpoint"] == "MOMENTSEG_CHECKPOINT"


def test_settings_from_the_environment_are_checked(tiny_checkpoint, tmp_path):
    bad = build_service_from_env(
        {
            "MOMENTSEG_CHECKPOINT": str(tiny_checkpoint),
            "MOMENTSEG_DEVICE": "cpu",
            "MOMENTSEG_MAX_FRAMES": "many",
            "MOMENTSEG_TASK_TOKEN_FILE": str(tmp_path / "no"),
        }
    )
    assert bad.pipeline is None
    assert "MOMENTSEG_MAX_FRAMES must be a whole number" in bad.load_error
    assert "MOMENTSEG_TASK_TOKEN_FILE names a file that cannot be read" in bad.load_error
    assert str(tmp_path) not in bad.load_error
    assert Limits.from_env({"MOMENTSEG_REQUEST_TIMEOUT": "2.5"}).request_timeout_s == 2.5
    with pytest.raises(ValueError, match="must be positive"):
        Limits.from_env({"MOMENTSEG_MAX_BODY_BYTES": "-1"})


def test_a_request_past_its_deadline_gives_the_model_back(service):
    job = service.prepare(request(frames=FRAMES[:4], keyframes=1))
    status, body = service.error_response(_raised(lambda: service.execute(job, deadline=time.monotonic())))
    assert (status, body["error"]) == (503, "processing_timeout")
    assert not service._lock.locked()
    # while another request holds the model, a queued one gives up at its deadline
    assert service._lock.acquire(timeout=5)
    try:
        error = _raised(lambda: service.execute(job, deadline=time.monotonic() + 0.2))
        assert service.error_response(error)[1]["error"] == "busy"
    finally:
        service._lock.release()
    assert service.handle(request(frames=FRAMES[:3], keyframes=1))[0] == 200


def test_a_cancelled_request_stops_between_frames(service):
    frames = [b64(f) for f in synthetic_frames(20)]
    job = service.prepare(request(frames=frames, keyframes=1))
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    started = time.monotonic()
    error = _raised(lambda: service.execute(job, cancel=cancel))
    assert service.error_response(error)[1]["error"] == "cancelled"
    assert not service._lock.locked() and time.monotonic() - started < 30


def _raised(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 (the error is the result under test)
        return error
    raise AssertionError("no error raised")


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
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
fields = st.sampled_from(
    [
        "prompt",
        "frames",
        "task",
        "fps",
        "label",
        "output",
        "keyframes",
        "threshold",
        "sampling",
        "lam",
        "window",
        "clear_reach",
        "anchors",
        "image",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(fields, json_values, max_size=5) | json_values | st.binary(max_size=40))
def test_fuzzed_requests_get_well_formed_answers(service, body):
    if isinstance(body, (list, int, float, bool, type(None))):
        body = json.dumps(body)
    status, answer = service.handle(body, token=TASK_TOKEN)
    assert status in (200, 400, 413, 503) and isinstance(answer, dict)
    if status != 200:
        assert set(answer) == {"error", "message"}
    json.dumps(answer, allow_nan=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(request())), json_values)
def test_mutated_valid_requests_get_well_formed_answers(service, key, value):
    body = request(frames=FRAMES[:2], keyframes=1)
    body[key] = value
    status, answer = service.handle(body)
    assert status in (200, 400, 413) and isinstance(answer, dict)
    json.dumps(answer, allow_nan=False)


def test_a_valid_request_succeeds_after_the_fuzzing(service):
    assert service.handle(request(frames=FRAMES[:3]))[0] == 200
