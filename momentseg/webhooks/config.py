"""The webhook service's settings, from the environment (docs/webhooks.md lists every variable)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import platformdirs

from momentseg.errors import MomentSegError
from momentseg.webhooks.queue import LEASE_SECONDS, MAX_WAITING, RETENTION_DAYS


class WebhookConfigError(MomentSegError):
    code = "webhook_not_configured"


@dataclass(frozen=True)
class WebhookSettings:
    secret: str = field(repr=False)
    cvat_hosts: frozenset[str]
    projects: frozenset[int]
    queue_path: Path | None = None
    redis_url: str | None = field(default=None, repr=False)
    label: str = "object"
    moment_label: str = "moment"
    create_labels: bool = False
    progress_step: int = 25
    retries: int = 6
    retry_delay: float = 30.0
    lease_seconds: float = LEASE_SECONDS
    retention_days: float = RETENTION_DAYS
    max_waiting: int = MAX_WAITING
    token: str | None = field(default=None, repr=False)  # shows the health endpoint's details

    def __post_init__(self):
        if not self.queue_path and not self.redis_url:
            raise WebhookConfigError("no queue: set MOMENTSEG_WEBHOOK_QUEUE (a SQLite file) or MOMENTSEG_REDIS_URL")

    def check_endpoint(self) -> None:
        """What answering CVAT's webhooks needs (a batch from the command line needs only the queue)."""
        if not self.secret:
            raise WebhookConfigError(
                "no webhook secret: set MOMENTSEG_WEBHOOK_SECRET (or "
                "MOMENTSEG_WEBHOOK_SECRET_FILE) to the secret given to CVAT's webhook; the "
                "endpoint does not start without it"
            )
        if not self.cvat_hosts:
            raise WebhookConfigError("no CVAT host accepted: set MOMENTSEG_WEBHOOK_CVAT_HOSTS (or CVAT_HOST)")
        if not self.projects:
            raise WebhookConfigError(
                "no CVAT project accepted: set MOMENTSEG_WEBHOOK_PROJECTS to the project ids "
                "whose webhooks this service answers (comma-separated)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, endpoint: bool = True, **overrides) -> WebhookSettings:
        """The settings; ``endpoint``: also check what answering webhooks needs."""
        env = os.environ if env is None else env
        secret = _secret(env, "MOMENTSEG_WEBHOOK_SECRET") or ""
        hosts = _split(env.get("MOMENTSEG_WEBHOOK_CVAT_HOSTS", ""))
        if not hosts and env.get("CVAT_HOST"):
            hosts = [urlparse(env["CVAT_HOST"]).netloc or env["CVAT_HOST"]]
        try:
            projects = [int(p) for p in _split(env.get("MOMENTSEG_WEBHOOK_PROJECTS", ""))]
        except ValueError:
            raise WebhookConfigError(
                "MOMENTSEG_WEBHOOK_PROJECTS must be project ids (numbers), comma-separated"
            ) from None
        values = dict(
            secret=secret,
            cvat_hosts=frozenset(h.lower() for h in hosts),
            projects=frozenset(projects),
            queue_path=Path(
                env.get("MOMENTSEG_WEBHOOK_QUEUE") or Path(platformdirs.user_data_dir("momentseg")) / "webhooks.db"
            ),
            redis_url=env.get("MOMENTSEG_REDIS_URL") or None,
            label=env.get("MOMENTSEG_WEBHOOK_LABEL", "object"),
            moment_label=env.get("MOMENTSEG_MOMENT_LABEL", "moment"),
            create_labels=env.get("MOMENTSEG_WEBHOOK_CREATE_LABELS", "").lower() in ("1", "true", "yes"),
            lease_seconds=_number(env, "MOMENTSEG_LEASE_SECONDS", float, LEASE_SECONDS),
            retention_days=_number(env, "MOMENTSEG_RUN_RETENTION_DAYS", float, RETENTION_DAYS),
            max_waiting=_number(env, "MOMENTSEG_QUEUE_MAX_WAITING", int, MAX_WAITING),
            token=_secret(env, "MOMENTSEG_WEBHOOK_TOKEN"),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if endpoint:
            settings.check_endpoint()
        return settings


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """``name``'s value, or the content of the file ``name``_FILE names."""
    if env.get(name):
        return env[name]
    if env.get(f"{name}_FILE"):
        path = Path(env[f"{name}_FILE"])
        try:
            return path.read_text().strip() or None
        except OSError as error:
            raise WebhookConfigError(f"{name}_FILE {path} cannot be read ({error.strerror})") from None
    return None


def _number(env: Mapping[str, str], name: str, kind: type, default):
    if not env.get(name):
        return default
    try:
        value = kind(env[name])
    except ValueError:
        value = 0
    if value <= 0:
        raise WebhookConfigError(
            f"{name} must be a positive {'whole ' if kind is int else ''}number, got '{env[name]}'"
        )
    return value


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
