"""Connecting to CVAT with cvat-sdk, and CVAT failures as errors a user can act on."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Mapping

import cv2
import numpy as np
import urllib3
from cvat_sdk import Client, make_client
from cvat_sdk.api_client import exceptions as api_exceptions

from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.video import DEFAULT_FPS, FrameSource


class CvatError(MomentSegError):
    """CVAT answered with an error the user cannot fix from here."""

    code = "cvat_error"
    status = 502


class TaskNotFoundError(CvatError):
    code = "task_not_found"
    status = 404


class CvatNotAuthorisedError(CvatError):
    code = "cvat_not_authorised"
    status = 403


class CvatUnreachableError(CvatError):
    code = "cvat_unreachable"
    status = 502


class CvatTimeoutError(CvatUnreachableError):
    code = "cvat_timeout"
    status = 504


class CvatConfigurationError(CvatError):
    code = "cvat_not_configured"
    status = 503


@contextmanager
def cvat_errors(what: str) -> Iterator[None]:
    """Turn cvat-sdk and network failures during ``what`` into named errors."""
    try:
        yield
    except api_exceptions.NotFoundException as error:
        raise TaskNotFoundError(f"{what}: not found on the CVAT server") from error
    except (api_exceptions.UnauthorizedException, api_exceptions.ForbiddenException) as error:
        raise CvatNotAuthorisedError(f"{what}: CVAT refused the credentials (HTTP {error.status})") from error
    except api_exceptions.ApiException as error:
        raise CvatError(f"{what}: CVAT answered HTTP {error.status} {error.reason}") from error
    except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
        raise CvatTimeoutError(f"{what}: CVAT did not answer in time") from error
    except (urllib3.exceptions.HTTPError, ConnectionError) as error:
        raise CvatUnreachableError(f"{what}: CVAT cannot be reached ({type(error).__name__})") from error


def connect(host: str, *, access_token: str | None = None, user: str | None = None,
            password: str | None = None) -> Client:
    """A logged-in cvat-sdk client (a personal access token, or user and password)."""
    if not host:
        raise CvatConfigurationError("no CVAT server configured: set CVAT_HOST")
    if access_token:
        credentials = {"access_token": access_token}
    elif user and password:
        credentials = {"credentials": (user, password)}
    else:
        raise CvatConfigurationError("no CVAT credentials: set CVAT_ACCESS_TOKEN, or CVAT_USER and CVAT_PASSWORD")
    with cvat_errors(f"connecting to {host}"):
        client = make_client(host, **credentials)
    client.config.status_check_period = 0.1
    return client


def connect_from_env(env: Mapping[str, str] | None = None) -> Client:
    """Connect with ``CVAT_HOST`` and ``CVAT_ACCESS_TOKEN`` or ``CVAT_USER`` / ``CVAT_PASSWORD``."""
    env = os.environ if env is None else env
    return connect(env.get("CVAT_HOST", ""), access_token=env.get("CVAT_ACCESS_TOKEN"),
                   user=env.get("CVAT_USER"), password=env.get("CVAT_PASSWORD"))


def select_frames(size: int, deleted: set[int], start: int | None = None, stop: int | None = None,
                  step: int | None = None) -> list[int]:
    """Task frame numbers in [start, stop] (inclusive) every ``step``, deleted frames left out."""
    start = 0 if start is None else start
    stop = size - 1 if stop is None else stop
    step = step or 1
    if not 0 <= start < size or not start <= stop < size:
        raise InvalidInputError(f"frame range {start}:{stop} is outside the task's frames 0:{size - 1}")
    numbers = [n for n in range(start, stop + 1, step) if n not in deleted]
    if not numbers:
        raise InvalidInputError(f"no frames left in {start}:{stop}:{step} after removing deleted frames")
    return numbers


class TaskFrames(FrameSource):
    """A CVAT task's frames, fetched and decoded one at a time as they are visited."""

    def __init__(self, client: Client, task_id: int, start: int | None = None, stop: int | None = None,
                 step: int | None = None, fps: float | None = None, numbers: list[int] | None = None):
        with cvat_errors(f"task {task_id}"):
            self.task = client.tasks.retrieve(task_id)
            meta = self.task.get_meta()
        if not meta.size or not meta.frames:
            raise InvalidInputError(f"task {task_id} has no video or images")
        self.task_id = task_id
        deleted = set(meta.deleted_frames or [])
        if numbers is None:
            self.numbers = select_frames(meta.size, deleted, start, stop, step)
        else:
            self.numbers = [n for n in numbers if 0 <= n < meta.size and n not in deleted]
            if not self.numbers:
                raise InvalidInputError(f"none of the requested frames exist in task {task_id}")
        names = [f.name for f in meta.frames]
        self.names = [names[n] if len(names) == meta.size else f"frame_{n:06d}" for n in self.numbers]
        self.fps = fps or DEFAULT_FPS
        per_frame = len(meta.frames) == meta.size
        sizes = {(meta.frames[n].height, meta.frames[n].width) for n in self.numbers} if per_frame else {
            (meta.frames[0].height, meta.frames[0].width)}
        if len(sizes) > 1:
            raise InvalidInputError(f"task {task_id} has images of {len(sizes)} different sizes; "
                                    "MomentSeg needs a video or images of one size")
        self._size = sizes.pop()

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index: int) -> np.ndarray:
        number = self.numbers[index]
        with cvat_errors(f"frame {number} of task {self.task_id}"):
            data = self.task.get_frame(number, quality="original").read()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidInputError(f"frame {number} of task {self.task_id} cannot be decoded")
        if bgr.shape[:2] != self._size:
            raise InvalidInputError(f"frame {number} of task {self.task_id} is {bgr.shape[1]}x{bgr.shape[0]}, "
                                    f"the task says {self._size[1]}x{self._size[0]}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
