"""Ways to run MomentSeg on a CVAT task: in-process, or by calling the deployed function / `momentseg serve`."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from itertools import pairwise
from typing import Any

from cvat_sdk import Client

from momentseg.cvat.connection import CvatError, redact_url
from momentseg.cvat.frames import TaskFrames, format_ranges
from momentseg.cvat.task import Progress, Runner
from momentseg.masks import from_cvat_rle
from momentseg.options import SegmentOptions, request_options
from momentseg.pipeline import MomentSegPipeline


class FunctionError(CvatError):
    """The MomentSeg function refused the request or could not be reached."""

    code = "function_error"


def local_runner(
    client: Client,
    pipeline: MomentSegPipeline,
    options: SegmentOptions,
    fps: float | None = None,
    progress: Progress | None = None,
) -> Runner:
    """Read the task's frames by chunk with cvat-sdk and run the pipeline in this process."""

    def run(selection: dict[str, Any], prompt: str, anchors: list[dict[str, Any]]) -> dict[str, Any]:
        frames = TaskFrames(
            client,
            selection["id"],
            selection.get("frame_start"),
            selection.get("frame_stop"),
            selection.get("frame_step"),
            fps=fps,
            numbers=selection.get("numbers"),
        )
        height, width = frames.size
        index = {number: i for i, number in enumerate(frames.numbers)}
        human = {index[a["frame"]]: from_cvat_rle(a["mask"], width, height) for a in anchors if a["frame"] in index}
        result = pipeline.run(frames, prompt, options, human_anchors=human, progress=progress)
        return result.to_task_frames(frames.numbers)

    return run


def task_request(selection: dict[str, Any]) -> dict[str, Any]:
    """The ``task`` of a function request for a selection: explicit frame numbers go as they are, as a
    start, stop and step when they are one (the same frames: deleted frames are never among them), else
    as compact ``a-b`` runs."""
    numbers = selection.get("numbers")
    task = {k: v for k, v in selection.items() if k != "numbers" and v is not None}
    if numbers:
        steps = {b - a for a, b in pairwise(numbers)}
        if len(steps) <= 1:
            task.update(frame_start=numbers[0], frame_stop=numbers[-1], frame_step=steps.pop() if steps else 1)
        else:
            task["frames"] = format_ranges(numbers)
    return task


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """The request carries a token: a redirect is answered as an error, never followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def function_runner(
    url: str,
    options: SegmentOptions,
    fps: float | None = None,
    timeout: float = 3600,
    progress: Progress | None = None,
    poll_s: float = 1.0,
) -> Runner:
    """Send the video-level request (task mode) to the function at ``url``; it reads the frames itself and
    runs with every option as given here (its own defaults play no part).

    The request goes to ``<url>/runs``: ``momentseg serve`` answers 202 with a run, which is polled (its
    stage and frames reach ``progress``) until it is done, and cancelled when this side stops (Ctrl-C, an
    error); the Nuclio function, whose HTTP trigger is synchronous, answers any path with the result itself.
    """
    base = url.rstrip("/")
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MOMENTSEG_TASK_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MOMENTSEG_TASK_TOKEN']}"

    def call(method: str, path: str, body: dict | None = None, wait: float = 30) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        try:
            with _NO_REDIRECTS.open(request, timeout=wait) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                answer = json.loads(error.read())
                message = f"{answer.get('error')}: {answer.get('message')}"
            except ValueError:
                message = error.reason
            raise FunctionError(f"the function at {redact_url(url)} answered {error.code}: {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise FunctionError(
                f"the function at {redact_url(url)} cannot be reached ({type(reason).__name__})"
            ) from None

    def run(selection: dict[str, Any], prompt: str, anchors: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"prompt": prompt, "task": task_request(selection), "anchors": anchors, **request_options(options)}
        if fps:
            body["fps"] = fps
        status, answer = call("POST", "/runs", body, wait=timeout)
        if status == 200:
            return answer  # answered at once (the Nuclio function)
        path = f"/runs/{answer['id']}"
        try:
            while answer["state"] in ("queued", "running"):
                if progress is not None and answer.get("stage"):
                    progress(answer["stage"], answer["done"], answer["total"])
                time.sleep(poll_s)
                answer = call("GET", path)[1]
            if answer["state"] != "done":
                error = answer.get("error") or {}
                raise FunctionError(
                    f"the function's run {answer['state']}: {error.get('error')}: {error.get('message')}"
                )
            return call("GET", path + "/result", wait=timeout)[1]
        except BaseException:
            if answer.get("state") in ("queued", "running"):
                with contextlib.suppress(FunctionError):
                    call("DELETE", path)  # the model is freed at the next frame
            raise

    return run
