"""The CVAT workflows, one verb per module over the shared task model (task.py): annotate.py adds an object
and its moment to a task, refine.py re-runs an object from a person's corrections, export.py reads a task's
objects back. This module names what callers use (the CLI, the webhook runs)."""

from momentseg.cvat.annotate import AnnotateSummary, annotate_task
from momentseg.cvat.export import read_task_objects, task_export
from momentseg.cvat.refine import RefineSummary, refine_object
from momentseg.cvat.task import (
    LabelMissingError,
    NothingFoundError,
    ObjectExistsError,
    PartialWriteError,
    Progress,
    Runner,
    object_groups,
    read_job_annotations,
    read_task,
)

__all__ = [
    "AnnotateSummary",
    "LabelMissingError",
    "NothingFoundError",
    "ObjectExistsError",
    "PartialWriteError",
    "Progress",
    "RefineSummary",
    "Runner",
    "annotate_task",
    "object_groups",
    "read_job_annotations",
    "read_task",
    "read_task_objects",
    "refine_object",
    "task_export",
]
