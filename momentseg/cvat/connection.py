"""Connecting to CVAT with cvat-sdk: credentials from the environment or a file, timeouts on every request,
no redirects, and CVAT failures as errors a user can act on, with no credential in any message."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import urllib3
from cvat_sdk import Client, Config
from cvat_sdk.api_client import exceptions as api_exceptions
from cvat_sdk.core.exceptions import InvalidHostException

from momentseg.errors import MomentSegError


class CvatError(MomentSegError):
    """CVAT answered with an error the user cannot fix from here."""

    code = "cvat_error"
    status = 502


class TaskNotFoundError(CvatError):
    code = "task_not_found"
    status = 404


class CvatNotAuthorisedError(CvatError):
    code = "cvat_not_authorised"
    status = 403


class CvatUnreachableError(CvatError):
    code = "cvat_unreachable"
    status = 502


class CvatTimeoutError(CvatUnreachableError):
    code = "cvat_timeout"
    status = 504


class CvatConfigurationError(CvatError):
    code = "cvat_not_configured"
    status = 503


_SECRET_QUERY_KEYS = re.compile(r"token|key|pass|secret|sig|auth|session|csrf", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` and with credential-like query values replaced by ``***``."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode(
        [(k, "***" if _SECRET_QUERY_KEYS.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _reason(error: api_exceptions.ApiException) -> str:
    """A one-line reason from CVAT's answer: its JSON ``detail``, never an HTML page."""
    body = error.body or b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    if text.lstrip().startswith(("{", "[")) and len(text) < 2000:
        return " ".join(text.split())
    return error.reason or ""


@contextmanager
def cvat_errors(what: str) -> Iterator[None]:
    """Turn cvat-sdk and network failures during ``what`` into named errors."""
    try:
        yield
    except api_exceptions.NotFoundException as error:
        raise TaskNotFoundError(f"{what}: not found on the CVAT server") from error
    except (api_exceptions.UnauthorizedException, api_exceptions.ForbiddenException) as error:
        raise CvatNotAuthorisedError(f"{what}: CVAT refused the credentials (HTTP {error.status})") from error
    except api_exceptions.ApiException as error:
        if 300 <= (error.status or 0) < 400:
            raise CvatError(
                f"{what}: CVAT answered with a redirect (HTTP {error.status}); redirects are not "
                "followed: set CVAT_HOST to the server's final address"
            ) from error
        raise CvatError(f"{what}: CVAT answered HTTP {error.status} {_reason(error)}".rstrip()) from error
    except (api_exceptions.ApiValueError, api_exceptions.ApiTypeError) as error:
        raise CvatError(f"{what}: the request does not fit CVAT's API ({str(error).splitlines()[0]})") from error
    except urllib3.exceptions.NewConnectionError as error:  # a subclass of urllib3's TimeoutError, yet a refusal
        raise CvatUnreachableError(f"{what}: CVAT cannot be reached (connection refused or no route)") from error
    except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
        raise CvatTimeoutError(f"{what}: CVAT did not answer in time") from error
    except urllib3.exceptions.MaxRetryError as error:
        if isinstance(error.reason, urllib3.exceptions.NewConnectionError):
            raise CvatUnreachableError(f"{what}: CVAT cannot be reached (connection refused or no route)") from error
        if isinstance(error.reason, urllib3.exceptions.TimeoutError):
            raise CvatTimeoutError(f"{what}: CVAT did not answer in time") from error
        raise CvatUnreachableError(f"{what}: CVAT cannot be reached ({type(error.reason).__name__})") from error
    except (urllib3.exceptions.HTTPError, ConnectionError) as error:
        raise CvatUnreachableError(f"{what}: CVAT cannot be reached ({type(error).__name__})") from error


@dataclass(frozen=True)
class Timeouts:
    """Seconds to open a connection and to wait for each read from CVAT."""

    connect: float = 10.0
    read: float = 120.0


class _GuardedPoolManager(urllib3.PoolManager):
    """Every request gets connect/read timeouts, and no redirect is followed (a 3xx comes back as is, so
    credentials never travel to another host)."""

    def __init__(self, timeouts: Timeouts, **kwargs):
        super().__init__(**kwargs)
        self._timeout = urllib3.Timeout(connect=timeouts.connect, read=timeouts.read)

    # PoolManager's own signature, which urllib3 itself marks as an incompatible override of RequestMethods'
    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kwargs: Any
    ) -> urllib3.BaseHTTPResponse:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        kwargs["retries"] = urllib3.Retry(total=0, redirect=0, raise_on_redirect=False)
        return super().urlopen(method, url, redirect=False, **kwargs)


def _split_credentials(host: str) -> tuple[str, str | None, str | None]:
    parts = urlsplit(host if "://" in host else f"https://{host}")
    user, password = parts.username, parts.password
    return redact_url(host if "://" in host else parts.geturl()), user, password


def connect(
    host: str,
    *,
    access_token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    timeouts: Timeouts = Timeouts(),
) -> Client:
    """A logged-in cvat-sdk client (a personal access token, or user and password)."""
    if not host:
        raise CvatConfigurationError("no CVAT server configured: set CVAT_HOST")
    host, host_user, host_password = _split_credentials(host)
    if not access_token and not (user and password) and host_user and host_password:
        user, password = host_user, host_password
    if not access_token and not (user and password):
        raise CvatConfigurationError(
            "no CVAT credentials: set CVAT_ACCESS_TOKEN, or CVAT_USER and CVAT_PASSWORD (or CVAT_CREDENTIALS_FILE)"
        )
    with cvat_errors(f"connecting to {host}"):
        try:
            client = Client(host, config=Config(status_check_period=0.1), check_server_version=False)
        except InvalidHostException as error:
            raise CvatConfigurationError(f"CVAT_HOST is not a server URL: {error}") from None
        rest = client.api_client.rest_client
        rest.pool_manager = _GuardedPoolManager(timeouts, **rest.pool_manager.connection_pool_kw)
        client.api_client.server_api.retrieve_about(_parse_response=False)  # reachable, and CVAT
        client.login((user, password) if not access_token else _token(access_token))
    return client


def _token(access_token: str):
    from cvat_sdk.core.auth import AccessTokenCredentials

    return AccessTokenCredentials(access_token)


def read_credentials_file(path: str | Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (CVAT_ACCESS_TOKEN, or CVAT_USER and CVAT_PASSWORD); ``#`` starts a comment."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise CvatConfigurationError(f"cannot read the CVAT credentials file '{path}': {error.strerror}") from None
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def credentials_from_env(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The server, token or user/password from the environment, then from ``CVAT_CREDENTIALS_FILE``."""
    env = dict(os.environ if env is None else env)
    if env.get("CVAT_CREDENTIALS_FILE"):
        env = {**read_credentials_file(env["CVAT_CREDENTIALS_FILE"]), **{k: v for k, v in env.items() if v}}
    return {
        "host": env.get("CVAT_HOST", ""),
        "access_token": env.get("CVAT_ACCESS_TOKEN") or None,
        "user": env.get("CVAT_USER") or None,
        "password": env.get("CVAT_PASSWORD") or None,
    }


def timeouts_from_env(env: Mapping[str, str] | None = None) -> Timeouts:
    env = os.environ if env is None else env
    try:
        return Timeouts(
            float(env.get("CVAT_CONNECT_TIMEOUT", Timeouts.connect)), float(env.get("CVAT_READ_TIMEOUT", Timeouts.read))
        )
    except ValueError:
        raise CvatConfigurationError("CVAT_CONNECT_TIMEOUT and CVAT_READ_TIMEOUT must be numbers of seconds") from None


def connect_from_env(env: Mapping[str, str] | None = None) -> Client:
    """Connect with ``CVAT_HOST`` and ``CVAT_ACCESS_TOKEN`` or ``CVAT_USER`` / ``CVAT_PASSWORD``."""
    credentials = credentials_from_env(env)
    return connect(credentials.pop("host") or "", **credentials, timeouts=timeouts_from_env(env))


def task_link(client: Client, task_id: int, job_id: int | None = None) -> str:
    """The task's (or job's) page in CVAT's web UI, without credentials."""
    host = redact_url(client.api_map.host)
    return f"{host}/tasks/{task_id}/jobs/{job_id}" if job_id else f"{host}/tasks/{task_id}"
