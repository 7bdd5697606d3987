"""Whole projects and lists of tasks on the queue: one run per task, followed live, summarised.

A batch has a name; its runs are keyed ``batch:<name>:<task>``, so queueing the same batch again
starts only what is missing and re-queues what failed or was cancelled (a batch is resumed by running
its command again), and cancelling it cancels what has not written yet.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from momentseg.errors import InvalidInputError
from momentseg.webhooks.queue import ACTIVE, CANCEL_PREFIX, FINAL, WebhookQueue, task_of

SUMMARY_FIELDS = (
    "task",
    "label",
    "prompt",
    "state",
    "object",
    "frames_written",
    "moment_start",
    "moment_end",
    "worker",
    "error",
)


@dataclass(frozen=True)
class BatchRow:
    task: int
    label: str
    prompt: str


def rows_from_file(path: str | Path) -> list[BatchRow]:
    """``task,label,prompt`` rows (a header row with these names is allowed; the prompt may hold commas
    when quoted as CSV does)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise InvalidInputError(f"--tasks {path} cannot be read ({why})") from None
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if number == 1 and row[0].strip().lower() == "task":
            continue
        if len(row) < 3:
            raise InvalidInputError(f"--tasks {path} line {number}: expected task,label,prompt, got '{','.join(row)}'")
        task, label, prompt = row[0].strip(), row[1].strip(), ",".join(row[2:]).strip()
        if not task.isdigit() or not label or not prompt:
            raise InvalidInputError(
                f"--tasks {path} line {number}: the task must be an id and the label and prompt not empty"
            )
        rows.append(BatchRow(int(task), label, prompt))
    if not rows:
        raise InvalidInputError(f"--tasks {path} lists no task (rows of task,label,prompt)")
    return rows


def project_rows(client, project_id: int, label: str, prompt: str) -> list[BatchRow]:
    """One row per task of the project that the caller's CVAT account can see."""
    from momentseg.cvat.connection import cvat_errors

    tasks, page = [], 1
    while True:
        with cvat_errors(f"the tasks of project {project_id}"):
            answer = client.api_client.tasks_api.list(
                project_id=project_id, page=page, page_size=100, _parse_response=False, _request_timeout=(10.0, 60.0)
            )[1]
        data = json.loads(answer.data)
        tasks += [task["id"] for task in data["results"]]
        if not data.get("next"):
            break
        page += 1
    if not tasks:
        raise InvalidInputError(f"project {project_id} has no task this account can see")
    return [BatchRow(task, label, prompt) for task in sorted(tasks)]


def run_key(batch: str, task: int) -> str:
    return f"batch:{batch}:{task}"


def queue_batch(
    queue: WebhookQueue,
    batch: str,
    rows: list[BatchRow],
    *,
    host: str,
    user: str,
    output: str = "mask",
    moment_label: str | None = None,
    create_labels: bool = False,
    options: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Queue one run per row (``options``: method options over the workers' own); (keys queued now, keys
    already done or under way)."""
    if len({row.task for row in rows}) != len(rows):
        raise InvalidInputError("a batch runs once per task: a task is listed twice")
    waiting = queue.waiting()
    new = [row for row in rows if (queue.get(run_key(batch, row.task)) or {}).get("state") not in (*ACTIVE, "done")]
    if waiting + len(new) > queue.max_waiting:
        raise InvalidInputError(
            f"the queue holds {waiting} waiting runs; {len(new)} more would pass its limit of "
            f"{queue.max_waiting} (MOMENTSEG_QUEUE_MAX_WAITING)"
        )
    queued, kept = [], []
    for row in rows:
        key = run_key(batch, row.task)
        record, fresh = queue.receive(
            key,
            dict(
                command="segment",
                source="batch",
                batch=batch,
                task_id=row.task,
                label=row.label,
                prompt=row.prompt,
                object_id=None,
                output=output,
                moment_label=moment_label,
                create_labels=create_labels,
                user=user,
                host=host,
                options=options or {},
            ),
        )
        if not fresh and record["state"] in ("failed", "cancelled"):  # resuming: try it again
            queue.huey.delete(CANCEL_PREFIX + key)
            record.update(state="received", error=None, percent=0, stage=None)
            fresh = True
        if fresh:
            queue.start(record)
            queued.append(key)
        else:
            kept.append(key)
    return queued, kept


def batch_records(queue: WebhookQueue, batch: str) -> list[dict[str, Any]]:
    return sorted((r for r in queue.records() if r.get("batch") == batch), key=lambda r: r["task_id"])


def cancel_batch(queue: WebhookQueue, batch: str) -> int:
    """Cancel every unfinished run of the batch; how many."""
    unfinished = [r for r in batch_records(queue, batch) if r["state"] not in FINAL]
    for record in unfinished:
        queue.cancel(record["key"])
    return len(unfinished)


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        outcome = record.get("outcome") or {}
        moment = outcome.get("moment") or {}
        rows.append(
            {
                "task": task_of(record),
                "label": record.get("label"),
                "prompt": record.get("prompt"),
                "state": record["state"],
                "object": outcome.get("object_id"),
                "frames_written": outcome.get("frames", 0) if record["state"] == "done" else 0,
                "moment_start": moment.get("start_frame"),
                "moment_end": moment.get("end_frame"),
                "worker": record.get("worker"),
                "error": record.get("error"),
            }
        )
    return rows


def write_summary(records: list[dict[str, Any]], path: str | Path) -> Path:
    """The batch's summary as CSV, or as JSON when the file name ends in .json."""
    path = Path(path)
    rows = summary_rows(records)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n")
    else:
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, SUMMARY_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return path


def table(records: list[dict[str, Any]]) -> list[str]:
    """One line per run: task, state, percent, worker, moment, error."""
    lines = [f"{'task':>6}  {'state':<9} {'%':>4}  {'worker':<22} {'moment':<11} error"]
    for row, record in zip(summary_rows(records), records, strict=True):
        percent = 100 if record["state"] == "done" else record.get("percent", 0)
        moment = f"{row['moment_start']}-{row['moment_end']}" if row["moment_start"] is not None else "-"
        lines.append(
            f"{row['task']:>6}  {record['state']:<9} {percent:>3}%  {(row['worker'] or '-')[:22]:<22} "
            f"{moment:<11} {(row['error'] or '')[:80]}"
        )
    return lines


def follow(
    queue: WebhookQueue, batch: str, out: TextIO = sys.stdout, every: float = 1.0, timeout: float | None = None
) -> list[dict[str, Any]]:
    """Show the batch until every run has finished: on a terminal a table redrawn in place and a progress
    bar; otherwise one line per change of state. The final records."""
    from tqdm import tqdm

    terminal = out.isatty()
    records = batch_records(queue, batch)
    bar = tqdm(total=len(records), desc=f"batch {batch}", unit="task", file=sys.stderr, disable=not sys.stderr.isatty())
    seen: dict[str, str] = {}
    drawn = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            records = batch_records(queue, batch)
            finished = sum(r["state"] in FINAL for r in records)
            bar.update(finished - bar.n)
            if terminal:
                lines = table(records)
                out.write(f"\x1b[{drawn}F\x1b[J" if drawn else "")
                out.write("\n".join(lines) + "\n")
                drawn = len(lines)
            else:
                for record in records:
                    if seen.get(record["key"]) != record["state"]:
                        seen[record["key"]] = record["state"]
                        out.write(
                            f"task {task_of(record)}: {record['state']}"
                            + (f" - {record['error']}" if record.get("error") else "")
                            + "\n"
                        )
            out.flush()
            if finished == len(records) or (deadline is not None and time.monotonic() > deadline):
                return records
            time.sleep(every)
    finally:
        bar.close()
