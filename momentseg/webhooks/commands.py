"""What an annotator types in a CVAT issue comment, read as a command.

A comment is a command when its text starts with ``/``; anything else is conversation and is left
alone (the service's own replies never start with ``/``, so it never answers itself).

    /segment <prompt> [label:<name>]    segment the object the prompt describes in the whole task
    /refine <object id> [<prompt>]      re-run one object from the masks a person corrected
    /help                               list the commands

The prompt itself is checked where the model runs (momentseg.pipeline.validate_prompt); this module stays
free of the model's imports so that the webhook endpoint starts light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HELP = (
    "MomentSeg commands (type them as an issue's message or as a comment on an issue):\n"
    "/segment <what to find> [label:<label name>] - masks for the object on every frame of the task, and "
    "the moment it describes tagged on its frames. Example: /segment the man who picks up the phone label:person\n"
    "/refine <object id> [<what to find>] - after you corrected an object's masks on a few frames, re-run it "
    "from your corrections; your edited masks are kept (the description defaults to the one the object was "
    "made from). Example: /refine 3\n"
    "/help - this message"
)

_LABEL = re.compile(r'(?:^|\s)label:(?:"([^"]*)"|(\S*))', re.IGNORECASE)
_OBJECT_ID = re.compile(r"^(?:object\s*)?#?(\d{1,9})(?:\s+(.*))?$", re.IGNORECASE)


class CommandError(ValueError):
    """The comment starts like a command but cannot be run; the message is the reply to post."""


@dataclass(frozen=True)
class Segment:
    prompt: str
    label: str | None


@dataclass(frozen=True)
class Refine:
    object_id: int
    prompt: str | None = None


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
    if word == "segment":
        return _segment(rest)
    if word == "refine":
        match = _OBJECT_ID.match(rest)
        if not match:
            raise CommandError(f"/refine needs the object id first (a number, as in the reply that created the "
                               f"object), got '{rest[:40]}'. Example: /refine 3")
        return Refine(int(match.group(1)), match.group(2) or None)
    if word == "help":
        return Help()
    raise CommandError(f"unknown command '/{word[:30]}'.\n{HELP}")


def _segment(rest: str) -> Segment:
    labels = _LABEL.findall(rest)
    if len(labels) > 1:
        raise CommandError("give label: once. Example: /segment the red car label:car")
    label = None
    if labels:
        label = (labels[0][0] or labels[0][1]).strip()
        if not label:
            raise CommandError('label: needs a name, e.g. label:car or label:"traffic light"')
    prompt = " ".join(_LABEL.sub(" ", rest).split())
    if not prompt:
        raise CommandError("/segment needs a description of the object. Example: /segment the man who picks up "
                           "the phone")
    return Segment(prompt, label)
