"""Connecting to CVAT: credentials only from the environment, a file or a prompt, never printed; timeouts on
every request; no redirect followed; every failure one clear line (exit code 2 in the CLI)."""

import time

import pytest
from cvat_sdk.api_client.exceptions import ApiTypeError, ApiValueError

from momentseg.cli import main
from momentseg.cvat.connection import (
    CvatConfigurationError,
    CvatError,
    CvatNotAuthorisedError,
    CvatTimeoutError,
    CvatUnreachableError,
    TaskNotFoundError,
    Timeouts,
    connect,
    connect_from_env,
    cvat_errors,
    redact_url,
)
from momentseg.cvat.frames import TaskFrames

from conftest import synthetic_frames
from cvat_stub import PASSWORD, TOKEN, USER, CvatStub


@pytest.fixture
def stub():
    server = CvatStub()
    server.add_task(42, synthetic_frames(6), ["dog"])
    yield server
    server.close()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://user:s3cret@cvat.example.com:8080/api/tasks?x=1", "https://cvat.example.com:8080/api/tasks?x=1"),
        ("http://cvat:8080/path?token=abc&page=2&api_key=k", "http://cvat:8080/path?token=***&page=2&api_key=***"),
        ("http://only-user@host/", "http://host/"),
        ("http://host/?password=p%40ss", "http://host/?password=***"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_credentials(stub):
    assert connect(stub.url, access_token=TOKEN).api_client.tasks_api.retrieve(42)[0].id == 42
    assert connect(stub.url, user=USER, password=PASSWORD).api_client.tasks_api.retrieve(42)[0].id == 42
    host_with_password = stub.url.replace("http://", f"http://{USER}:{PASSWORD}@")
    client = connect(host_with_password)
    assert client.api_map.host == stub.url and client.api_client.tasks_api.retrieve(42)[0].id == 42
    with pytest.raises(CvatConfigurationError, match="CVAT_ACCESS_TOKEN"):
        connect(stub.url)
    with pytest.raises(CvatError) as error:
        connect(host_with_password.replace(PASSWORD, "wrong-pass"))
    assert "wrong-pass" not in str(error.value) and "HTTP 400" in str(error.value)
    with pytest.raises(CvatNotAuthorisedError):
        TaskFrames(connect(stub.url, access_token="wrong"), 42)
    with pytest.raises(TaskNotFoundError, match="task 7"):
        TaskFrames(connect(stub.url, access_token=TOKEN), 7)


def test_credentials_file_and_environment(stub, tmp_path):
    secrets = tmp_path / "cvat.env"
    secrets.write_text(f"# CVAT\nCVAT_USER={USER}\nCVAT_PASSWORD='{PASSWORD}'\n")
    client = connect_from_env({"CVAT_HOST": stub.url, "CVAT_CREDENTIALS_FILE": str(secrets)})
    assert client.api_client.tasks_api.retrieve(42)[0].id == 42
    with pytest.raises(CvatConfigurationError, match="cannot read the CVAT credentials file"):
        connect_from_env({"CVAT_HOST": stub.url, "CVAT_CREDENTIALS_FILE": str(tmp_path / "missing")})
    with pytest.raises(CvatConfigurationError, match="CVAT_HOST"):
        connect_from_env({"CVAT_ACCESS_TOKEN": TOKEN})


def test_unreachable_slow_and_redirecting_servers(stub):
    with pytest.raises(CvatUnreachableError, match="cannot be reached") as refused:
        connect("http://127.0.0.1:9", access_token=TOKEN)
    assert not isinstance(refused.value, CvatTimeoutError)
    client = connect(stub.url, access_token=TOKEN, timeouts=Timeouts(connect=1, read=0.3))
    stub.delay = 2
    started = time.monotonic()
    with pytest.raises(CvatTimeoutError, match="did not answer in time"):
        TaskFrames(client, 42)
    assert time.monotonic() - started < 1.5
    stub.delay = 0
    elsewhere = CvatStub()
    try:
        stub.redirect_to = elsewhere.url
        with pytest.raises(CvatError, match="redirect .*not followed"):
            TaskFrames(client, 42)
        with pytest.raises(CvatError, match="redirect"):
            connect(stub.url, user=USER, password=PASSWORD)
        assert elsewhere.requests == []
    finally:
        elsewhere.close()


@pytest.mark.parametrize("error", [ApiValueError("bad value for 'frame'"), ApiTypeError("Invalid type for 'id'")])
def test_sdk_value_and_type_errors_are_one_line(error):
    with pytest.raises(CvatError, match="does not fit CVAT's API") as raised:
        with cvat_errors("task 3"):
            raise error
    assert "\n" not in str(raised.value)


def test_cli_takes_no_password_and_prints_none(stub, monkeypatch, capsys):
    monkeypatch.delenv("CVAT_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("CVAT_HOST", stub.url)
    base = ["export", "--task", "42", "--format", "coco", "--out", "/dev/null"]
    assert main([*base, "--auth", f"{USER}:{PASSWORD}"]) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err and "visible to other users" in err and err.count("\n") == 1
    assert main([*base, "--host", stub.url.replace("http://", f"http://{USER}:{PASSWORD}@")]) == 2
    assert PASSWORD not in capsys.readouterr().err
    monkeypatch.setenv("CVAT_HOST", stub.url.replace("http://", f"http://{USER}:wrong-pass@"))
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "wrong-pass" not in err and err.count("\n") == 1
    monkeypatch.setenv("CVAT_HOST", stub.url)
    monkeypatch.setenv("CVAT_PASSWORD", PASSWORD)
    monkeypatch.setenv("CVAT_READ_TIMEOUT", "0.3")
    stub.delay = 1
    assert main([*base, "--auth", USER]) == 2
    assert "did not answer in time" in capsys.readouterr().err
