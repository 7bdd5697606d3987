"""Failure classes a user can act on. Each message names the input and the limit."""

import re


class MomentSegError(Exception):
    """Base class: every error the tool reports to a user without a stack trace."""

    code = "error"


class InvalidInputError(MomentSegError, ValueError):
    """An input (frames, prompt, option, mask) is malformed or out of range."""

    code = "invalid_input"


def plain_reason(error: BaseException) -> str:
    """An exception's reason on one line, without Python's ``[Errno N]`` prefix: what a person reads."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = re.sub(r"\[Errno -?\d+\]\s*", "", " ".join(str(error).split()))
    return text or type(error).__name__
