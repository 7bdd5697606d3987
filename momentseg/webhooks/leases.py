"""Who holds a run or an object right now: leases in the queue's own storage.

On Redis a lease is a key with an expiry (redis-py's ``Lock``: SET NX PX, extended and released only by
the token that took it). The worker holding it renews it every third of its length; a worker that dies
stops renewing, the key expires, and the run is free for another worker (``WebhookQueue.take_over``).
A worker that finds it could not renew in time has lost the lease and stops before it writes.

On SQLite (one machine, one worker process) a lease is huey's lock: it never expires, and the worker
clears them all when it starts, before it re-queues what was cut off.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid

from huey.api import Huey
from huey.storage import RedisStorage
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

log = logging.getLogger(__name__)

LEASE_PREFIX = "momentseg.lease:"


class LeaseLost(Exception):
    """The lease expired before its worker renewed it: another worker may hold the run now."""


class Leases:
    """The leases one worker process holds, renewed together."""

    expires = False

    def __init__(self, huey: Huey, worker: str, seconds: float):
        self.huey = huey
        self.worker = worker
        self.seconds = seconds
        self._held: dict[str, Lock | None] = {}  # name: its Redis lock (None: a huey lock, nothing to extend)
        self._lost: set[str] = set()
        self._guard = threading.Lock()

    def take(self, name: str) -> bool:
        raise NotImplementedError

    def release(self, name: str) -> None:
        raise NotImplementedError

    def holder(self, name: str) -> str | None:
        """The worker that holds ``name``, None when nobody does."""
        raise NotImplementedError

    def renew(self) -> list[str]:
        """Extend every lease held; the names of those that were lost."""
        return []

    def lost(self, name: str) -> bool:
        with self._guard:
            return name in self._lost

    def clear_all(self) -> None:
        """Release every lease of every worker (only where no other worker can hold one)."""

    def held(self) -> list[str]:
        with self._guard:
            return list(self._held)


class RedisLeases(Leases):
    expires = True

    def __init__(self, huey: Huey, worker: str, seconds: float):
        super().__init__(huey, worker, seconds)
        self.conn = huey.storage.conn

    def _lock(self, name: str) -> Lock:
        return self.conn.lock(LEASE_PREFIX + name, timeout=self.seconds, thread_local=False)

    def take(self, name: str) -> bool:
        lock = self._lock(name)
        if not lock.acquire(blocking=False, token=f"{self.worker} {uuid.uuid4().hex}"):
            return False
        with self._guard:
            self._held[name] = lock
            self._lost.discard(name)
        return True

    def release(self, name: str) -> None:
        with self._guard:
            lock = self._held.pop(name, None)
            self._lost.discard(name)
        if lock is not None:
            with contextlib.suppress(LockError):  # expired meanwhile: nothing left to release
                lock.release()

    def holder(self, name: str) -> str | None:
        token = self.conn.get(LEASE_PREFIX + name)
        return None if token is None else token.decode().rsplit(" ", 1)[0]

    def renew(self) -> list[str]:
        lost = []
        for name in self.held():
            with self._guard:
                lock = self._held.get(name)
            if lock is None:  # released meanwhile
                continue
            try:
                lock.extend(self.seconds, replace_ttl=True)
            except (LockError, RedisError) as error:
                log.warning("lease %s lost (%s)", name, error)
                with self._guard:
                    self._lost.add(name)
                lost.append(name)
        return lost


class LocalLeases(Leases):
    """huey's locks on the SQLite file: for one worker process on one machine."""

    def _key(self, name: str) -> str:
        return f"{self.huey.name}.lock.{LEASE_PREFIX}{name}"

    def take(self, name: str) -> bool:
        if not self.huey.put_if_empty(self._key(name), self.worker):
            return False
        with self._guard:
            self._held[name] = None
        return True

    def release(self, name: str) -> None:
        with self._guard:
            self._held.pop(name, None)
        self.huey.delete(self._key(name))

    def holder(self, name: str) -> str | None:
        value = self.huey.get(self._key(name), peek=True)
        return value.decode() if isinstance(value, bytes) else value

    def clear_all(self) -> None:
        prefix = self._key("")
        for key in list(self.huey.all_results()):
            key = key.decode() if isinstance(key, bytes) else key
            if key.startswith(prefix):
                self.huey.delete(key)


def open_leases(huey: Huey, worker: str, seconds: float) -> Leases:
    kind = RedisLeases if isinstance(huey.storage, RedisStorage) else LocalLeases
    return kind(huey, worker, seconds)
