"""CVAT webhook deliveries: the signature check and the one event the service acts on.

CVAT signs each delivery with the webhook's secret: ``X-Signature-256: sha256=<hex HMAC-SHA256 of the
exact request body>``. Deliveries carry no delivery id; a comment's id names the command for good (a
redelivery from CVAT's "Redeliver" button sends the same body).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

SIGNATURE_HEADER = "X-Signature-256"
MAX_BODY_BYTES = 256 * 1024


def sign(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` value CVAT sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time comparison of the header with the body's signature; a missing header never matches."""
    return header is not None and hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True)
class CommentCreated:
    """A ``create:comment`` event: someone wrote ``text`` on issue ``issue_id``."""

    host: str
    comment_id: int
    issue_id: int
    text: str
    author: str

    @property
    def key(self) -> str:
        """The command's identity: the same for every redelivery of this comment."""
        return f"{self.host}/comments/{self.comment_id}"


def sender_host(payload: dict[str, Any]) -> str | None:
    """``host[:port]`` of the CVAT server, as it names itself in the delivery's absolute URLs."""
    candidates = [
        payload.get("sender"),
        (payload.get("comment") or {}).get("owner"),
        payload.get("webhook"),
        payload.get("issue"),
        payload.get("job"),
        payload.get("task"),
        payload.get("project"),
    ]
    for item in candidates:
        url = item.get("url") if isinstance(item, dict) else None
        if isinstance(url, str) and urlparse(url).netloc:
            return urlparse(url).netloc.lower()
    return None


def comment_created(payload: dict[str, Any], host: str) -> CommentCreated | None:
    """The comment of a ``create:comment`` delivery; None for every other event."""
    if payload.get("event") != "create:comment":
        return None
    comment = payload.get("comment")
    if not isinstance(comment, dict):
        return None
    comment_id, issue_id, text = comment.get("id"), comment.get("issue"), comment.get("message")
    if not (isinstance(comment_id, int) and isinstance(issue_id, int) and isinstance(text, str)):
        return None
    author = (comment.get("owner") or {}).get("username") or (payload.get("sender") or {}).get("username") or "?"
    return CommentCreated(host, comment_id, issue_id, text, str(author))
