"""What an annotator types in a CVAT issue comment, read as a command.

A comment is a command when its text starts with ``/``; anything else is conversation and is left
alone (the service's own replies never start with ``/``, so it never answers itself).

    /segment <prompt> [label:<name>] [<option>:<value> ...]   segment the object the prompt describes
    /refine <object id> [<prompt>] [<option>:<value> ...]     re-run one object from a person's corrections
    /help                                                     list the commands

An option is any method option by its name (momentseg.options), e.g. ``keyframes:4 threshold:0.3
force_answer:yes``; words that do not name an option stay in the prompt. The prompt itself is checked where
the model runs (momentseg.pipeline.validate_prompt); this module stays free of the model's imports so that
the webhook endpoint starts light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from momentseg.errors import InvalidInputError
from momentseg.options import declaration, parse_value

HELP = (
    "MomentSeg commands (type them as an issue's message or as a comment on an issue):\n"
    "/segment <what to find> [label:<label name>] - masks for the object on every frame of the task, and "
    "the moment it describes tagged on its frames. Example: /segment the man who picks up the phone label:person\n"
    "/refine <object id> [<what to find>] - after you corrected an object's masks on a few frames, re-run it "
    "from your corrections; your edited masks are kept (the description defaults to the one the object was "
    "made from). Example: /refine 3\n"
    "Both take method options as name:value, e.g. keyframes:4 threshold:0.3 window:3 (the list: GET "
    "/momentseg/api/about, or 'momentseg options').\n"
    "/help - this message"
)

_OPTION = re.compile(r'(?:^|\s)([A-Za-z][\w-]*):(?:"([^"]*)"|(\S*))')
_OBJECT_ID = re.compile(r"^(?:object\s*)?#?(\d{1,9})(?:\s+(.*))?$", re.IGNORECASE)


class CommandError(ValueError):
    """The comment starts like a command but cannot be run; the message is the reply to post."""


@dataclass(frozen=True)
class Segment:
    prompt: str
    label: str | None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refine:
    object_id: int
    prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Help:
    pass


Command = Segment | Refine | Help


def parse_command(text: str) -> Command | None:
    """The command a comment carries; None for a comment that is not a command.

    Raises CommandError (its message says what to type instead) for an unknown or malformed command.
    """
    text = (text or "").strip()
    if not text.startswith("/"):
        return None
    word, _, rest = text[1:].partition(" ")
    word = word.strip().lower()
    rest = " ".join(rest.split())
    if word not in ("segment", "refine", "help"):
        raise CommandError(f"unknown command '/{word[:30]}'.\n{HELP}")
    options, rest = _take_options(rest)
    if word == "segment":
        label = options.pop("label", None)
        if not rest:
            raise CommandError(
                "/segment needs a description of the object. Example: /segment the man who picks up the phone"
            )
        return Segment(rest, label, options)
    if word == "refine":
        match = _OBJECT_ID.match(rest)
        if not match:
            raise CommandError(
                f"/refine needs the object id first (a number, as in the reply that created the "
                f"object), got '{rest[:40]}'. Example: /refine 3"
            )
        if "label" in options:
            raise CommandError("/refine keeps the object's label: leave out label:")
        return Refine(int(match.group(1)), match.group(2) or None, options)
    return Help()


def _take_options(rest: str) -> tuple[dict[str, Any], str]:
    """The ``name:value`` method options in a command, and the text without them."""
    options: dict[str, Any] = {}

    def take(match: re.Match) -> str:
        declared = declaration(match.group(1).lower().replace("-", "_"))
        if declared is None:
            return match.group(0)  # not an option: part of the prompt
        if declared.name in options:
            raise CommandError(f"give {declared.name}: once. Example: /segment the red car {declared.name}:...")
        text = match.group(2) if match.group(2) is not None else match.group(3)
        if not text.strip():
            raise CommandError(
                'label: needs a name, e.g. label:car or label:"traffic light"'
                if declared.name == "label"
                else f"{declared.name}: needs a value"
            )
        try:
            options[declared.name] = parse_value(declared, text)
        except InvalidInputError as error:
            raise CommandError(str(error)) from None
        return " "

    rest = " ".join(_OPTION.sub(take, rest).split())
    return options, rest
