"""The persistent queue behind comments, the browser and batches: huey on a SQLite file by default (one
machine, one worker process), on Redis when configured (any number of workers on any number of machines).

One queue serves one CVAT server (the one its workers write to). Each run is recorded in huey's key-value
store under its key (a comment's, or a run id): the record is created with ``put_if_empty`` (SQLite: a
unique key; Redis: HSETNX), so a redelivered comment finds its run and starts nothing. The record moves
received → queued → running → written → done (or failed / refused / cancelled), and is saved at each step;
each change of state is one log line with the run's key.

A run belongs to one worker at a time through its lease (momentseg.webhooks.leases): on Redis a key
with an expiry that the worker renews. When a worker dies its leases expire, and another worker's
``take_over`` re-queues the run on huey within ``lease_seconds`` + ``lease_seconds / 2``; the rerun
resumes like a restart (a run cut off while writing finishes as a refine; a run that wrote only sends
the reply it still owes). One run per object at a time: an object lease, taken once the run knows the
object; a locked run is put back with a delay and does not use up its retries. CVAT being down is
retried with exponential backoff (``retry_delay * retry_backoff**n``); the record keeps the last error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.exceptions import RetryTask

from momentseg.webhooks.leases import LeaseLost, open_leases

log = logging.getLogger(__name__)

RUN_PREFIX = "momentseg.run:"
CANCEL_PREFIX = "momentseg.cancel:"
OBJECT_PREFIX = "momentseg.object:"
ACTIVE = ("received", "queued", "running", "retrying", "written")
WAITING = ("received", "queued", "retrying")
FINAL = ("done", "failed", "refused", "cancelled")
LOCK_RETRY_SECONDS = 10
LEASE_SECONDS = 30.0
RETENTION_DAYS = 7.0
MAX_WAITING = 100  # runs waiting in the queue before new ones are refused (HTTP 429)


def open_huey(
    sqlite_path: str | Path | None = None, redis_url: str | None = None, name: str = "momentseg-webhooks"
) -> Huey:
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


class Cancelled(Exception):
    """Someone cancelled the run before it wrote anything."""


class HandBack(Exception):
    """The worker is stopping (SIGTERM) before the run wrote anything: another worker takes it."""


class RunContext:
    """What a run gets from the queue: its record, a progress report and object leases."""

    def __init__(self, queue: WebhookQueue, record: dict[str, Any]):
        self.queue = queue
        self.record = record
        self._reported = -1

    def progress(self, percent: int, stage: str) -> None:
        """Keep the percent in the record; reply at each ``progress_step`` crossed. Before the writing
        starts, stop here when the run was cancelled, its lease was lost or the worker is stopping;
        once it writes, it finishes (a write is never left half done)."""
        percent = max(0, min(99, int(percent)))
        if percent == self.record.get("percent") and stage == self.record.get("stage"):
            return
        if stage != "writing":
            self.queue.check_going_on(self.record["key"])
        self.record.update(percent=percent, stage=stage)
        self.queue.save(self.record)
        step = self.queue.progress_step
        if step and percent // step > max(self._reported, 0) // step:
            self._reported = percent
            self.queue.runs.reply(self.record, self.queue.runs.progress_message(self.record))

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the object ``name`` for this run (across workers), or raise Locked."""
        lease = f"object:{name}"
        if not self.queue.leases.take(lease):
            raise Locked(name)
        self.record["held_from"] = time.time()  # when it held the object: saved with its next state
        try:
            yield
        finally:
            self.record["held_until"] = time.time()
            self.queue.leases.release(lease)


class Runs(Protocol):
    """The work behind the queue (momentseg.webhooks.runs.CvatRuns in production)."""

    def execute(self, context: RunContext) -> dict[str, Any]: ...

    def reply(self, record: dict[str, Any], message: str | None) -> bool: ...

    def progress_message(self, record: dict[str, Any]) -> str | None: ...

    def done_message(self, record: dict[str, Any]) -> str: ...

    def failed_message(self, record: dict[str, Any]) -> str: ...

    def retry_message(self, record: dict[str, Any], delay: float) -> str: ...


def worker_name() -> str:
    """This process as the runs' records and logs name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WebhookQueue:
    def __init__(
        self,
        huey: Huey,
        runs: Runs,
        *,
        retries: int = 6,
        retry_delay: float = 30.0,
        retry_backoff: float = 2.0,
        progress_step: int = 25,
        lease_seconds: float = LEASE_SECONDS,
        retention_days: float = RETENTION_DAYS,
        max_waiting: int = MAX_WAITING,
        worker: str | None = None,
    ):
        self.huey = huey
        self.runs = runs
        self.retries = retries
        self.retry_delay = retry_delay
        self.retry_backoff = retry_backoff
        self.progress_step = progress_step
        self.retention_days = retention_days
        self.max_waiting = max_waiting
        self.worker = worker or worker_name()
        self.leases = open_leases(huey, self.worker, lease_seconds)
        self.stopping = threading.Event()
        self._task = huey.task(retries=retries, context=True, name="momentseg_webhook_run")(self._run)

    # --- records ------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        data = self.huey.get(RUN_PREFIX + key, peek=True)
        return None if data is None else json.loads(data)

    def save(self, record: dict[str, Any]) -> None:
        record["updated"] = time.time()
        self.huey.put(RUN_PREFIX + record["key"], json.dumps(record))

    def move(self, record: dict[str, Any], state: str, **fields: Any) -> None:
        """Change the run's state and save it: one log line per change, with the run's key."""
        before = record.get("state")
        record.update(fields, state=state)
        record[f"{state}_at"] = time.time()
        self.save(record)
        if before != state:
            failed = state in ("failed", "refused", "retrying") and record.get("error")
            error = f" ({record['error']})" if failed else ""
            log.info("run %s: %s -> %s on %s%s", record["key"], before, state, self.worker, error)

    def records(self) -> list[dict[str, Any]]:
        """Every run, oldest first."""
        found = []
        for key, value in self.huey.all_results().items():
            key = key.decode() if isinstance(key, bytes) else key
            if key.startswith(RUN_PREFIX):
                found.append(json.loads(self.huey.serializer.deserialize(value)))
        return sorted(found, key=lambda r: r["created"])

    def prompt_of(self, task_id: int, object_id: int) -> str | None:
        """The prompt a finished run made this object from, when this queue made it."""
        return next(
            (
                r["prompt"]
                for r in reversed(self.records())
                if r.get("command") == "segment"
                and r["state"] == "done"
                and task_of(r) == task_id
                and (r.get("outcome") or {}).get("object_id") == object_id
            ),
            None,
        )

    def ahead_of(self, key: str, records: list[dict[str, Any]] | None = None) -> int:
        """How many runs will start before this one (those that came before it and are not finished)."""
        records = self.records() if records is None else records
        mine = next((r for r in records if r["key"] == key), None)
        return sum(
            1
            for r in records
            if r["key"] != key
            and r["state"] in ACTIVE
            and r.get("command") in ("segment", "refine")
            and (mine is None or r["created"] <= mine["created"])
        )

    def waiting(self) -> int:
        return sum(1 for r in self.records() if r["state"] in WAITING)

    def reserve_object(self, task_id: int, first: int, key: str) -> tuple[int, str]:
        """An object id for a new object of this task, ``first`` or the next one no other run holds; and the
        reservation's name (deleted with the run's record)."""
        object_id = max(first, 1)
        while not self.huey.put_if_empty(f"{OBJECT_PREFIX}tasks/{task_id}/{object_id}", key):
            object_id += 1
        return object_id, f"{OBJECT_PREFIX}tasks/{task_id}/{object_id}"

    # --- what the webhook, the browser and batches call ----------------------------------------
    def receive(self, key: str, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Record a run once: (the run, True) the first time this key is seen, (the first run, False) after."""
        now = time.time()
        record = dict(fields, key=key, state="received", created=now, updated=now, attempts=0, percent=0)
        if self.huey.put_if_empty(RUN_PREFIX + key, json.dumps(record)):
            log.info("run %s: received (%s)", key, record.get("source", "comment"))
            return record, True
        first = self.get(key)
        if first is None:  # removed between the two calls (retention): record it afresh
            return self.receive(key, fields)
        return first, False

    def start(self, record: dict[str, Any]) -> None:
        if record["state"] == "received":
            self.move(record, "queued")
        self._task(record["key"])

    def finish(self, record: dict[str, Any], state: str, error: str | None = None) -> None:
        self.move(record, state, error=error)

    def cancel(self, key: str) -> dict[str, Any] | None:
        """Cancel a run: one that waits is cancelled at once; a running one stops before it writes
        (a run already writing finishes). The run as it stands; None when there is no such run."""
        record = self.get(key)
        if record is None or record["state"] in FINAL:
            return record
        self.huey.put(CANCEL_PREFIX + key, "1")
        if record["state"] in WAITING and not self.leases.holder(f"run:{key}"):
            self.move(record, "cancelled", error="cancelled before it started")
            if self.runs is not None:  # a comment's run says so on its issue
                self.runs.reply(record, self.runs.failed_message(record))
        return record

    def check_going_on(self, key: str) -> None:
        """Raise what stops a run that has not started writing: a lost lease, a cancel, a stopping worker."""
        if self.leases.lost(f"run:{key}"):
            raise LeaseLost(key)
        if self.huey.get(CANCEL_PREFIX + key, peek=True) is not None:
            raise Cancelled(key)
        if self.stopping.is_set():
            raise HandBack(key)

    # --- housekeeping ---------------------------------------------------------------------------
    def take_over(self, grace: float | None = None) -> list[str]:
        """Re-queue every unfinished run that no worker holds and no queued task will pick up: its worker
        died (its lease expired) or was stopped. ``grace``: seconds a waiting run's record may sit
        unchanged before it counts as lost (default: the lease's length)."""
        grace = self.leases.seconds if grace is None else grace
        candidates = [r for r in self.records() if r["state"] in ACTIVE and not self.leases.holder(f"run:{r['key']}")]
        if not candidates:
            return []
        waiting = {task.args[0] for task in self.huey.pending() + self.huey.scheduled() if task.args}
        taken = []
        for record in candidates:
            key = record["key"]
            if key in waiting or (record["state"] in WAITING and time.time() - record["updated"] < grace):
                continue
            claim = f"takeover:{key}"  # one worker re-queues it, not every worker that noticed
            if not self.leases.take(claim):
                continue
            try:
                now = self.get(key)
                if now is None or now["updated"] != record["updated"] or self.leases.holder(f"run:{key}"):
                    continue  # it moved on since the look above
                was = now.get("worker")
                log.info(
                    "run %s: taken over by %s (it was %s on %s)", key, self.worker, now["state"], was or "no worker"
                )
                self.move(now, "queued" if now["state"] == "running" else now["state"], taken_over_from=was)
                self.start(now)
                taken.append(key)
            finally:
                self.leases.release(claim)
        return taken

    def recover(self) -> list[str]:
        """When a worker starts: on SQLite (one worker) release the leases a killed worker left behind,
        then re-queue every unfinished run nobody holds."""
        self.leases.clear_all()
        return self.take_over(grace=0)

    def prune(self, now: float | None = None) -> int:
        """Delete the records of runs finished more than ``retention_days`` ago; how many."""
        cutoff = (now or time.time()) - self.retention_days * 86400
        pruned = 0
        for record in self.records():
            if record["state"] in FINAL and record["updated"] < cutoff:
                key = record["key"]
                for name in (RUN_PREFIX + key, CANCEL_PREFIX + key, *record.get("reserved", [])):
                    self.huey.delete(name)
                pruned += 1
        if pruned:
            log.info("pruned %d finished runs older than %g days", pruned, self.retention_days)
        return pruned

    def housekeeping(self, stop: threading.Event, prune_every: float = 600.0) -> threading.Thread:
        """Renew this worker's leases (every third of their length), take over the runs of dead workers
        (every half, Redis only) and prune old records, until ``stop`` is set."""
        seconds = self.leases.seconds

        def renew():
            while not stop.wait(seconds / 3):
                try:
                    self.leases.renew()
                except Exception as error:  # never let the renewal stop: the leases would expire unseen
                    log.warning("lease renewal failed: %s: %s", type(error).__name__, error)

        def look_after():
            last_prune = 0.0
            while not stop.wait(seconds / 2):
                try:
                    if self.leases.expires:
                        self.take_over()
                    if time.monotonic() - last_prune > prune_every:
                        self.prune()
                        last_prune = time.monotonic()
                except Exception as error:  # the queue's storage is down: try again next round
                    log.warning("housekeeping failed: %s: %s", type(error).__name__, error)

        threads = [
            threading.Thread(target=renew, name="lease-renewal", daemon=True),
            threading.Thread(target=look_after, name="housekeeping", daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads[0]

    # --- the worker ---------------------------------------------------------------------------
    def run_next(self) -> bool:
        """Run the next queued task in this thread (the worker loop without threads, for tests and tools)."""
        task = self.huey.dequeue()
        if task is None:
            return False
        self.huey.execute(task)
        return True

    def consumer(self, workers: int = 1):
        """huey's consumer; SIGTERM stops it gracefully: the run in progress finishes its write, or is
        handed back to the queue when it has not started writing."""
        return self.huey.create_consumer(
            workers=workers, worker_type="thread", periodic=False, graceful_signal="TERM", max_delay=1.0
        )  # SQLite is polled: ≤ 1 s

    def _run(self, key: str, task=None) -> None:
        record = self.get(key)
        if record is None or record["state"] in FINAL:
            return
        lease = f"run:{key}"
        if not self.leases.take(lease):
            log.info("run %s is held by %s; this copy is dropped", key, self.leases.holder(lease))
            return
        try:
            self._run_leased(key, task)
        except Locked as error:
            log.info("run %s waits for %s", key, error)
            raise RetryTask(delay=LOCK_RETRY_SECONDS) from None
        finally:
            self.leases.release(lease)

    def _run_leased(self, key: str, task) -> None:
        record = self.get(key)
        if record is None or record["state"] in FINAL:
            return
        record["worker"] = self.worker
        try:
            if record["state"] != "written":
                if self.huey.get(CANCEL_PREFIX + key, peek=True) is not None:
                    raise Cancelled(key)
                self.move(record, "running", attempts=record.get("attempts", 0) + 1, error=None)
                record["outcome"] = self.runs.execute(RunContext(self, record))
                self.move(record, "written")
            if not self.runs.reply(record, self.runs.done_message(record)):
                raise RetryLater("CVAT did not take the reply")
            self.finish(record, "done")
        except Locked:
            self.move(record, "queued", attempts=record["attempts"] - 1)  # waiting is not an attempt
            raise
        except LeaseLost:
            log.warning(
                "run %s: the lease was lost; %s stops it and leaves it to the worker that took it", key, self.worker
            )
        except HandBack:
            log.info("run %s: handed back by %s, which is stopping", key, self.worker)
            self.move(record, "queued", attempts=record["attempts"] - 1, worker=None)
            self._task(key)
        except Cancelled:
            self.finish(record, "cancelled", "cancelled before it wrote anything")
            self.runs.reply(record, self.runs.failed_message(record))
        except RetryLater as error:
            retries_left = task.retries if task is not None else 0
            if retries_left > 0:
                delay = self.retry_delay * self.retry_backoff ** (self.retries - retries_left)
                record["error"] = str(error)
                self.move(record, "written" if record["state"] == "written" else "retrying")
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


def task_of(record: dict[str, Any]) -> int | None:
    """The CVAT task a run works on (a comment's run knows it once its issue was read)."""
    return record.get("task_id") or (record.get("place") or {}).get("task_id")
