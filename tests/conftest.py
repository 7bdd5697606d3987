"""Shared fixtures: tiny real-architecture models and checkpoints, built once per session."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

TINY_PIXELS = 2 * 2 * 28 * 28

REFERENCE_VARIABLE = "MOMENTSEG_OFFICIAL_REFERENCE"
REFERENCE_FILES = (
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "outputs/official_reference_tiny_fp32.npz",
    "outputs/official_reference_tiny_fp32.json",
)


@pytest.fixture(scope="session")
def official_reference():
    """The authors' tiny checkpoint and their inference's outputs on it (docs/official.md, "The parity
    reference"): 150 MB, so it lives outside the repository; CI sets the variable. A missing reference fails
    every parity test by name rather than skipping them."""
    value = os.environ.get(REFERENCE_VARIABLE)
    if not value:
        pytest.fail(
            f"{REFERENCE_VARIABLE} is not set: point it at the official tiny reference folder "
            '(docs/official.md, "The parity reference"); the parity tests need it',
            pytrace=False,
        )
    folder = Path(value).expanduser()
    missing = [name for name in REFERENCE_FILES if not (folder / name).is_file()]
    if missing:
        pytest.fail(
            f"{REFERENCE_VARIABLE}={folder} lacks {', '.join(missing)}: it must be the official tiny "
            'reference folder (docs/official.md, "The parity reference")',
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from momentseg.model.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "momentseg", "momentseg")


@pytest.fixture(scope="session")
def sa2va_checkpoint(tmp_path_factory):
    from momentseg.model.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "sa2va", "sa2va")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from momentseg.model.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint, device="cpu")


def synthetic_frames(count=12, height=48, width=64):
    """A red disc moving right over a grey background."""
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 60, np.uint8)
        cv2.circle(frame, (8 + 4 * i, height // 2), 9, (230, 40, 40), -1)
        frames.append(frame)
    return frames


@pytest.fixture
def clip():
    from momentseg.video import ArrayFrames

    return ArrayFrames(synthetic_frames(), fps=10.0)


@pytest.fixture
def tiny_options():
    from momentseg.pipeline import SegmentOptions

    return SegmentOptions(keyframes=4, tsg_pixels=TINY_PIXELS, image_pixels=TINY_PIXELS, force_answer=True)


@pytest.fixture
def redis_url(tmp_path):
    """A real Redis on a free loopback port (skipped, with the reason, where redis-server is missing)."""
    import shutil

    from redis_server import redis_server

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install -y redis-server; .ci/run installs it)")
    with redis_server(tmp_path) as url:
        yield url


def nuclio_event(body, content_type="application/json", headers=None):
    """The event Nuclio's Python wrapper hands a handler, made by nuclio-sdk's own deserializer: a body
    sent as bytes arrives parsed when the content type is JSON and parsing succeeds, else as bytes. Any
    other body is taken as already delivered (a dict: JSON Nuclio parsed)."""
    import nuclio_sdk
    from nuclio_sdk.event import EventDeserializerKinds

    if not isinstance(body, bytes):
        return nuclio_sdk.Event(body=body, content_type=content_type, headers=headers or {})
    message = {
        "body": body,
        "content_type": content_type,
        "headers": headers or {},
        "fields": {},
        "trigger": {"kind": "http", "name": "http"},
        "id": "test",
        "method": "POST",
        "path": "/",
        "size": len(body),
        "timestamp": 0,
        "url": "",
        "shard_id": 0,
        "num_shards": 1,
        "type": "",
        "type_version": "",
        "version": "",
    }
    return EventDeserializerKinds.msgpack.value.deserialize(message)
