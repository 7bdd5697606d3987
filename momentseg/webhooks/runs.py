"""What a comment command does in CVAT, and the replies the annotator reads on the issue."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from cvat_sdk import Client

from momentseg.cvat.connection import CvatError, CvatNotAuthorisedError, CvatUnreachableError, TaskNotFoundError
from momentseg.cvat.workflows import ObjectExistsError, PartialWriteError, Progress, Runner
from momentseg.errors import MomentSegError
from momentseg.webhooks import actions
from momentseg.webhooks.commands import HELP, CommandError, Help, Refine, Segment, parse_command
from momentseg.webhooks.config import WebhookSettings
from momentseg.webhooks.delivery import CommentCreated
from momentseg.webhooks.queue import (
    Refused,
    RetryLater,
    RunContext,
    RunFailed,
    WebhookQueue,
    task_of,
)

log = logging.getLogger(__name__)

# (client, method options by name (the label, and those the command gave), progress) -> a workflows Runner;
# built in the worker, which holds the model
RunnerFactory = Callable[[Client, dict[str, Any], Progress], Runner]
DEFAULT_FPS = 30.0

# Share of the run each pipeline stage takes, for the percent in the replies: (start %, end %)
STAGE_SPAN = {"grounding": (0, 15), "segmenting keyframes": (15, 30), "propagation": (30, 90), "writing": (90, 99)}
TRANSIENT_HTTP = (429, 502, 503, 504)
SIGNATURE = "MomentSeg:"


def record_for(comment: CommentCreated) -> dict[str, Any] | None:
    """The run a comment asks for; None when the comment is not a command."""
    try:
        command = parse_command(comment.text)
    except CommandError as error:
        return {
            "command": "reply",
            "reply": f"{SIGNATURE} {error}",
            "issue_id": comment.issue_id,
            "author": comment.author,
            "host": comment.host,
        }
    if command is None:
        return None
    fields = {"issue_id": comment.issue_id, "author": comment.author, "host": comment.host}
    if isinstance(command, Help):
        return dict(fields, command="reply", reply=f"{SIGNATURE} {HELP}")
    if isinstance(command, Segment):
        # the object's id is the comment's: unique on the server, and the same for every attempt
        return dict(
            fields,
            command="segment",
            prompt=command.prompt,
            label=command.label,
            object_id=comment.comment_id,
            options=command.options,
        )
    if isinstance(command, Refine):
        return dict(
            fields, command="refine", object_id=command.object_id, prompt=command.prompt, options=command.options
        )
    raise AssertionError(command)


def _frames(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:20]) + (" ..." if len(numbers) > 20 else "") if numbers else "none"


def _transient(error: BaseException | None) -> bool:
    """CVAT down, slow or restarting: worth another try; not anything CVAT refused. A write cut off that
    way is too: the object's id is fixed, so the next attempt finishes the object instead of adding one."""
    if isinstance(error, PartialWriteError):
        return _transient(error.__cause__)
    if isinstance(error, CvatUnreachableError):
        return True
    return type(error) is CvatError and getattr(error.__cause__, "status", None) in TRANSIENT_HTTP


class CvatRuns:
    """Runs commands against one CVAT server with one service account."""

    def __init__(
        self,
        settings: WebhookSettings,
        connect: Callable[[], Client],
        make_runner: RunnerFactory | None = None,
        fps: float = DEFAULT_FPS,
    ):
        self.settings = settings
        self.fps = fps
        self._connect = connect
        self._make_runner = make_runner
        self._client: Client | None = None
        self._client_lock = threading.Lock()

    def client(self) -> Client:
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def place(self, record: dict[str, Any]) -> actions.IssuePlace:
        """The issue's job and task; Refused outside the configured projects."""
        try:
            place = actions.issue_place(self.client(), record["issue_id"])
        except TaskNotFoundError:
            raise Refused(f"issue {record['issue_id']} (or its job) is gone or not visible to the service") from None
        except CvatNotAuthorisedError as error:
            raise RunFailed(f"the service's CVAT account may not read the issue ({error})") from None
        except MomentSegError as error:
            if _transient(error):
                raise RetryLater(str(error)) from None
            raise RunFailed(str(error)) from None
        if place.project_id not in self.settings.projects:
            raise Refused(
                f"issue {place.issue_id} is in project {place.project_id}, not one of this service's "
                f"projects {sorted(self.settings.projects)}"
            )
        return place

    # --- the webhook side: right after the 202 --------------------------------------------------
    def acknowledge(self, queue: WebhookQueue, record: dict[str, Any]) -> None:
        """Check the project, answer /help and mistakes at once, or say the run is queued and queue it."""
        try:
            place = self.place(record)
        except Refused as error:
            log.warning("comment %s refused: %s", record["key"], error)
            queue.finish(record, "refused", str(error))
            return
        except (RetryLater, RunFailed, MomentSegError) as error:
            log.warning("comment %s: issue not checked now (%s); the worker will check it", record["key"], error)
            queue.start(record)
            return
        record["place"] = asdict(place)
        if record["command"] == "reply":
            queue.finish(record, "done" if self.reply(record, record["reply"]) else "failed")
            return
        queue.save(record)
        ahead = queue.ahead_of(record["key"])
        self.reply(
            record,
            f"{SIGNATURE} queued: {self._what(record)}"
            + (f" ({ahead} run{'s' if ahead != 1 else ''} ahead)." if ahead else ".")
            + " I will reply here with the progress.",
        )
        queue.start(record)

    # --- the worker side ----------------------------------------------------------------------
    def execute(self, context: RunContext) -> dict[str, Any]:
        record = context.record
        if record.get("issue_id") is not None:  # a comment: where it was typed says which task
            place = self.place(record)  # before any word to CVAT: the project may not be this service's
            record["place"] = asdict(place)
            if record["command"] == "reply":
                return {}
            if record["attempts"] == 1:
                self.reply(record, self.progress_message(record))
        if self._make_runner is None:
            raise RunFailed("this service has no model configured (start the worker with --checkpoint or --function)")

        def progress(stage: str, done: int, total: int) -> None:
            start, end = STAGE_SPAN.get(stage, (record.get("percent", 0),) * 2)
            context.progress(start + (end - start) * done // max(total, 1), stage)

        client = self.client()
        task_id = task_of(record)
        if task_id is None:
            raise RunFailed("the run names no CVAT task")
        label = record.get("label") or self.settings.label
        options = {**(record.get("options") or {}), "label": label}
        if record.get("output"):
            options["output"] = record["output"]
        try:
            run = self._make_runner(client, options, progress)
            if record["command"] == "segment" and record.get("object_id") is None:
                self._reserve_object(client, context, task_id)
            with context.lock(f"tasks/{task_id}/objects/{record['object_id']}"):
                if record["command"] == "segment":
                    return self._segment(client, context, task_id, label, run, progress)
                prompt = record.get("prompt") or context.queue.prompt_of(task_id, record["object_id"])
                return actions.refine(client, task_id, record["object_id"], run, progress, prompt=prompt)
        except MomentSegError as error:
            if _transient(error):
                raise RetryLater(str(error)) from None
            raise RunFailed(str(error)) from None

    def _reserve_object(self, client: Client, context: RunContext, task_id: int) -> None:
        """Fix the new object's id before anything is written, so that a rerun finds what an attempt cut
        off wrote; no other run of this queue gets the same id."""
        record = context.record
        first = actions.next_object_id(client, task_id)
        record["object_id"], reservation = context.queue.reserve_object(task_id, first, record["key"])
        record.setdefault("reserved", []).append(reservation)
        context.queue.save(record)

    def _segment(self, client, context: RunContext, task_id: int, label: str, run, progress) -> dict[str, Any]:
        record = context.record
        what = dict(
            moment_label=record.get("moment_label") or self.settings.moment_label,
            create_labels=record.get("create_labels", self.settings.create_labels),
            progress=progress,
            job_id=record.get("job"),
            frames=record.get("frames"),
            output=record.get("output") or "mask",
            fps=self.fps,
        )
        try:
            return actions.segment(client, task_id, record["prompt"], label, run, object_id=record["object_id"], **what)
        except ObjectExistsError:
            if record["attempts"] > 1:  # an attempt the worker did not live to finish wrote (part of) it
                outcome = actions.refine(client, task_id, record["object_id"], run, progress, prompt=record["prompt"])
                return dict(outcome, label=label, resumed=True)
        # the id is taken by another group in this task (a person's): take a free one
        self._reserve_object(client, context, task_id)
        return actions.segment(client, task_id, record["prompt"], label, run, object_id=record["object_id"], **what)

    def reply(self, record: dict[str, Any], message: str | None) -> bool:
        """Post a comment on the run's issue; False (and a log line) when CVAT does not take it. Runs
        from the browser or a batch have no issue: their record is the reply."""
        if message is None or record.get("issue_id") is None:
            return True
        try:
            actions.post_comment(self.client(), record["issue_id"], message)
            return True
        except MomentSegError as error:
            log.warning("reply on issue %s not posted: %s", record["issue_id"], error)
            return False

    # --- replies ------------------------------------------------------------------------------
    def _what(self, record: dict[str, Any]) -> str:
        if record["command"] == "segment":
            return f"segment \"{record['prompt']}\" as '{record.get('label') or self.settings.label}'"
        return f"refine object {record['object_id']}"

    def progress_message(self, record: dict[str, Any]) -> str | None:
        if record["command"] == "reply":
            return None
        stage = f" ({record['stage']})" if record.get("stage") else ""
        task = record.get("place", {}).get("task_id")
        where = f" on task {task}" if task else ""
        return f"{SIGNATURE} running {self._what(record)}{where}: {record.get('percent', 0)}%{stage}."

    def done_message(self, record: dict[str, Any]) -> str:
        outcome = record.get("outcome") or {}
        if record["command"] == "reply":
            return record["reply"]
        object_id = outcome.get("object_id")
        notes = "".join(f" Note: {note}." for note in outcome.get("notes", []))
        if record["command"] == "refine":
            written = outcome.get("written", {})
            return (
                f"{SIGNATURE} done: object {object_id} re-run from your masks on frames "
                f"{_frames(outcome.get('anchors', []))}; {written.get('updated', 0)} automatic masks updated, "
                f"{written.get('created', 0)} added, {written.get('deleted', 0)} removed; the frames a person "
                f"edited ({_frames(outcome.get('kept', []))}) are kept as they are.{notes}"
            )
        if outcome.get("resumed"):
            written = outcome.get("written", {})
            return (
                f"{SIGNATURE} done: object {object_id} ('{outcome.get('label')}'); the service restarted while "
                f"writing it, so it was finished like a refine: {written.get('updated', 0)} masks updated, "
                f"{written.get('created', 0)} added.{notes} Check its frames; to correct it, fix its mask on a "
                f"few frames, then comment: /refine {object_id}"
            )
        moment = outcome.get("moment")
        if moment and outcome.get("moment_tags"):
            moment_text = (
                f"The moment: frames {moment['start_frame']}-{moment['end_frame']} "
                f"({moment['start_sec']:.1f}-{moment['end_sec']:.1f} s), tagged "
                f"'{self.settings.moment_label}' on each of its frames."
            )
        elif moment:
            moment_text = f"The moment: frames {moment['start_frame']}-{moment['end_frame']} (not tagged)."
        else:
            moment_text = "No moment was predicted."
        return (
            f"{SIGNATURE} done: object {object_id} ('{outcome.get('label')}'), masks on {outcome.get('frames')} "
            f"frames ({outcome.get('first_frame')}-{outcome.get('last_frame')}). {moment_text}{notes} To correct "
            f"it, fix its mask on a few frames, then comment: /refine {object_id}"
        )

    def failed_message(self, record: dict[str, Any]) -> str:
        return f"{SIGNATURE} could not {self._what(record)}: {record.get('error')}"

    def retry_message(self, record: dict[str, Any], delay: float) -> str:
        return f"{SIGNATURE} {record.get('error')}; trying again in {delay:.0f} s."
