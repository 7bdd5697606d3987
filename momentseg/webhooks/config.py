"""The webhook service's settings, from the environment (docs/webhooks.md lists every variable)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

import platformdirs

from momentseg.errors import MomentSegError


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

    def __post_init__(self):
        if not self.secret:
            raise WebhookConfigError("no webhook secret: set MOMENTSEG_WEBHOOK_SECRET (or MOMENTSEG_WEBHOOK_SECRET_FILE) "
                                     "to the secret given to CVAT's webhook; the endpoint does not start without it")
        if not self.cvat_hosts:
            raise WebhookConfigError("no CVAT host accepted: set MOMENTSEG_WEBHOOK_CVAT_HOSTS (or CVAT_HOST)")
        if not self.projects:
            raise WebhookConfigError("no CVAT project accepted: set MOMENTSEG_WEBHOOK_PROJECTS to the project ids "
                                     "whose webhooks this service answers (comma-separated)")
        if not self.queue_path and not self.redis_url:
            raise WebhookConfigError("no queue: set MOMENTSEG_WEBHOOK_QUEUE (a SQLite file) or MOMENTSEG_REDIS_URL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "WebhookSettings":
        env = os.environ if env is None else env
        secret = env.get("MOMENTSEG_WEBHOOK_SECRET", "")
        if not secret and env.get("MOMENTSEG_WEBHOOK_SECRET_FILE"):
            path = Path(env["MOMENTSEG_WEBHOOK_SECRET_FILE"])
            try:
                secret = path.read_text().strip()
            except OSError as error:
                raise WebhookConfigError(f"MOMENTSEG_WEBHOOK_SECRET_FILE {path} cannot be read "
                                         f"({error.strerror})") from None
        hosts = _split(env.get("MOMENTSEG_WEBHOOK_CVAT_HOSTS", ""))
        if not hosts and env.get("CVAT_HOST"):
            hosts = [urlparse(env["CVAT_HOST"]).netloc or env["CVAT_HOST"]]
        try:
            projects = [int(p) for p in _split(env.get("MOMENTSEG_WEBHOOK_PROJECTS", ""))]
        except ValueError:
            raise WebhookConfigError("MOMENTSEG_WEBHOOK_PROJECTS must be project ids (numbers), comma-separated") from None
        values = dict(
            secret=secret, cvat_hosts=frozenset(h.lower() for h in hosts), projects=frozenset(projects),
            queue_path=Path(env.get("MOMENTSEG_WEBHOOK_QUEUE") or Path(platformdirs.user_data_dir("momentseg"))
                            / "webhooks.db"),
            redis_url=env.get("MOMENTSEG_REDIS_URL") or None,
            label=env.get("MOMENTSEG_WEBHOOK_LABEL", "object"),
            moment_label=env.get("MOMENTSEG_MOMENT_LABEL", "moment"),
            create_labels=env.get("MOMENTSEG_WEBHOOK_CREATE_LABELS", "").lower() in ("1", "true", "yes"),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
