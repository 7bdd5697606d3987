"""The method's options, each declared once: type, range or choices, default, help and the paper's symbol.

:class:`SegmentOptions` is the declaration, in the spirit of transformers' ``TrainingArguments``: each
field's metadata (:func:`option`) carries what a person or a program needs to know about it. Everything
else is derived from it, so adding an option is one edit here:

- the command-line flags of ``segment``, ``cvat annotate|refine``, ``webhooks worker`` and ``eval``
  (:func:`add_option_flags`, :func:`given_options`);
- the option properties of the request JSON Schema of the function and ``momentseg serve``
  (:func:`request_properties`), the body a caller sends (:func:`request_options`) and the options a
  request carries (:func:`options_from_request`);
- the ``name:value`` options a webhook command may carry (:func:`parse_value`);
- the list the browser API and the CVAT plugin read (:func:`describe_options`).

Light on purpose (no torch): the webhook endpoint imports it.
"""

from __future__ import annotations

import argparse
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from typing import Any

from momentseg.errors import InvalidInputError
from momentseg.grounding import DEFAULT_TAU, MOMENT_RULES
from momentseg.model.budgets import (
    IMAGE_MAX_PIXELS,
    IMAGE_MIN_PIXELS,
    MASK_UPSAMPLING,
    MAX_NEW_TOKENS,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
)
from momentseg.model.prompts import FIND_PROMPTS, SEG_PROMPTS
from momentseg.propagation import SCORES
from momentseg.sampling import OFFICIAL_WINDOW, SAMPLERS

SMALLEST_PIXELS = 4 * 28 * 28  # a budget below four merged patches leaves no image
MAX_LABEL_CHARS = 200


def option(
    default: Any,
    help: str,
    *,
    symbol: str | None = None,
    choices: typing.Iterable[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    none: tuple[Any, str] | None = None,
):
    """One option's declaration. ``none``: (the command-line value that stands for None, what None means),
    for options whose None is a setting of its own (JSON callers send null)."""
    metadata = {
        "help": help,
        "symbol": symbol,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "maximum": maximum,
        "none": none,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SegmentOptions:
    """Inference options. The defaults are the official inference (``predict_forward_find_seg`` with the
    RefVOS evaluation's settings); each alternative is named: the paper's ablations (Tables 8-9), the
    project spec's readings of the paper, and our extensions."""

    # sampling (Sec. 3.2, Table 8)
    keyframes: int = option(8, "keyframes given to the [SEG] pass", symbol="N", minimum=1, maximum=64)
    sampling: str = option(
        "mcs", "how the keyframes are chosen: Moment-Centric Sampling or a Table 8 baseline", choices=SAMPLERS
    )
    window: int | None = option(
        OFFICIAL_WINDOW,
        "moment window in frames around c* (official 5)",
        symbol="w",
        minimum=1,
        maximum=10_000,
        none=(0, "the spec's ⌊T/K + 0.5⌋"),
    )
    mcs_duplicates: str = option(
        "uniform",
        "when MCS draws a frame twice: uniform keyframes (official) or fill the budget (spec)",
        choices=("uniform", "fill"),
    )
    # grounding (Sec. 3.1)
    threshold: float = option(0.4, "similarity threshold of the moment", symbol="θ", minimum=0, maximum=1)
    moment_rule: str = option(
        "longest", "the moment: the longest run above θ (official) or the run around c* (spec)", choices=MOMENT_RULES
    )
    sigma: float = option(1.0, "width of the Gaussian smoothing the similarity", symbol="σ", minimum=0, maximum=100)
    tau: float = option(
        DEFAULT_TAU, "temperature of the frame-query similarity", symbol="τ", minimum=0.001, maximum=100
    )
    similarity_interpolation: str = option(
        "features",
        "similarity of frames the TSG pass skipped: from interpolated features (official) or scores (paper)",
        choices=("features", "scores"),
    )
    tsg_frames: int = option(100, "most frames the TSG pass sees (by linspace)", minimum=2, maximum=1000)
    tsg_pixels: int = option(
        VIDEO_MAX_PIXELS,
        "most pixels per TSG frame (official RefVOS path 6·6·28²; the TSG evaluation 8·8·28²)",
        minimum=SMALLEST_PIXELS,
        maximum=1 << 24,
    )
    tsg_min_pixels: int = option(
        VIDEO_MIN_PIXELS, "fewest pixels per TSG frame", minimum=SMALLEST_PIXELS, maximum=1 << 24
    )
    find_prompt: str = option(
        "refvos",
        "the [FIND] question: the RefVOS evaluation's, the TSG evaluation's or the paper's",
        choices=FIND_PROMPTS,
    )
    # segmentation (Sec. 3.3)
    image_pixels: int = option(
        IMAGE_MAX_PIXELS, "most pixels per keyframe image", minimum=SMALLEST_PIXELS, maximum=1 << 24
    )
    image_min_pixels: int = option(
        IMAGE_MIN_PIXELS,
        "fewest pixels per keyframe image (a maximum below it lowers it)",
        minimum=SMALLEST_PIXELS,
        maximum=1 << 24,
    )
    seg_prompt: str = option("refvos", "the [SEG] question", choices=SEG_PROMPTS)
    force_answer: bool = option(
        False,
        "teacher-force 'It is [FIND].' / 'It is [SEG].' instead of generating the answers (random-weight test models)",
    )
    max_new_tokens: int = option(MAX_NEW_TOKENS, "most tokens of a generated answer", minimum=1, maximum=1024)
    mask_upsampling: str = option(
        "official", "SAM2 logits to video size: sam2's path (official) or direct", choices=MASK_UPSAMPLING
    )
    # propagation (Sec. 3.4, Table 9)
    anchored_updating: bool = option(True, "BAP anchored updating of the memory (Table 9)")
    adaptive_cleaning: bool = option(True, "BAP adaptive memory cleaning (Table 9)")
    bidirectional: bool = option(True, "BAP propagation backward from the start frame as well as forward (Table 9)")
    lam: float = option(0.9, "an anchor updates the track when Π S^t < λ·S^p (Eq. 8)", symbol="λ", minimum=0, maximum=1)
    bap_score: str = option(
        "presence", "S^t and S^p: σ(object score) (official) or IoU·σ(object score) (spec)", choices=SCORES
    )
    clear_reach: int | None = option(
        7,
        "a memory clear removes tracked frames within this many frames",
        minimum=0,
        maximum=10_000,
        none=(-1, "all tracked memory"),
    )
    # output
    output: str = option("mask", "per-frame masks, or polygons (a polygon track in CVAT)", choices=("mask", "polygon"))
    polygon_tolerance: float = option(1.0, "polygon simplification in pixels", minimum=0, maximum=100)
    label: str = option("object", "label of the object's track")
    seed: int = option(0, "seed of the random sampler", minimum=0, maximum=2**31 - 1)

    def __post_init__(self) -> None:
        for declared in declarations():
            check_value(declared, getattr(self, declared.name))


@dataclass(frozen=True)
class Declaration:
    """What :func:`option` declared about one field of :class:`SegmentOptions`."""

    name: str
    type: type
    nullable: bool
    default: Any
    help: str
    symbol: str | None
    choices: tuple[str, ...] | None
    minimum: float | None
    maximum: float | None
    none: tuple[Any, str] | None

    @property
    def flag(self) -> str:
        """The command-line flag: ``--name``, or ``--no-name`` for a switch that is on by default."""
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.type is bool and self.default else f"--{dashed}"

    @property
    def json_type(self) -> str:
        return {bool: "boolean", int: "integer", float: "number", str: "string"}[self.type]

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (the browser API, the CVAT plugin, ``momentseg options``); keys that do not
        apply (choices, minimum, maximum, symbol, null_means) are left out."""
        described = {
            "name": self.name,
            "type": self.json_type,
            "nullable": self.nullable,
            "default": self.default,
            "choices": list(self.choices) if self.choices else None,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "help": self.help,
            "symbol": self.symbol,
            "flag": self.flag,
            "null_means": self.none[1] if self.none else None,
        }
        return {key: value for key, value in described.items() if value is not None}


@cache
def declarations() -> tuple[Declaration, ...]:
    hints = typing.get_type_hints(SegmentOptions)
    declared = []
    for item in fields(SegmentOptions):
        kinds = [t for t in typing.get_args(hints[item.name]) or (hints[item.name],) if t is not type(None)]
        assert len(kinds) == 1 and item.default is not MISSING, f"option {item.name}: one type and a default"
        declared.append(
            Declaration(
                item.name, kinds[0], type(None) in typing.get_args(hints[item.name]), item.default, **item.metadata
            )
        )
    return tuple(declared)


def declaration(name: str) -> Declaration | None:
    return next((d for d in declarations() if d.name == name), None)


def describe_options() -> list[dict[str, Any]]:
    """Every option as a JSON-able dict: name, type (JSON Schema's), nullable, default, choices?, minimum?,
    maximum?, help, symbol?, flag (the command line's), null_means? (what null stands for)."""
    return [d.describe() for d in declarations()]


def check_value(declared: Declaration, value: Any) -> None:
    """Refuse a value outside the declaration, with a message naming the option and what it takes."""
    name = declared.name
    if value is None:
        if not declared.nullable:
            raise InvalidInputError(f"{name} needs a value")
        return
    if declared.type is bool or isinstance(value, bool):
        if not isinstance(value, bool) or declared.type is not bool:
            raise InvalidInputError(f"{name} must be {declared.json_type}, got {value!r}")
        return
    if declared.type is str:
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} must be text, got {value!r}")
        if declared.choices is not None and value not in declared.choices:
            raise InvalidInputError(f"unknown {name} '{value[:40]}': use one of {', '.join(declared.choices)}")
        if not 1 <= len(value) <= MAX_LABEL_CHARS:
            raise InvalidInputError(f"{name} must have 1 to {MAX_LABEL_CHARS} characters")
        return
    if not isinstance(value, (int, float)) or (declared.type is int and not isinstance(value, int)):
        raise InvalidInputError(f"{name} must be {'an integer' if declared.type is int else 'a number'}, got {value!r}")
    low = -math.inf if declared.minimum is None else declared.minimum
    high = math.inf if declared.maximum is None else declared.maximum
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidInputError(f"{name} must be between {low:g} and {high:g}, got {value}")


def parse_value(declared: Declaration, text: str) -> Any:
    """An option's value from text (a command line, a webhook command), checked against its declaration."""
    text = text.strip()
    if declared.none is not None and text == str(declared.none[0]):
        return None
    value: bool | int | float | str
    if declared.type is bool:
        words = {
            "true": True,
            "yes": True,
            "on": True,
            "1": True,
            "false": False,
            "no": False,
            "off": False,
            "0": False,
        }
        if text.lower() not in words:
            raise InvalidInputError(f"{declared.name} takes yes or no, got '{text[:40]}'")
        value = words[text.lower()]
    elif declared.type in (int, float):
        try:
            value = declared.type(text)
        except ValueError:
            kind = "an integer" if declared.type is int else "a number"
            raise InvalidInputError(f"{declared.name} takes {kind}, got '{text[:40]}'") from None
    else:
        value = text
    check_value(declared, value)
    return value


# --- the command line -----------------------------------------------------------------------------------------


def _help(declared: Declaration) -> str:
    symbol = f"{declared.symbol}: " if declared.symbol else ""
    if declared.type is bool:
        return f"{symbol}{'turn off ' if declared.default else ''}{declared.help}"
    default = f"default {declared.default}"
    if declared.none is not None:
        default += f"; {declared.none[0]}: {declared.none[1]}"
    return f"{symbol}{declared.help} ({default})"


def _argument_type(declared: Declaration):
    def parse(text: str) -> Any:
        try:
            return parse_value(declared, text)
        except InvalidInputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = declared.json_type  # argparse names the type in its messages
    return parse


def add_option_flags(parser: argparse.ArgumentParser, title: str = "method options") -> None:
    """One flag per option; a flag not given leaves the option out of the namespace (its default applies
    where the options are built, so a caller such as ``eval`` can tell given from default)."""
    group = parser.add_argument_group(title, "see 'momentseg options' and docs/method.md")
    for declared in declarations():
        if declared.type is bool:
            group.add_argument(
                declared.flag,
                dest=declared.name,
                action="store_const",
                const=not declared.default,
                default=argparse.SUPPRESS,
                help=_help(declared),
            )
        else:
            group.add_argument(
                declared.flag,
                dest=declared.name,
                type=_argument_type(declared),
                default=argparse.SUPPRESS,
                metavar=declared.name.upper() if not declared.choices else "{" + ",".join(declared.choices) + "}",
                help=_help(declared),
            )


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options a command line gave, by name."""
    return {d.name: getattr(args, d.name) for d in declarations() if hasattr(args, d.name)}


def options_from_args(args: argparse.Namespace) -> SegmentOptions:
    """The options of a command line built with :func:`add_option_flags`; flags not given keep their defaults."""
    return SegmentOptions(**given_options(args))


# --- requests to the function and ``momentseg serve`` ---------------------------------------------------------


def request_properties() -> dict[str, Any]:
    """The JSON Schema properties of the options in a request (merged into segment_request.schema.json)."""
    properties = {}
    for declared in declarations():
        schema: dict[str, Any] = {
            "type": [declared.json_type, "null"] if declared.nullable else declared.json_type,
            "description": _help(declared),
        }
        if declared.choices is not None:
            schema["enum"] = list(declared.choices) + ([None] if declared.nullable else [])
        elif declared.type is str:
            schema.update(minLength=1, maxLength=MAX_LABEL_CHARS)
        elif declared.type in (int, float):
            schema.update(minimum=declared.minimum, maximum=declared.maximum)
        properties[declared.name] = schema
    return properties


def request_options(options: SegmentOptions) -> dict[str, Any]:
    """Every option, by name, as a request to the function carries them: the function runs with exactly
    these values, whatever its own defaults."""
    return asdict(options)


def options_from_request(request: Mapping[str, Any]) -> SegmentOptions:
    """The options a (schema-valid) request carries; the rest keep their defaults."""
    return SegmentOptions(**{d.name: request[d.name] for d in declarations() if d.name in request})


def main() -> None:
    """``python -m momentseg.options``: the declarations as JSON."""
    print(json.dumps(describe_options(), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
