"""``momentseg train``, ``momentseg eval`` and ``momentseg synth``: argparse setup, hooked into momentseg.cli."""

from __future__ import annotations

import argparse
from dataclasses import fields

from momentseg.train.config import TrainConfig

# the options a person changes most; every other TrainConfig field is reachable through --config YAML
TRAIN_FLAGS = (
    "max_steps",
    "batch_size",
    "grad_accumulation",
    "lr",
    "save_every",
    "num_workers",
    "seed",
    "lora_rank",
    "lora_alpha",
    "tsg_frames",
    "temporal_frames",
    "keyframes",
    "tsg_pixels",
    "temporal_pixels",
    "image_pixels",
    "tsg_min_pixels",
    "temporal_min_pixels",
    "image_min_pixels",
    "mixed_precision",
    "find_weight",
    "text_weight",
    "mask_weight",
    "answer_variants",
    "warmup_ratio",
)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's options: defaults, then ``--config``'s file, then the flags given."""
    from momentseg.train.config import load_config

    overrides = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    overrides["data"] = args.data or None
    return load_config(args.config, overrides)


def _run_train(args: argparse.Namespace) -> int:
    from momentseg.train.loop import train

    config = train_config(args)
    final = train(config, resume=args.resume, progress=not args.quiet)
    if final is not None:
        print(f"wrote the trained checkpoint to {final}")
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from momentseg.data.synthetic import SyntheticOptions, generate

    options = SyntheticOptions(
        frames=args.frames,
        size=args.size,
        distractors=args.distractors,
        actions=tuple(args.actions),
        distractor_actions=args.distractor_actions,
        always_name_colour=args.always_name_colour,
    )
    out = generate(args.out, args.train_clips, args.test_clips, args.seed, options)
    print(
        f"wrote {args.train_clips} training and {args.test_clips} held-out clips to {out}/mevis and {out}/charades-sta"
    )
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from momentseg.evaluate import EvalOptions, evaluate
    from momentseg.options import given_options

    options = EvalOptions(
        split=args.split,
        limit=args.limit,
        method=given_options(args),
        device=args.device,
        progress=not args.quiet,
        text_check=args.text_check,
    )
    metrics = evaluate(args.checkpoint, args.data, args.out, options)
    if metrics is not None:
        print(f"metrics: {metrics['summary']}")
        print(f"wrote {args.out}/metrics.json")
    return 0


def register(commands) -> None:
    """Add the train, eval and synth sub-commands to ``momentseg``'s sub-parsers."""
    from momentseg.data import READERS
    from momentseg.data.synthetic import ACTIONS, SyntheticOptions
    from momentseg.options import add_option_flags

    kinds = ", ".join(READERS)
    train = commands.add_parser("train", help="fine-tune MomentSeg on TSG and RefVOS data (accelerate / DDP)")
    train.add_argument("--base", help="Sa2VA- or MomentSeg-layout checkpoint to start from")
    train.add_argument(
        "--data", action="append", metavar="KIND=ROOT[:WEIGHT]", help=f"a dataset (repeatable); KIND one of {kinds}"
    )
    train.add_argument("--out", help="output folder: train_log.jsonl, checkpoints/, checkpoint/")
    train.add_argument("--config", help="YAML file of options (command-line flags win)")
    train.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    train.add_argument("--resume", action="store_true", help="continue from the last saved step in --out")
    # switches default to None, not False: a flag that is not given leaves the config file's value
    switches = {
        "train_image_encoder": "also train SAM2's image encoder",
        "train_vision_tower": "also train the LMM's vision tower (a random base needs it)",
        "gradient_checkpointing": "recompute LMM activations (less memory)",
    }
    for name, text in switches.items():
        train.add_argument("--" + name.replace("_", "-"), action="store_true", default=None, dest=name, help=text)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    defaults = TrainConfig()
    types = {f.name: f.type for f in fields(TrainConfig)}
    for name in TRAIN_FLAGS:
        kind = {"int": int, "float": float}.get(str(types[name]), str)
        train.add_argument(
            "--" + name.replace("_", "-"), type=kind, dest=name, help=f"default {getattr(defaults, name)}"
        )
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser("eval", help="run the pipeline on a benchmark split and score it")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--data", required=True, metavar="KIND=ROOT", help=f"KIND one of {kinds}")
    evaluate.add_argument("--split", help="split (default: the benchmark's evaluation split)")
    evaluate.add_argument("--out", required=True, help="output folder: Annotations/, metrics.json")
    evaluate.add_argument("--limit", type=int, help="only the first N expressions / queries")
    evaluate.add_argument(
        "--text-check",
        action="store_true",
        help="also prompt each expression's video with another object's expression and score "
        "it against the first one's masks: what a model that ignores the text gets",
    )
    evaluate.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    evaluate.add_argument("--quiet", action="store_true")
    add_option_flags(
        evaluate, "method options (default: the official evaluation's; TSG: 8·8·28² pixels and the TSG prompt)"
    )
    evaluate.set_defaults(run=_run_eval)

    synth = commands.add_parser("synth", help="write synthetic clips in the MeViS and Charades-STA layouts")
    synth.add_argument("--out", required=True)
    synth.add_argument("--train-clips", type=int, default=200)
    synth.add_argument("--test-clips", type=int, default=40)
    synth.add_argument("--frames", type=int, default=16)
    synth.add_argument("--size", type=int, default=64)
    synth.add_argument(
        "--distractors",
        type=int,
        default=SyntheticOptions.distractors,
        help=f"objects besides the target (default {SyntheticOptions.distractors})",
    )
    synth.add_argument(
        "--distractor-actions",
        type=float,
        default=SyntheticOptions.distractor_actions,
        help="share of distractors that act too, at another time than the target "
        f"(default {SyntheticOptions.distractor_actions})",
    )
    synth.add_argument("--actions", nargs="+", choices=ACTIONS, default=list(ACTIONS))
    synth.add_argument(
        "--always-name-colour",
        action="store_true",
        help="every expression names the object's colour (none by shape and action alone)",
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_run_synth)
