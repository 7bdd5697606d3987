"""Task-mode runs as a resource of ``momentseg serve``: submit, poll (stage and progress), result, cancel.

A long task does not hold an HTTP request open for its whole run: the caller submits a checked request,
gets the run's id at once, polls it, fetches the result and may cancel it. Runs take the model one at a
time, in order, beside the synchronous ``POST /``; at most ``Limits.max_waiting_runs`` wait, and a
submit beyond that is refused (429, try later). A finished run is kept for ``Limits.run_keep_s`` seconds
(or until its result is fetched). Transport-agnostic, like :mod:`momentseg.service`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from momentseg.service import Job, RequestError, SegmentService

WAITING, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass
class Run:
    """One submitted request and what became of it."""

    id: str
    job: Job | None
    state: str = WAITING
    stage: str | None = None
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "percent": 100 if self.state == DONE else (100 * self.done // self.total if self.total else 0),
        }
        if self.error is not None:
            status["error"] = self.error
        return status


class TaskRuns:
    """The runs of one service, run by one thread in submission order."""

    def __init__(self, service: SegmentService):
        self.service = service
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._waiting: deque[Run] = deque()
        self._changed = threading.Condition()
        threading.Thread(target=self._work, name="momentseg-runs", daemon=True).start()

    def submit(self, body: bytes | str | dict, token: str | None) -> Run:
        """Check the request completely (as ``POST /`` does) and queue it; refuse beyond the waiting bound."""
        job = self.service.prepare(body, token=token)
        if job.numbers is None:
            raise RequestError(400, "invalid_request", "runs take task requests ('task'); send 'frames' to POST /")
        limit = self.service.limits.max_waiting_runs
        with self._changed:
            self._forget_expired()
            if len(self._waiting) >= limit:
                raise RequestError(
                    429,
                    "too_many_runs",
                    f"{limit} runs are already waiting for the model (MOMENTSEG_MAX_WAITING_RUNS): try again later",
                    headers={"Retry-After": "60"},
                )
            run = Run(secrets.token_urlsafe(16), job)
            self._runs[run.id] = run
            self._waiting.append(run)
            self._changed.notify_all()
        return run

    def get(self, run_id: str, token: str | None) -> Run:
        self.service.authorise(token)
        with self._changed:
            self._forget_expired()
            run = self._runs.get(run_id)
        if run is None:
            raise RequestError(
                404,
                "unknown_run",
                "no such run (finished runs are kept for "
                f"{self.service.limits.run_keep_s:g} s, until their result is fetched)",
            )
        return run

    def take_result(self, run_id: str, token: str | None) -> dict[str, Any]:
        """A finished run's result, once: the run is then forgotten (its masks can be large)."""
        run = self.get(run_id, token)
        result = run.result
        if run.state != DONE or result is None:
            raise RequestError(
                409,
                "not_done",
                f"run {run_id} is {run.state}, not done" + (f": {run.error['message']}" if run.error else ""),
            )
        with self._changed:
            self._runs.pop(run_id, None)
        return result

    def cancel(self, run_id: str, token: str | None) -> Run:
        """A waiting run is dropped; a running one stops at its next frame and frees the model."""
        run = self.get(run_id, token)
        with self._changed:
            run.cancel.set()
            if run.state == WAITING:
                self._waiting.remove(run)
                self._finish(run, CANCELLED, error={"error": "cancelled", "message": "cancelled by the caller"})
        return run

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._waiting:
                    self._changed.wait()
                run = self._waiting.popleft()
                run.state = RUNNING
            job = run.job
            assert job is not None, "a waiting run still holds its job"
            try:
                result = self.service.execute(job, cancel=run.cancel, progress=partial(_report, run))
            except Exception as error:  # every failure becomes the run's error
                _, answer = self.service.error_response(error)
                with self._changed:
                    self._finish(run, CANCELLED if run.cancel.is_set() else FAILED, error=answer)
            else:
                with self._changed:
                    self._finish(run, DONE, result=result)

    def _finish(
        self, run: Run, state: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> None:
        run.state, run.result, run.error, run.job = state, result, error, None
        run.finished_at = time.monotonic()

    def _forget_expired(self) -> None:
        keep = self.service.limits.run_keep_s
        now = time.monotonic()
        for run_id in [i for i, r in self._runs.items() if r.finished_at is not None and now - r.finished_at > keep]:
            del self._runs[run_id]


def _report(run: Run, stage: str, done: int, total: int) -> None:
    """A running run's progress, as the pipeline reports it."""
    run.stage, run.done, run.total = stage, done, total
