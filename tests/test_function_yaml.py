"""function.yaml is what CVAT and Nuclio read: it parses, names a handler that exists, and carries
the annotations CVAT lists functions by."""

import importlib
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CVAT_TYPES = {"detector", "interactor", "reid", "tracker"}


def load():
    return yaml.safe_load((ROOT / "function.yaml").read_text())


def test_handler_exists_with_init_context():
    spec = load()["spec"]
    module_name, function_name = spec["handler"].split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function_name)) and callable(module.init_context)
    assert spec["runtime"].startswith("python:")


def test_cvat_annotations():
    metadata = load()["metadata"]
    assert metadata["namespace"] == "cvat" and metadata["name"] == "momentseg"
    assert metadata["labels"]["nuclio.io/project-name"] == "cvat"
    annotations = metadata["annotations"]
    assert annotations["type"] in CVAT_TYPES and annotations["name"] and annotations["framework"] == "pytorch"
    labels = json.loads(annotations["spec"])
    assert isinstance(labels, list) and labels
    assert len({label["name"] for label in labels}) == len(labels)
    assert "prompt" in annotations["help_message"]


def test_gpu_whole_video_settings():
    spec = load()["spec"]
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1
    trigger = next(iter(spec["triggers"].values()))
    assert trigger["kind"] == "http" and trigger["maxWorkers"] == 1
    assert trigger["attributes"]["maxRequestBodySize"] >= 512 * 2**20
    assert int(spec["eventTimeout"].rstrip("s")) >= 600
    assert spec["platform"]["attributes"]["network"] == "cvat_cvat"
    env = {item["name"]: item.get("value") for item in spec["env"]}
    assert {"MOMENTSEG_CHECKPOINT", "MOMENTSEG_DEVICE", "CVAT_HOST"} <= set(env)
    assert env["MOMENTSEG_DEVICE"] == "cuda"
    assert int(env["MOMENTSEG_MAX_BODY_BYTES"]) <= trigger["attributes"]["maxRequestBodySize"]
    build = "\n".join(d["value"] for d in spec["build"]["directives"]["preCopy"] + spec["build"]["directives"]["postCopy"])
    assert "torch==2.14.1" in build and "sam2==1.1.0" in build and "SAM2_BUILD_CUDA=0" in build
    assert "cuda" in spec["build"]["baseImage"]


def test_init_context_with_a_missing_checkpoint_serves_503(monkeypatch):
    import logging

    import nuclio_sdk
    import nuclio_sdk.test

    import serverless.main as function

    monkeypatch.setenv("MOMENTSEG_CHECKPOINT", "/no/such/checkpoint")
    monkeypatch.setenv("MOMENTSEG_DEVICE", "cpu")
    context = nuclio_sdk.Context(logger=nuclio_sdk.Logger(logging.DEBUG, "test"), platform=nuclio_sdk.test.Platform())
    function.init_context(context)
    response = function.handler(context, nuclio_sdk.Event(body={"prompt": "dog", "frames": ["AAAA"]}))
    assert response.status_code == 503
    assert json.loads(response.body)["error"] == "model_not_loaded"
