"""The ``momentseg`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import numpy as np

from momentseg.arguments import port, positive_float
from momentseg.devices import check_device, default_device
from momentseg.errors import MomentSegError, plain_reason
from momentseg.options import add_option_flags, options_from_args

if TYPE_CHECKING:  # imported where used, so that the CLI starts fast
    from tqdm import tqdm

    from momentseg.cvat.task import Runner


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _demo_similarity(num_frames: int, seed: int) -> np.ndarray:
    """A synthetic frame-query similarity: noise plus one bump where the 'action' happens."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)
    center, width = 0.6 * num_frames, 0.08 * num_frames
    return np.clip(
        0.15 + 0.8 * np.exp(-0.5 * ((t - center) / width) ** 2) + 0.05 * rng.standard_normal(num_frames), 0, 1
    )


def _run_demo(args: argparse.Namespace) -> int:
    from momentseg.grounding import longest_moment, moment_seconds
    from momentseg.sampling import SAMPLERS, moment_center, smooth_similarity

    similarity = smooth_similarity(_demo_similarity(args.frames, args.seed))
    center = moment_center(similarity, args.keyframes)
    start, end = longest_moment(similarity, args.threshold)
    result = {
        "frames": args.frames,
        "center_frame": center,
        "keyframes": {name: SAMPLERS[name](similarity, args.keyframes).tolist() for name in SAMPLERS},
        "moment": {
            "start_frame": start,
            "end_frame": end,
            **dict(zip(("start_sec", "end_sec"), moment_seconds(start, end, args.fps), strict=True)),
        },
    }
    print(f"frames {args.frames}, moment centre c* = {center}")
    print(f"moment: frames {start}-{end} ({result['moment']['start_sec']:.2f}s-{result['moment']['end_sec']:.2f}s)")
    for name, frames in result["keyframes"].items():
        print(f"{name:>9}: {json.dumps(frames)}")
    return 0


class _StageBars:
    """One tqdm bar per pipeline stage, on a terminal only (piped stderr keeps just the messages)."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="frame", leave=True, disable=None)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def _run_segment(args: argparse.Namespace) -> int:
    from pathlib import Path

    import cv2

    from momentseg.export import export
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline
    from momentseg.video import open_video
    from momentseg.visualize import write_overlay_video, write_similarity_plot

    options = options_from_args(args)
    device = args.device or default_device()
    check_device(device, "--device")
    out = _output_folder(Path(args.out))
    frames = open_video(args.video, args.fps)
    model = load_checkpoint(args.checkpoint, device=device, dtype=args.dtype)
    result = MomentSegPipeline(model).run(frames, args.prompt, options, progress=_StageBars())
    _remove_previous_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_dict()))
    video_name = Path(args.video).stem
    if args.format == "png":
        masks = out / "masks"
        masks.mkdir(exist_ok=True)
        track = result.tracks[0] if result.tracks else None
        for index, name in enumerate(frames.names):
            mask = (
                track.mask(index, result.width, result.height)
                if track
                else np.zeros((result.height, result.width), bool)
            )
            cv2.imwrite(str(masks / f"{name}.png"), mask.astype(np.uint8) * 255)
    else:
        export(
            result, args.format, out / ("refvos" if args.format == "refvos-png" else f"{args.format}.json"), video_name
        )
    write_overlay_video(frames, result, out / "overlay.mp4")
    write_similarity_plot(result, out / "similarity.png")
    moment = result.moment
    print(f"{result.num_frames} frames, keyframes {result.keyframes}, c* = {result.center_frame}")
    if moment:
        print(f"moment: frames {moment.start_frame}-{moment.end_frame} ({moment.start_sec:.2f}s-{moment.end_sec:.2f}s)")
    else:
        print(f"moment: none ({result.moment_reason})")
    print(f"timings (s): {json.dumps(result.timings)}")
    print(f"wrote {out}")
    return 0


# what `segment` writes; a folder holding only these is a previous output and is replaced whole
SEGMENT_OUTPUTS = {"result.json", "masks", "coco.json", "youtube-vis.json", "refvos", "overlay.mp4", "similarity.png"}


def _output_folder(out):
    """``--out``, checked before the model runs: a new folder, an empty one, or a previous output."""
    import os

    if out.exists():
        if not out.is_dir():
            raise MomentSegError(f"--out '{out}' is a file, not a folder")
        others = sorted(p.name for p in out.iterdir() if p.name not in SEGMENT_OUTPUTS)
        if others:
            raise MomentSegError(
                f"--out '{out}' holds files momentseg did not write ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): give a new or empty folder"
            )
        writable = out
    else:
        writable = next(p for p in out.absolute().parents if p.exists())
        if not writable.is_dir():
            raise MomentSegError(f"--out '{out}' cannot be created: '{writable}' is a file")
    if not os.access(writable, os.W_OK | os.X_OK):
        raise MomentSegError(f"--out '{out}' cannot be written: no write permission on '{writable}'")
    return out


def _remove_previous_outputs(out) -> None:
    """A reused ``--out`` keeps no stale masks: what an earlier run wrote there goes, once this run succeeded."""
    import shutil

    for name in SEGMENT_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _run_tiny_checkpoint(args: argparse.Namespace) -> int:
    from momentseg.model.tiny import write_tiny_checkpoint

    folder = write_tiny_checkpoint(args.dir, args.layout, args.seed)
    print(f"wrote a tiny random-weight {args.layout} checkpoint to {folder}")
    return 0


def _run_options(args: argparse.Namespace) -> int:
    from momentseg.options import describe_options
    from momentseg.schemas import request_schema

    if args.schema:
        print(json.dumps(request_schema(), indent=1, ensure_ascii=False))
        return 0
    described = describe_options()
    if args.json:
        print(json.dumps(described, ensure_ascii=False))
        return 0
    for item in described:
        allowed = (
            ", ".join(item["choices"])
            if "choices" in item
            else f"{item['minimum']}-{item['maximum']}"
            if "minimum" in item
            else item["type"]
        )
        if "null_means" in item:
            allowed += f", or null: {item['null_means']}"
        symbol = f" ({item['symbol']})" if "symbol" in item else ""
        print(f"{item['flag']} / {item['name']}{symbol}: {allowed}; default {item['default']}. {item['help']}")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from momentseg.model.checkpoint import describe_checkpoint

    info = describe_checkpoint(args.checkpoint)
    if args.json:
        print(json.dumps(info))
        return 0
    sam2 = info["sam2"]
    millions = ", ".join(f"{part} {count / 1e6:,.1f} M" for part, count in info["parameters"].items())
    print(f"checkpoint: {info['folder']}")
    print(f"layout: {info['layout']}; heads: {', '.join(info['heads'])}")
    print(
        f"SAM2: {sam2['version']} {sam2['trunk']} at {sam2['image_size']} px (embed {sam2['embed_dim']}, "
        f"stages {sam2['stages']}, global attention {sam2['global_att_blocks']})"
    )
    print(f"parameters: {millions}")
    print(
        f"dtype on disk: {', '.join(info['dtype_on_disk'])}; weights in memory: "
        + ", ".join(f"{gb} GB in {name}" for name, gb in info["memory_gb"].items())
        + " (SAM2 always float32)"
    )
    print(
        "special tokens: "
        + ", ".join(f"{token} {token_id}" for token, token_id in info["special_tokens"].items())
        + f" (embedding rows {info['vocab_size']})"
    )
    for line in info["will_run"]:
        print(f"will run: {line}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    import logging
    import os

    from momentseg.serve import ServeSettings, bind, create_app, make_server
    from momentseg.service import Limits, build_service_from_env, load_pipeline
    from momentseg.webhooks.app import routes_from_env

    device = args.device or default_device()
    check_device(device, "--device")
    settings = ServeSettings.from_env(os.environ)
    Limits.from_env(os.environ)
    webhook_routes = routes_from_env(os.environ, settings)  # none unless a webhook secret is configured
    try:
        sock = bind(args.host, args.port)
    except OSError as error:
        raise MomentSegError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = dict(
        os.environ,
        MOMENTSEG_CHECKPOINT=args.checkpoint,
        MOMENTSEG_DEVICE=device,
        **({"MOMENTSEG_DTYPE": args.dtype} if args.dtype else {}),
    )
    service = build_service_from_env(env, pipeline=load_pipeline(args.checkpoint, device, args.dtype))
    if service.load_error:
        raise MomentSegError(service.load_error)
    host, port = sock.getsockname()[:2]
    print(f"serving MomentSeg on http://{host}:{port}/ (POST a request, see docs/api.md)", flush=True)
    if webhook_routes:
        print(f"answering CVAT webhooks on http://{host}:{port}/webhooks/cvat (see docs/webhooks.md)", flush=True)
    make_server(create_app(service, settings, routes=webhook_routes), sock, settings=settings).run(sockets=[sock])
    return 0


def _cvat_client(args: argparse.Namespace):
    """Credentials from the environment, a credentials file or a prompt; never from the command line,
    where other users of the machine can read them (ps)."""
    import getpass
    import os
    from urllib.parse import urlsplit

    from momentseg.cvat.connection import connect, credentials_from_env, timeouts_from_env

    if args.auth and ":" in args.auth:
        raise MomentSegError(
            "--auth takes a user name only: a password on the command line is visible to other "
            "users (ps); set CVAT_PASSWORD, use --credentials-file, or type it at the prompt"
        )
    if args.host and "@" in urlsplit(args.host if "://" in args.host else f"//{args.host}").netloc:
        raise MomentSegError(
            "--host must not carry user or password: set CVAT_USER/CVAT_PASSWORD or "
            "CVAT_ACCESS_TOKEN, or use --credentials-file"
        )
    env = dict(os.environ)
    if args.credentials_file:
        env["CVAT_CREDENTIALS_FILE"] = args.credentials_file
    credentials = credentials_from_env(env)
    host = args.host or credentials.pop("host") or ""
    credentials.pop("host", None)
    if args.auth:
        password = credentials["password"]
        if not password and sys.stdin.isatty():
            password = getpass.getpass(f"CVAT password for {args.auth}: ")
        credentials = {"access_token": None, "user": args.auth, "password": password}
    return connect(host, **credentials, timeouts=timeouts_from_env(env))


def _runner(args: argparse.Namespace, client):
    from momentseg.cvat.runners import function_runner, local_runner

    options = options_from_args(args)
    if args.function:
        return function_runner(args.function, options, args.fps, progress=None if args.json else _StageBars())
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline

    loaded: list[Runner] = []

    def run(selection, prompt, anchors):
        # loaded once the task and its labels passed their checks: a typo fails in seconds, not after a model load
        if not loaded:
            model = load_checkpoint(args.checkpoint, device=args.device or default_device(), dtype=args.dtype)
            loaded.append(
                local_runner(
                    client, MomentSegPipeline(model), options, args.fps, progress=None if args.json else _StageBars()
                )
            )
        return loaded[0](selection, prompt, anchors)

    return run


def _frame_range(text: str | None) -> dict:
    if not text:
        return {}
    start, _, stop = text.partition(":")
    try:
        return {"frame_start": int(start) if start else None, "frame_stop": int(stop) - 1 if stop else None}
    except ValueError:
        raise MomentSegError(f"--frames must look like a:b (task frames a to b-1), got '{text}'") from None


def _run_cvat_annotate(args: argparse.Namespace) -> int:
    from momentseg.cvat.annotate import annotate_task

    if args.task is None:  # a project or a list of tasks: one run per task on the webhook queue
        from momentseg.webhooks.cli import run_batch

        return run_batch(args, lambda: _cvat_client(args))
    if not args.prompt:
        raise MomentSegError("give --prompt, the description of the object to find")
    if not (args.function or args.checkpoint):
        raise MomentSegError("give --function URL (the deployed function or momentseg serve) or --checkpoint PATH")
    client = _cvat_client(args)
    options = options_from_args(args)
    summary = annotate_task(
        client,
        args.task,
        args.prompt,
        options.label,
        _runner(args, client),
        frames=_frame_range(args.frames),
        job_id=args.job,
        output=options.output,
        moment_label=args.moment_label,
        create_labels=args.create_labels,
        create_attributes=args.create_attributes,
    )
    if args.json:
        print(json.dumps(summary.to_json()))
        return 0
    moment = summary.moment
    written = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in summary.written.items() if count)
    print(
        f"task {summary.task_id}: object {summary.object_id} on '{summary.label}' ({written}); "
        f"{summary.frames} frames read, keyframes {summary.keyframes}, c* = {summary.center_frame}"
    )
    if moment:
        print(
            f"moment: frames {moment['start_frame']}-{moment['end_frame']} "
            f"({moment['start_sec']:.2f}s-{moment['end_sec']:.2f}s), tagged '{args.moment_label}'"
        )
    for note in summary.notes:
        print(f"note: {note}")
    print(f"done in {summary.seconds:.1f}s: {summary.link}")
    return 0


def _run_cvat_refine(args: argparse.Namespace) -> int:
    from momentseg.cvat.refine import refine_object

    client = _cvat_client(args)
    summary = refine_object(client, args.task, args.object, _runner(args, client), prompt=args.prompt)
    if args.json:
        print(json.dumps(summary.to_json()))
        return 0
    written = summary.written
    print(
        f"task {summary.task_id}, object {summary.object_id}: anchors on frames {summary.anchors}; a person's "
        f"shapes kept on {len(summary.kept)} frames; the tool's shapes: {written['updated']} updated, "
        f"{written['created']} added, {written['deleted']} removed"
    )
    for note in summary.notes:
        print(f"note: {note}")
    print(f"done in {summary.seconds:.1f}s: {summary.link}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from momentseg.export import ExportSet, export
    from momentseg.result import SegmentResult

    result: ExportSet | SegmentResult
    if args.task is not None:
        from momentseg.cvat.export import task_export

        result = task_export(_cvat_client(args), args.task, args.object)
        name = args.video_name or f"task_{args.task}"
    else:
        try:
            text = Path(args.source).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise MomentSegError(f"cannot read '{args.source}': {plain_reason(error)}") from None
        try:
            result = SegmentResult.from_dict(json.loads(text))
        except ValueError as error:  # not JSON, or InvalidInputError naming the field
            raise MomentSegError(f"'{args.source}' is not a momentseg result.json: {plain_reason(error)}") from None
        name = args.video_name or Path(args.source).parent.name or "video"
    print(f"wrote {export(result, args.format, args.out, name)}")
    return 0


def _add_cvat_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "CVAT connection (defaults: CVAT_HOST, CVAT_ACCESS_TOKEN or CVAT_USER/CVAT_PASSWORD)"
    )
    group.add_argument("--host", help="CVAT server URL")
    group.add_argument(
        "--auth",
        metavar="USER",
        help="log in as USER (password from CVAT_PASSWORD, the "
        "credentials file or a prompt; never on the command line)",
    )
    group.add_argument(
        "--credentials-file",
        help="KEY=VALUE lines: CVAT_ACCESS_TOKEN, or CVAT_USER and CVAT_PASSWORD (default: CVAT_CREDENTIALS_FILE)",
    )


def _add_runner_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("where the model runs (one of --function, --checkpoint)")
    where = group.add_mutually_exclusive_group(required=required)
    where.add_argument("--function", help="URL of the deployed function or of momentseg serve")
    where.add_argument("--checkpoint", help="run the model in this process from this checkpoint folder or hub id")
    group.add_argument("--device", help="cuda or cpu, with --checkpoint (default: cuda when present)")
    _add_dtype_option(group)
    group.add_argument("--fps", type=positive_float, help="frame rate for the moment in seconds (default 30)")


def _add_dtype_option(parser) -> None:
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float16", "float32"],
        help="dtype of the LMM and heads (default: bfloat16 on CUDA, float32 on CPU)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="momentseg", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run MCS and moment prediction on a synthetic similarity curve")
    demo.add_argument("--frames", type=int, default=300)
    demo.add_argument("--keyframes", type=int, default=8)
    demo.add_argument("--threshold", type=float, default=0.4)
    demo.add_argument("--fps", type=positive_float, default=30.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)

    segment = commands.add_parser("segment", help="segment the object a prompt describes in a video")
    segment.add_argument("video", help="a video file or a folder of frames")
    segment.add_argument("--prompt", required=True)
    segment.add_argument("--checkpoint", required=True, help="checkpoint folder or hub id")
    segment.add_argument("--out", default="out", help="output folder (default ./out)")
    segment.add_argument("--format", choices=["png", "coco", "youtube-vis", "refvos-png"], default="png")
    segment.add_argument("--fps", type=positive_float, help="frame rate of a frame folder (default 30)")
    segment.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    _add_dtype_option(segment)
    add_option_flags(segment)
    segment.set_defaults(run=_run_segment)

    serve = commands.add_parser("serve", help="the CVAT function's service on a local HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port, default=8080, help="0: any free port (default 8080)")
    serve.add_argument("--checkpoint", required=True, help="checkpoint folder or hub id")
    serve.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    _add_dtype_option(serve)
    serve.set_defaults(run=_run_serve)

    cvat = commands.add_parser("cvat", help="annotate CVAT tasks").add_subparsers(dest="cvat_command", required=True)
    annotate = cvat.add_parser(
        "annotate",
        help="add the object a prompt describes to a task: per-frame masks "
        "(or a polygon track) and the moment as frame tags",
    )
    which = annotate.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", type=int)
    which.add_argument("--project", type=int, help="queue one run per task of this project (see --batch)")
    which.add_argument("--tasks", metavar="FILE", help="queue one run per row task,label,prompt of this CSV file")
    annotate.add_argument("--job", type=int, help="only this job of the task")
    annotate.add_argument("--json", action="store_true", help="print one JSON object")
    annotate.add_argument("--prompt", help="what to find (with --task or --project)")
    annotate.add_argument("--frames", help="a:b, task frames a to b-1 (default: the whole task)")
    annotate.add_argument("--moment-label", default="moment", help="tag label of the moment (default moment)")
    annotate.add_argument("--create-labels", action="store_true", help="create the moment label if missing")
    annotate.add_argument(
        "--create-attributes",
        action="store_true",
        help="add the object/prompt/MCS/momentseg attributes to the label (see docs/cvat.md)",
    )
    _add_cvat_connection(annotate)
    _add_runner_options(annotate, required=False)  # a batch runs on the queue's workers
    add_option_flags(annotate)
    from momentseg.webhooks.cli import add_batch_options

    add_batch_options(annotate)
    annotate.set_defaults(run=_run_cvat_annotate)

    refine = cvat.add_parser("refine", help="re-propagate an object from a person's corrections")
    refine.add_argument("--task", type=int, required=True)
    refine.add_argument("--object", type=int, required=True, help="the object id annotate printed (its group)")
    refine.add_argument("--prompt", help="the prompt, when the object does not carry it")
    refine.add_argument("--json", action="store_true", help="print one JSON object")
    _add_cvat_connection(refine)
    _add_runner_options(refine)
    add_option_flags(refine)
    refine.set_defaults(run=_run_cvat_refine)

    export_parser = commands.add_parser("export", help="export a result.json or a CVAT task")
    source = export_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="a result.json written by momentseg segment")
    source.add_argument("--task", type=int, help="a CVAT task id")
    export_parser.add_argument("--object", type=int, nargs="*", help="only these object ids (with --task)")
    export_parser.add_argument("--format", choices=["coco", "youtube-vis", "refvos-png"], required=True)
    export_parser.add_argument("--out", required=True, help="a JSON file, or a folder for refvos-png")
    export_parser.add_argument("--video-name", help="video name in the export (default from the source)")
    _add_cvat_connection(export_parser)
    export_parser.set_defaults(run=_run_export)

    tiny = commands.add_parser("tiny-checkpoint", help="write a tiny random-weight checkpoint (tests, demos)")
    tiny.add_argument("dir")
    tiny.add_argument("--layout", choices=["official", "momentseg", "sa2va"], default="momentseg")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_run_tiny_checkpoint)

    options = commands.add_parser(
        "options",
        help="the method options: name, values, default, meaning (the same "
        "for every command, the function and webhook commands)",
    )
    options.add_argument("--json", action="store_true", help="print them as one JSON list")
    options.add_argument("--schema", action="store_true", help="print the request JSON Schema of the function")
    options.set_defaults(run=_run_options)

    info = commands.add_parser("info", help="what a checkpoint holds and what will run with it (reads no weights)")
    info.add_argument("checkpoint", help="checkpoint folder or hub id")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_run_info)

    from momentseg.train.cli import register as register_training

    register_training(commands)
    from momentseg.webhooks.cli import register as register_webhooks

    register_webhooks(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 with one line on stderr for bad input, 1 with one line for an internal error."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed on one line
        return done.code if isinstance(done.code, int) else 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        _say("momentseg: interrupted")
        return 130
    except (MomentSegError, OSError, ValueError) as error:
        if args.debug:
            raise
        _say(f"momentseg: error: {_one_line(error)}")
        return 2
    except Exception as error:
        if args.debug:
            raise
        _say(
            f"momentseg: internal error ({type(error).__name__}: {_one_line(error)}); rerun as "
            "'momentseg --debug ...' for the traceback"
        )
        return 1


def _say(line: str) -> None:
    """One line to stderr in one write: ranks of a distributed run that fail together share the terminal,
    and print's separate newline let their lines run into each other."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _one_line(error: BaseException) -> str:
    text = plain_reason(error)
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in text:
        text = f"'{error.filename}': {text}"  # an OSError's reason alone does not say which file
    return text if len(text) <= 500 else text[:500] + "…"


if __name__ == "__main__":
    sys.exit(main())
