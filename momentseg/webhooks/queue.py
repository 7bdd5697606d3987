"""The persistent queue behind the webhook: huey on a SQLite file by default, on Redis when configured.

Each command is one *run*, recorded in huey's key-value store under the comment that asked for it:
the record is created with ``put_if_empty`` (SQLite: a unique key; Redis: HSETNX), so a redelivered
comment finds its run and starts nothing. The record moves received → queued → running → written →
done (or failed / refused), and is saved at each step, so a worker that starts after a crash re-queues
exactly the runs that did not finish (huey itself drops a task whose worker died mid-run), and a rerun
of a run that already wrote only sends the reply it still owes.

One run per object at a time: huey locks, taken inside the run once it knows the object; a locked run
is put back with a delay and does not use up its retries. CVAT being down is retried with
exponential backoff (``retry_delay * retry_backoff**n``); the annotator is told each time (when CVAT
answers), and the record keeps the last error.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.exceptions import RetryTask, TaskLockedException

log = logging.getLogger(__name__)

RUN_PREFIX = "momentseg.run:"
ACTIVE = ("received", "queued", "running", "retrying", "written")
FINAL = ("done", "failed", "refused")
LOCK_RETRY_SECONDS = 10


def open_huey(sqlite_path: str | Path | None = None, redis_url: str | None = None,
              name: str = "momentseg-webhooks") -> Huey:
    """SqliteHuey on ``sqlite_path``, or RedisHuey when a Redis URL is given."""
    if redis_url:
        return RedisHuey(name, url=redis_url, results=False)
    if not sqlite_path:
        raise ValueError("the queue needs a SQLite file or a Redis URL")
    Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(sqlite_path), results=False)


class RetryLater(Exception):
    """A failure that may pass (CVAT down or overloaded); the message is in plain words."""


class RunFailed(Exception):
    """The run cannot succeed as asked; the message is the reply to the annotator."""


class Refused(Exception):
    """The run is outside what this service is configured for: drop it and write nothing."""


class Locked(Exception):
    """Another run holds the object."""


class RunContext:
    """What a run gets from the queue: its record, a progress report and object locks."""

    def __init__(self, queue: "WebhookQueue", record: dict[str, Any]):
        self.queue = queue
        self.record = record
        self._reported = -1

    def progress(self, percent: int, stage: str) -> None:
        """Keep the percent in the record; reply at each ``progress_step`` crossed."""
        percent = max(0, min(99, int(percent)))
        if percent == self.record.get("percent"):
            return
        self.record.update(percent=percent, stage=stage)
        self.queue.save(self.record)
        step = self.queue.progress_step
        if step and percent // step > max(self._reported, 0) // step:
            self._reported = percent
            self.queue.runs.reply(self.record, self.queue.runs.progress_message(self.record))

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        try:
            with self.queue.huey.lock_task(name):
                yield
        except TaskLockedException:
            raise Locked(name) from None


class Runs(Protocol):
    """The work behind the queue (momentseg.webhooks.runs.CvatRuns in production)."""

    def execute(self, context: RunContext) -> dict[str, Any]: ...

    def reply(self, record: dict[str, Any], message: str | None) -> bool: ...

    def progress_message(self, record: dict[str, Any]) -> str | None: ...

    def done_message(self, record: dict[str, Any]) -> str: ...

    def failed_message(self, record: dict[str, Any]) -> str: ...

    def retry_message(self, record: dict[str, Any], delay: float) -> str: ...


class WebhookQueue:
    def __init__(self, huey: Huey, runs: Runs, *, retries: int = 6, retry_delay: float = 30.0,
                 retry_backoff: float = 2.0, progress_step: int = 25):
        self.huey = huey
        self.runs = runs
        self.retries = retries
        self.retry_delay = retry_delay
        self.retry_backoff = retry_backoff
        self.progress_step = progress_step
        self._task = huey.task(retries=retries, context=True, name="momentseg_webhook_run")(self._run)

    # --- records ------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        data = self.huey.get(RUN_PREFIX + key, peek=True)
        return None if data is None else json.loads(data)

    def save(self, record: dict[str, Any]) -> None:
        record["updated"] = time.time()
        self.huey.put(RUN_PREFIX + record["key"], json.dumps(record))

    def records(self) -> list[dict[str, Any]]:
        """Every run, oldest first."""
        found = []
        for key, value in self.huey.all_results().items():
            key = key.decode() if isinstance(key, bytes) else key
            if key.startswith(RUN_PREFIX):
                found.append(json.loads(self.huey.serializer.deserialize(value)))
        return sorted(found, key=lambda r: r["created"])

    def prompt_of(self, host: str, task_id: int, object_id: int) -> str | None:
        """The prompt a finished run made this object from, when this queue made it."""
        return next((r["prompt"] for r in reversed(self.records()) if r.get("command") == "segment"
                     and r["host"] == host and r["state"] == "done" and r.get("place", {}).get("task_id") == task_id
                     and (r.get("outcome") or {}).get("object_id") == object_id), None)

    def ahead_of(self, key: str) -> int:
        """How many runs will start before this one."""
        return sum(1 for r in self.records() if r["key"] != key and r["state"] in ACTIVE and r.get("command") in
                   ("segment", "refine"))

    # --- what the webhook calls ---------------------------------------------------------------
    def receive(self, key: str, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Record a run once: (the run, True) the first time this key is seen, (the first run, False) after."""
        now = time.time()
        record = dict(fields, key=key, state="received", created=now, updated=now, attempts=0, percent=0)
        if self.huey.put_if_empty(RUN_PREFIX + key, json.dumps(record)):
            return record, True
        return self.get(key), False

    def start(self, record: dict[str, Any]) -> None:
        if record["state"] == "received":
            record["state"] = "queued"
            self.save(record)
        self._task(record["key"])

    def finish(self, record: dict[str, Any], state: str, error: str | None = None) -> None:
        record.update(state=state, error=error)
        self.save(record)

    # --- the worker ---------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Before a worker starts: re-queue every unfinished run that no queued task will pick up, and
        release the locks a killed worker left behind. Run it with no other worker on this queue."""
        waiting = {task.args[0] for task in self.huey.pending() + self.huey.scheduled() if task.args}
        lock_prefix = f"{self.huey.name}.lock."
        for key in list(self.huey.all_results()):
            key = key.decode() if isinstance(key, bytes) else key
            if key.startswith(lock_prefix):
                self.huey.delete(key)
        requeued = []
        for record in self.records():
            if record["state"] in ACTIVE and record["key"] not in waiting:
                log.info("re-queueing run %s (it was %s)", record["key"], record["state"])
                self.start(record)
                requeued.append(record["key"])
        return requeued

    def run_next(self) -> bool:
        """Run the next queued task in this thread (the worker loop without threads, for tests and tools)."""
        task = self.huey.dequeue()
        if task is None:
            return False
        self.huey.execute(task)
        return True

    def consumer(self, workers: int = 1):
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=False)

    def _run(self, key: str, task=None) -> None:
        try:
            with self.huey.lock_task(f"run:{key}"):
                self._run_locked(key, task)
        except (TaskLockedException, Locked) as error:
            log.info("run %s waits for %s", key, error)
            raise RetryTask(delay=LOCK_RETRY_SECONDS) from None

    def _run_locked(self, key: str, task) -> None:
        record = self.get(key)
        if record is None or record["state"] in FINAL:
            return
        try:
            if record["state"] != "written":
                record.update(state="running", attempts=record.get("attempts", 0) + 1, error=None)
                self.save(record)
                record["outcome"] = self.runs.execute(RunContext(self, record))
                record["state"] = "written"
                self.save(record)
            if not self.runs.reply(record, self.runs.done_message(record)):
                raise RetryLater("CVAT did not take the reply")
            self.finish(record, "done")
        except Locked:
            record.update(state="queued", attempts=record["attempts"] - 1)  # waiting is not an attempt
            self.save(record)
            raise
        except RetryLater as error:
            retries_left = task.retries if task is not None else 0
            if retries_left > 0:
                delay = self.retry_delay * self.retry_backoff ** (self.retries - retries_left)
                if record["state"] != "written":
                    record["state"] = "retrying"
                record["error"] = str(error)
                self.save(record)
                self.runs.reply(record, self.runs.retry_message(record, delay))
                task.retries -= 1  # RetryTask itself does not use up a retry; this one should
                raise RetryTask(delay=delay) from None
            if record["state"] == "written":  # the work is in CVAT; only the reply never got there
                self.finish(record, "done", f"the reply could not be posted: {error}")
            else:
                self._fail(record, f"{error} (gave up after {record.get('attempts', 1)} attempts)")
        except Refused as error:
            log.warning("run %s refused: %s", key, error)
            self.finish(record, "refused", str(error))
        except RunFailed as error:
            self._fail(record, str(error))
        except Exception:
            log.exception("run %s failed", key)
            self._fail(record, "an internal error stopped the run (the service's log has the details)")

    def _fail(self, record: dict[str, Any], error: str) -> None:
        self.finish(record, "failed", error)
        self.runs.reply(record, self.runs.failed_message(record))

