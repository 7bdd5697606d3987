"""Where the model runs: the one default device, and the check that a requested device is present."""

from __future__ import annotations

import re

from momentseg.errors import InvalidInputError


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``: what every command and service uses unless told."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str, setting: str) -> None:
    """Refuse a device this machine does not have, before anything is loaded onto it."""
    import torch

    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise InvalidInputError(f"{setting} must be 'cuda', 'cuda:N' or 'cpu', got '{device[:40]}'")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInputError(f"{setting} is {device} but no GPU is visible")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InvalidInputError(f"{setting} is {device} but only {torch.cuda.device_count()} GPU(s) are visible")
