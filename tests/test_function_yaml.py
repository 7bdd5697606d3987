"""function.yaml is what CVAT and Nuclio read: it parses, names a handler that exists, and carries
the annotations CVAT lists functions by."""

import importlib
import json
from pathlib import Path

import pytest
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


def read_like_cvat(annotations: dict) -> dict:
    """What CVAT 2.73's lambda manager (cvat/apps/lambda_manager/views.py) does with a function's
    ``metadata.annotations``: an unknown type drops the function, labels are a JSON list with unique names and
    unique attribute names, ``version`` goes through int(), the point counts too; any error there breaks the
    model list for every function."""
    if annotations.get("type") not in CVAT_TYPES:
        raise ValueError(f"unknown function type {annotations.get('type')!r}")
    labels = json.loads(annotations.get("spec") or "[]")
    names = [label["name"] for label in labels]
    if len(set(names)) != len(names):
        raise ValueError("duplicate label names")
    for label in labels:
        attributes = [a["name"] for a in label.get("attributes", [])]
        if len(set(attributes)) != len(attributes):
            raise ValueError(f"duplicate attribute names in label {label['name']}")
        if label.get("type", "any") not in {
            "any",
            "mask",
            "polygon",
            "rectangle",
            "tag",
            "points",
            "polyline",
            "ellipse",
            "cuboid",
            "skeleton",
        }:
            raise ValueError(f"unknown label type {label.get('type')}")
    return {
        "labels": labels,
        "version": int(annotations.get("version", 1)),
        "min_pos_points": int(annotations.get("min_pos_points", 1)),
        "min_neg_points": int(annotations.get("min_neg_points", -1)),
        "startswith_box": bool(annotations.get("startswith_box", False)),
        "help_message": str(annotations.get("help_message", "")),
        "name": annotations["name"],
    }


def test_cvat_reads_the_annotations():
    metadata = load()["metadata"]
    assert metadata["namespace"] == "cvat" and metadata["name"] == "momentseg"
    assert metadata["labels"]["nuclio.io/project-name"] == "cvat"
    annotations = metadata["annotations"]
    assert all(isinstance(v, str) for v in annotations.values())  # Nuclio keeps annotations as strings
    read = read_like_cvat(annotations)
    assert read["version"] >= 1 and read["labels"] and annotations["framework"] == "pytorch"
    assert "--prompt" in read["help_message"] and "frame tags" in read["help_message"]
    assert "startswith_box" not in annotations  # bool("false") is True in CVAT


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"version": "0.1.0"}, "invalid literal for int"),
        ({"spec": '[{"name": "a"}, {"name": "a"}]'}, "duplicate label names"),
        ({"spec": '[{"name": "a", "attributes": [{"name": "x"}, {"name": "x"}]}]'}, "duplicate attribute"),
        ({"spec": "[{name: a}]"}, "Expecting property name"),
        ({"type": "segmenter"}, "unknown function type"),
    ],
)
def test_what_cvat_would_refuse(change, problem):
    with pytest.raises(ValueError, match=problem):
        read_like_cvat({**load()["metadata"]["annotations"], **change})


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
    build = "\n".join(
        d["value"] for d in spec["build"]["directives"]["preCopy"] + spec["build"]["directives"]["postCopy"]
    )
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
