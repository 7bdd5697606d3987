"""Failure classes a user can act on. Each message names the input and the limit."""


class MomentSegError(Exception):
    """Base class: every error the tool reports to a user without a stack trace."""

    code = "error"


class InvalidInputError(MomentSegError, ValueError):
    """An input (frames, prompt, option, mask) is malformed or out of range."""

    code = "invalid_input"
