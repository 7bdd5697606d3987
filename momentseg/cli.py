"""The ``momentseg`` command line."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from momentseg.errors import MomentSegError


def _demo_similarity(num_frames: int, seed: int) -> np.ndarray:
    """A synthetic frame-query similarity: noise plus one bump where the 'action' happens."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)
    center, width = 0.6 * num_frames, 0.08 * num_frames
    return np.clip(0.15 + 0.8 * np.exp(-0.5 * ((t - center) / width) ** 2) + 0.05 * rng.standard_normal(num_frames), 0, 1)


def _run_demo(args: argparse.Namespace) -> int:
    from momentseg.grounding import moment_seconds, predict_moment
    from momentseg.sampling import SAMPLERS, moment_center, moment_window

    similarity = _demo_similarity(args.frames, args.seed)
    center = moment_center(similarity, args.keyframes)
    window = moment_window(similarity, args.keyframes)
    start, end = predict_moment(similarity, center, args.threshold, window=window[1] - window[0] + 1)
    result = {
        "frames": args.frames,
        "center_frame": center,
        "keyframes": {name: SAMPLERS[name](similarity, args.keyframes).tolist() for name in SAMPLERS},
        "moment": {"start_frame": start, "end_frame": end, **dict(zip(("start_sec", "end_sec"), moment_seconds(start, end, args.fps)))},
    }
    print(f"frames {args.frames}, moment centre c* = {center}")
    print(f"moment: frames {start}-{end} ({result['moment']['start_sec']:.2f}s-{result['moment']['end_sec']:.2f}s)")
    for name, frames in result["keyframes"].items():
        print(f"{name:>9}: {json.dumps(frames)}")
    return 0


def _options_from(args: argparse.Namespace):
    from momentseg.pipeline import SegmentOptions

    return SegmentOptions(
        keyframes=args.keyframes, sampling=args.sampling, threshold=args.threshold, lam=args.lam,
        anchored_updating=not args.no_anchored_updating, adaptive_cleaning=not args.no_adaptive_cleaning,
        bidirectional=not args.no_bidirectional, output="polygon" if args.polygons else "mask", label=args.label,
        tsg_pixels=args.tsg_pixels, image_pixels=args.image_pixels,
    )


class _StageBars:
    """One tqdm bar per pipeline stage."""

    def __init__(self) -> None:
        self.bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="frame", leave=True)
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

    options = _options_from(args)
    frames = open_video(args.video, args.fps)
    model = load_checkpoint(args.checkpoint, device=args.device)
    result = MomentSegPipeline(model).run(frames, args.prompt, options, progress=_StageBars())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_dict()))
    video_name = Path(args.video).stem
    if args.format == "png":
        masks = out / "masks"
        masks.mkdir(exist_ok=True)
        track = result.tracks[0] if result.tracks else None
        for index, name in enumerate(frames.names):
            mask = track.mask(index, result.width, result.height) if track else np.zeros((result.height, result.width), bool)
            cv2.imwrite(str(masks / f"{name}.png"), mask.astype(np.uint8) * 255)
    else:
        export(result, args.format, out / ("refvos" if args.format == "refvos-png" else f"{args.format}.json"), video_name)
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


def _run_tiny_checkpoint(args: argparse.Namespace) -> int:
    from momentseg.model.tiny import write_tiny_checkpoint

    folder = write_tiny_checkpoint(args.dir, args.layout, args.seed)
    print(f"wrote a tiny random-weight {args.layout} checkpoint to {folder}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    import logging
    import os

    from momentseg.serve import make_server
    from momentseg.service import build_service_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = dict(os.environ, MOMENTSEG_CHECKPOINT=args.checkpoint, MOMENTSEG_DEVICE=args.device or _default_device())
    service = build_service_from_env(env)
    if service.load_error:
        raise MomentSegError(f"the model did not load: {service.load_error}")
    server = make_server(service, args.host, args.port)
    print(f"serving MomentSeg on http://{args.host}:{server.server_port}/ (POST a request, see docs/api.md)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cvat_client(args: argparse.Namespace):
    import os

    from momentseg.cvat.connection import connect

    host = args.host or os.environ.get("CVAT_HOST", "")
    user, password = None, None
    if args.auth:
        user, _, password = args.auth.partition(":")
        password = password or os.environ.get("CVAT_PASSWORD") or os.environ.get("PASS")
    elif not os.environ.get("CVAT_ACCESS_TOKEN"):
        user, password = os.environ.get("CVAT_USER"), os.environ.get("CVAT_PASSWORD")
    return connect(host, access_token=None if args.auth else os.environ.get("CVAT_ACCESS_TOKEN"),
                   user=user, password=password)


def _runner(args: argparse.Namespace, client):
    from momentseg.cvat.runners import function_runner, local_runner

    options = _options_from(args)
    if args.function:
        return function_runner(args.function, options, args.fps)
    if not args.checkpoint:
        raise MomentSegError("give --function URL (the deployed function or momentseg serve), or --local --checkpoint PATH")
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline

    return local_runner(client, MomentSegPipeline(load_checkpoint(args.checkpoint, device=args.device)), options, args.fps)


def _frame_range(text: str | None) -> dict:
    if not text:
        return {}
    start, _, stop = text.partition(":")
    try:
        return {"frame_start": int(start) if start else None, "frame_stop": int(stop) - 1 if stop else None}
    except ValueError:
        raise MomentSegError(f"--frames must look like a:b (task frames a to b-1), got '{text}'") from None


def _run_cvat_annotate(args: argparse.Namespace) -> int:
    from momentseg.cvat.workflows import annotate_task

    client = _cvat_client(args)
    summary = annotate_task(client, args.task, args.prompt, args.label, _runner(args, client),
                            frames=_frame_range(args.frames), moment_label=args.moment_label,
                            create_labels=args.create_labels, create_attributes=args.create_attributes)
    moment = summary.moment
    print(f"task {summary.task_id}: track {summary.track_id} on '{args.label}', {summary.frames} frames, "
          f"keyframes {summary.keyframes}")
    if moment:
        where = f"interval on '{args.moment_label}'" if summary.moment_written else "not written"
        print(f"moment: frames {moment['start_frame']}-{moment['end_frame']} ({where})")
    for note in summary.notes:
        print(f"note: {note}")
    print(f"done in {summary.seconds:.1f}s: {summary.link}")
    return 0


def _run_cvat_refine(args: argparse.Namespace) -> int:
    from momentseg.cvat.workflows import refine_track

    client = _cvat_client(args)
    summary = refine_track(client, args.task, args.track, _runner(args, client), prompt=args.prompt)
    print(f"task {summary.task_id}, track {summary.track_id}: {len(summary.human_frames)} hand-made shapes kept "
          f"(frames {summary.human_frames}), {summary.replaced} automatic shapes rewritten in {summary.seconds:.1f}s")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from momentseg.export import export
    from momentseg.result import SegmentResult

    if args.task is not None:
        from momentseg.cvat.workflows import result_from_task

        result = result_from_task(_cvat_client(args), args.task, args.track)
        name = args.video_name or f"task_{args.task}"
    else:
        try:
            result = SegmentResult.from_dict(json.loads(Path(args.source).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise MomentSegError(f"'{args.source}' is not a momentseg result.json ({error})") from None
        name = args.video_name or Path(args.source).parent.name or "video"
    print(f"wrote {export(result, args.format, args.out, name)}")
    return 0


def _add_cvat_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CVAT connection (defaults: CVAT_HOST, CVAT_ACCESS_TOKEN or CVAT_USER/CVAT_PASSWORD)")
    group.add_argument("--host", help="CVAT server URL")
    group.add_argument("--auth", help="USER[:PASSWORD] (password from CVAT_PASSWORD or PASS when omitted)")


def _add_runner_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the model runs")
    group.add_argument("--function", help="URL of the deployed function or of momentseg serve")
    group.add_argument("--local", action="store_true", help="run in this process (needs --checkpoint)")
    group.add_argument("--checkpoint", help="checkpoint folder or hub id, with --local")
    group.add_argument("--device", help="cuda or cpu, with --local")
    group.add_argument("--fps", type=float, help="frame rate for the moment in seconds (default 30)")


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    from momentseg.sampling import SAMPLERS

    group = parser.add_argument_group("method options")
    group.add_argument("--keyframes", type=int, default=8, help="N, keyframes for the [SEG] pass (default 8)")
    group.add_argument("--sampling", choices=sorted(SAMPLERS), default="mcs")
    group.add_argument("--threshold", type=float, default=0.4, help="θ for the moment (default 0.4)")
    group.add_argument("--lam", type=float, default=0.9, help="λ of Eq. 8 (default 0.9)")
    group.add_argument("--no-anchored-updating", action="store_true")
    group.add_argument("--no-adaptive-cleaning", action="store_true")
    group.add_argument("--no-bidirectional", action="store_true")
    group.add_argument("--tsg-pixels", type=int, default=8 * 8 * 28 * 28, help="pixels per TSG frame")
    group.add_argument("--image-pixels", type=int, default=16 * 16 * 28 * 28, help="pixels per keyframe image")
    group.add_argument("--polygons", action="store_true", help="polygon shapes instead of masks")
    group.add_argument("--label", default="object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momentseg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run MCS and moment prediction on a synthetic similarity curve")
    demo.add_argument("--frames", type=int, default=300)
    demo.add_argument("--keyframes", type=int, default=8)
    demo.add_argument("--threshold", type=float, default=0.4)
    demo.add_argument("--fps", type=float, default=30.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)

    segment = commands.add_parser("segment", help="segment the object a prompt describes in a video")
    segment.add_argument("video", help="a video file or a folder of frames")
    segment.add_argument("--prompt", required=True)
    segment.add_argument("--checkpoint", required=True, help="checkpoint folder or hub id")
    segment.add_argument("--out", default="out", help="output folder (default ./out)")
    segment.add_argument("--format", choices=["png", "coco", "youtube-vis", "refvos-png"], default="png")
    segment.add_argument("--fps", type=float, help="frame rate of a frame folder (default 30)")
    segment.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    _add_pipeline_options(segment)
    segment.set_defaults(run=_run_segment)

    serve = commands.add_parser("serve", help="the CVAT function's service on a local HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--checkpoint", required=True, help="checkpoint folder or hub id")
    serve.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    serve.set_defaults(run=_run_serve)

    cvat = commands.add_parser("cvat", help="annotate CVAT tasks").add_subparsers(dest="cvat_command", required=True)
    annotate = cvat.add_parser("annotate", help="write a mask track and the moment for a prompt to a task")
    annotate.add_argument("--task", type=int, required=True)
    annotate.add_argument("--prompt", required=True)
    annotate.add_argument("--frames", help="a:b, task frames a to b-1 (default: the whole task)")
    annotate.add_argument("--moment-label", default="moment", help="label of the moment interval (default moment)")
    annotate.add_argument("--create-labels", action="store_true", help="create the moment label if missing")
    annotate.add_argument("--create-attributes", action="store_true",
                          help="add prompt/score/keyframe/momentseg attributes to the label")
    _add_cvat_connection(annotate)
    _add_runner_options(annotate)
    _add_pipeline_options(annotate)
    annotate.set_defaults(run=_run_cvat_annotate)

    refine = cvat.add_parser("refine", help="re-propagate a track from a person's corrections")
    refine.add_argument("--task", type=int, required=True)
    refine.add_argument("--track", type=int, required=True)
    refine.add_argument("--prompt", help="the prompt, when the track does not carry it")
    _add_cvat_connection(refine)
    _add_runner_options(refine)
    _add_pipeline_options(refine)
    refine.set_defaults(run=_run_cvat_refine)

    export_parser = commands.add_parser("export", help="export a result.json or a CVAT task")
    source = export_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="a result.json written by momentseg segment")
    source.add_argument("--task", type=int, help="a CVAT task id")
    export_parser.add_argument("--track", type=int, nargs="*", help="only these track ids (with --task)")
    export_parser.add_argument("--format", choices=["coco", "youtube-vis", "refvos-png"], required=True)
    export_parser.add_argument("--out", required=True, help="a JSON file, or a folder for refvos-png")
    export_parser.add_argument("--video-name", help="video name in the export (default from the source)")
    _add_cvat_connection(export_parser)
    export_parser.set_defaults(run=_run_export)

    tiny = commands.add_parser("tiny-checkpoint", help="write a tiny random-weight checkpoint (tests, demos)")
    tiny.add_argument("dir")
    tiny.add_argument("--layout", choices=["momentseg", "sa2va"], default="momentseg")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_run_tiny_checkpoint)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MomentSegError as error:
        print(f"momentseg: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
