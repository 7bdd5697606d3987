"""The CVAT calls a webhook run makes: read an issue's place, reply on it, and annotate or refine through
momentseg.cvat.workflows (the one place that writes annotations).

Every request here has a timeout; failures come back as momentseg.cvat.connection errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvat_sdk import Client, models

from momentseg.cvat.connection import cvat_errors
from momentseg.cvat.workflows import (
    Progress,
    Runner,
    annotate_task,
    object_groups,
    read_job_annotations,
    read_task,
    refine_object,
)

REQUEST_TIMEOUT = (10.0, 60.0)  # connect, read (seconds)


@dataclass(frozen=True)
class IssuePlace:
    """Where an issue sits: its frame and box in a job of a task (of a project, or none)."""

    issue_id: int
    frame: int
    position: list[float]
    job_id: int
    task_id: int
    project_id: int | None
    job_frames: tuple[int, int]


def issue_place(client: Client, issue_id: int) -> IssuePlace:
    with cvat_errors(f"issue {issue_id}"):
        issue = client.api_client.issues_api.retrieve(issue_id, _request_timeout=REQUEST_TIMEOUT)[0]
    with cvat_errors(f"job {issue.job}"):
        job = client.api_client.jobs_api.retrieve(issue.job, _request_timeout=REQUEST_TIMEOUT)[0]
    return IssuePlace(
        issue.id,
        int(issue.frame),
        [float(p) for p in issue.position],
        job.id,
        int(job.task_id),
        None if job.project_id is None else int(job.project_id),
        (int(job.start_frame), int(job.stop_frame)),
    )


def post_comment(client: Client, issue_id: int, message: str) -> int:
    """Reply on the issue; the new comment's id."""
    with cvat_errors(f"commenting on issue {issue_id}"):
        comment, _ = client.api_client.comments_api.create(
            models.CommentWriteRequest(issue=issue_id, message=message), _request_timeout=REQUEST_TIMEOUT
        )
    return comment.id


def next_object_id(client: Client, task_id: int) -> int:
    """One more than the largest object (group) id in the task."""
    task = read_task(client, task_id)
    return max(object_groups(read_job_annotations(client, task)) | {0}) + 1


def segment(
    client: Client,
    task_id: int,
    prompt: str,
    label: str,
    run: Runner,
    *,
    object_id: int,
    moment_label: str,
    create_labels: bool,
    progress: Progress,
    job_id: int | None = None,
    frames: dict[str, int] | None = None,
    output: str = "mask",
    fps: float = 30.0,
) -> dict[str, Any]:
    """Annotate the task (or one job, or a frame range of it) as object ``object_id``; what the reply reports.

    The caller picks the object id, so a rerun after a crash finds the object an earlier attempt wrote
    (ObjectExistsError) instead of writing it twice."""
    summary = annotate_task(
        client,
        task_id,
        prompt,
        label,
        run,
        object_id=object_id,
        moment_label=moment_label,
        create_labels=create_labels,
        progress=progress,
        job_id=job_id,
        frames=frames,
        output=output,
    )
    written = summary.object_frames
    return {
        "object_id": summary.object_id,
        "label": label,
        "frames": len(written),
        "first_frame": written[0] if written else None,
        "last_frame": written[-1] if written else None,
        "moment": summary.moment,
        "moment_tags": summary.written.get("tags", 0),
        "notes": summary.notes,
        "output": output,
        "keyframes": summary.keyframes,
        "center": summary.center_frame,
        "fps": fps,
    }


def refine(
    client: Client, task_id: int, object_id: int, run: Runner, progress: Progress, *, prompt: str | None
) -> dict[str, Any]:
    """Refine the object (its prompt: ``prompt``, else the one stored on it)."""
    summary = refine_object(client, task_id, object_id, run, prompt=prompt, progress=progress)
    return {
        "object_id": summary.object_id,
        "anchors": summary.anchors,
        "kept": summary.kept,
        "written": summary.written,
        "notes": summary.notes,
    }
