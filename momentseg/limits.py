"""Size checks on untrusted input that run before any pixel is decoded or any model work starts, and
the limits' settings read from the environment."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import Field, fields
from typing import Any, ClassVar, Protocol

from PIL import Image, UnidentifiedImageError

from momentseg.errors import InvalidInputError

# EXIF orientations that turn the stored image by 90°: decoders that apply them swap width and height
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class ImageTooLargeError(InvalidInputError):
    """An image declares more pixels than accepted."""

    code = "frame_too_large"
    status = 413


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(height, width) of a JPEG or PNG as its header declares it, after EXIF orientation.

    Only the header is read (PIL opens lazily), so a tiny file declaring 16384² pixels is refused
    here instead of being decoded into gigabytes.
    """
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION) if image.format == "JPEG" else None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"the image declares more pixels than can be opened safely; at most {max_pixels} are accepted"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInputError("not a JPEG or PNG image") from None
    if width < 1 or height < 1:
        raise InvalidInputError(f"the image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height}; at most {max_pixels} pixels are accepted")
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return height, width


class EnvSettings(Protocol):
    """A settings dataclass whose ``ENV`` names the environment variable of each field it reads."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    ENV: ClassVar[Mapping[str, str]]


def numbers_from_env(settings: type[EnvSettings], env: Mapping[str, str]) -> dict[str, Any]:
    """The positive numbers a settings dataclass reads from its ``ENV`` variables, checked, each of its
    field's type (int or float)."""
    values = {}
    for field in fields(settings):
        name = settings.ENV.get(field.name)
        if name is None or not env.get(name):
            continue
        kind = int if field.type == "int" else float
        try:
            value = kind(env[name])
        except ValueError:
            raise InvalidInputError(
                f"{name} must be a {'whole ' if kind is int else ''}number, got '{env[name][:40]}'"
            ) from None
        if not 0 < value < math.inf:
            raise InvalidInputError(f"{name} must be positive, got {env[name][:40]}")
        values[field.name] = value
    return values
