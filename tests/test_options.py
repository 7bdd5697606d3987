"""Each method option is declared once (momentseg.options) and reaches the pipeline with the value given
through every entry point: the command line in-process, the command line through a real ``momentseg serve``,
the webhook worker (and a webhook command's own options) through the function, and ``eval``."""

import argparse
import json
from dataclasses import asdict, fields

import pytest

from momentseg.cli import build_parser, main
from momentseg.cvat.connection import connect
from momentseg.options import SegmentOptions, declarations, describe_options, options_from_args
from momentseg.schemas import request_schema

from conftest import synthetic_frames
from cvat_stub import TOKEN, CvatStub
from function_server import TASK_TOKEN, ServeProcess


def other_value(declared):
    """A valid value other than the default, for every kind of declaration."""
    if declared.type is bool:
        return not declared.default
    if declared.choices:
        return next(c for c in declared.choices if c != declared.default)
    if declared.type is str:
        return "dog"  # the label: the stand-in task has it
    if declared.type is int:
        return declared.default + 1 if declared.default < declared.maximum else declared.default - 1
    return (declared.default + (declared.minimum if declared.default > declared.minimum else declared.maximum)) / 2


WALKED = {d.name: other_value(d) for d in declarations()}
EXPECTED = asdict(SegmentOptions(**WALKED))


def flags(values: dict) -> list[str]:
    """The command line that gives ``values``."""
    out = []
    for declared in declarations():
        if declared.name not in values:
            continue
        value = values[declared.name]
        if declared.type is bool:
            out += [declared.flag] if value != declared.default else []
        else:
            out += [declared.flag, str(declared.none[0]) if value is None else str(value)]
    return out


COMMANDS = {
    "segment": ["segment", "clip.mp4", "--prompt", "p", "--checkpoint", "c"],
    "cvat annotate": ["cvat", "annotate", "--task", "1", "--prompt", "p", "--function", "http://f/"],
    "cvat refine": ["cvat", "refine", "--task", "1", "--object", "2", "--checkpoint", "c"],
    "webhooks worker": ["webhooks", "worker", "--function", "http://f/"],
    "eval": ["eval", "--checkpoint", "c", "--data", "mevis=d", "--out", "o"],
}


def test_every_option_is_declared_with_its_type_range_default_and_help():
    names = [f.name for f in fields(SegmentOptions)]
    described = describe_options()
    assert [d["name"] for d in described] == names and len(names) >= 25
    json.dumps(described, allow_nan=False)  # what the browser API serves
    for item in described:
        assert item["help"] and item["type"] in ("integer", "number", "string", "boolean")
        assert "choices" in item or item["type"] in ("string", "boolean") or item["minimum"] < item["maximum"]
        assert item["flag"].startswith("--") and None not in item.values()
    symbols = {d["name"]: d["symbol"] for d in described if "symbol" in d}
    assert symbols.items() >= {"keyframes": "N", "threshold": "θ", "lam": "λ", "window": "w"}.items()
    # the request schema's option properties come from the declarations and nowhere else
    schema = request_schema()
    assert set(names) <= set(schema["properties"])
    from importlib import resources

    on_disk = json.loads(resources.files("momentseg.schemas").joinpath("segment_request.schema.json").read_text())
    assert not set(names) & set(on_disk["properties"])
    assert schema["properties"]["window"]["type"] == ["integer", "null"]
    assert schema["properties"]["keyframes"] == {
        "type": "integer",
        "description": schema["properties"]["keyframes"]["description"],
        "minimum": 1,
        "maximum": 64,
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_every_option(command):
    parser = build_parser()
    assert options_from_args(parser.parse_args(COMMANDS[command] + flags(WALKED))) == SegmentOptions(**WALKED)
    defaults = options_from_args(parser.parse_args(COMMANDS[command]))
    assert defaults == SegmentOptions()
    nulls = options_from_args(parser.parse_args(COMMANDS[command] + ["--window", "0", "--clear-reach", "-1"]))
    assert (nulls.window, nulls.clear_reach) == (None, None)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--keyframes", "65", "keyframes must be between 1 and 64, got 65"),
        ("--threshold", "x", "threshold takes a number"),
        ("--sampling", "best", "unknown sampling 'best'"),
        ("--window", "-3", "window must be between 1 and 10000"),
    ],
)
def test_a_bad_option_value_is_one_line_and_exit_2(capsys, flag, value, message):
    assert main(COMMANDS["cvat annotate"] + [flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_every_option_reaches_the_pipeline_in_process(tiny_checkpoint, tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    import cv2

    for index, frame in enumerate(synthetic_frames(6)):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), frame[..., ::-1])
    assert (
        main(
            [
                "segment",
                str(folder),
                "--prompt",
                "the red disc",
                "--checkpoint",
                str(tiny_checkpoint),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out"),
                *flags(WALKED),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "out" / "result.json").read_text())["options"] == EXPECTED


@pytest.fixture(scope="module")
def cvat():
    stub = CvatStub()
    stub.add_task(42, synthetic_frames(8), ["dog"], segment_size=8, overlap=0, chunk_size=4)
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def serve(tiny_checkpoint, cvat):
    process = ServeProcess(tiny_checkpoint, cvat.url, TOKEN)
    yield process
    process.close()


def test_every_option_reaches_the_pipeline_of_a_serve_process(serve, cvat, monkeypatch):
    monkeypatch.setenv("CVAT_HOST", cvat.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", TASK_TOKEN)
    runs = len(serve.options_of_runs())
    # the tiny model may find nothing (exit 2); what matters here is what the serving process ran with
    main(["cvat", "annotate", "--task", "42", "--prompt", "the dog", "--function", serve.url, "--json", *flags(WALKED)])
    assert serve.wait_for_runs(runs + 1)[runs] == EXPECTED


def test_the_worker_and_a_webhook_commands_options_reach_the_function(serve, cvat, monkeypatch):
    from momentseg.webhooks.cli import runner_factory
    from momentseg.webhooks.commands import parse_command

    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", TASK_TOKEN)
    worker = dict(WALKED, keyframes=2, threshold=0.6)
    args = build_parser().parse_args(["webhooks", "worker", "--function", serve.url, *flags(worker)])
    command = parse_command("/segment the dog keyframes:5 threshold:0.25 label:dog")
    runs = len(serve.options_of_runs())
    run = runner_factory(args)(
        connect(cvat.url, access_token=TOKEN), {**command.options, "label": command.label}, lambda *_: None
    )
    answer = run({"id": 42}, command.prompt, [])
    expected = dict(EXPECTED, keyframes=5, threshold=0.25)
    assert serve.wait_for_runs(runs + 1)[runs] == expected
    assert answer["options"] == expected and answer["frames"] == list(range(8))


def test_every_option_reaches_the_pipeline_of_eval(tiny_checkpoint, tmp_path, monkeypatch):
    from momentseg.data.synthetic import SyntheticOptions, generate
    from momentseg.pipeline import MomentSegPipeline

    data = generate(
        tmp_path / "synth", train_clips=1, test_clips=1, seed=3, options=SyntheticOptions(frames=6, actions=("moves",))
    )
    seen = []
    original = MomentSegPipeline.run

    def spy(self, frames, prompt, options=None, **kwargs):
        seen.append(options)
        return original(self, frames, prompt, options, **kwargs)

    monkeypatch.setattr(MomentSegPipeline, "run", spy)
    walked = dict(WALKED, output="mask")  # eval scores masks
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data",
                f"mevis={data / 'mevis'}",
                "--out",
                str(tmp_path / "eval"),
                "--device",
                "cpu",
                "--limit",
                "1",
                "--quiet",
                *flags(walked),
            ]
        )
        == 0
    )
    assert seen and all(asdict(options) == asdict(SegmentOptions(**walked)) for options in seen)


def test_flags_not_given_leave_the_namespace_so_eval_keeps_its_official_defaults():
    args = build_parser().parse_args(COMMANDS["eval"] + ["--keyframes", "4"])
    from momentseg.evaluate import EvalOptions
    from momentseg.options import given_options

    options = EvalOptions(method=given_options(args))
    tsg, refvos = options.segment_options(True), options.segment_options(False)
    assert (tsg.keyframes, tsg.find_prompt, tsg.tsg_pixels) == (4, "tsg", 8 * 8 * 28 * 28)
    assert (refvos.keyframes, refvos.find_prompt, refvos.tsg_pixels) == (4, "refvos", SegmentOptions().tsg_pixels)
    assert isinstance(args, argparse.Namespace) and not hasattr(args, "threshold")
