"""`momentseg serve` over real HTTP on loopback: uvicorn in a thread, raw sockets for what well-behaved
clients never send (slow or missing bodies, smuggling, oversized heads), and a bounded load test."""

import base64
import dataclasses
import json
import logging
import resource
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.routing import Route

from momentseg.serve import ServeSettings, create_app

from conftest import synthetic_frames
from function_server import serve_command
from http_helpers import exchange, only_json_response, responses, serve_in_thread, trickle, wait_for
from test_service import FRAMES, TASK_TOKEN, b64, bomb_jpeg, request, tiny_service

SETTINGS = ServeSettings(
    max_body_bytes=4 << 20,
    header_timeout_s=1.0,
    read_timeout_s=1.0,
    body_timeout_s=3.0,
    keep_alive_s=1.0,
    max_pending=64,
)
SLACK = 3.0  # seconds a loaded CI machine may add to a timeout


@pytest.fixture(scope="module")
def service(tiny_checkpoint):
    return tiny_service(tiny_checkpoint, MOMENTSEG_TASK_TOKEN=TASK_TOKEN)


async def _failing(request):
    raise RuntimeError("secret detail /srv/internal/path")


def start_server(service, settings):
    return serve_in_thread(create_app(service, settings, routes=[Route("/fail", _failing, methods=["GET"])]), settings)


@pytest.fixture(scope="module")
def server(service):
    server, stop = start_server(service, SETTINGS)
    yield server
    stop()


@pytest.fixture(scope="module")
def port(server):
    return server.port


def url(port, path="/"):
    return f"http://127.0.0.1:{port}{path}"


@pytest.mark.parametrize(
    "method, path, kwargs, status, code",
    [
        ("GET", "/nope", {}, 404, "not_found"),
        ("GET", "/", {}, 405, "method_not_allowed"),
        ("PUT", "/health", {}, 405, "method_not_allowed"),
        (
            "OPTIONS",
            "/",
            {"headers": {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}},
            405,
            "method_not_allowed",
        ),
        ("POST", "/", {"content": b"{nope"}, 400, "malformed_json"),
        ("POST", "/", {"json": {"prompt": "dog", "task": {"id": 1}}}, 401, "unauthorized"),
        (
            "POST",
            "/",
            {"json": {"prompt": "dog", "task": {"id": 1}}, "headers": {"Authorization": "Bearer wrong"}},
            401,
            "unauthorized",
        ),
        ("POST", "/", {"json": request(frames=[base64.b64encode(bomb_jpeg()).decode()])}, 413, "frame_too_large"),
        ("POST", "/", {"content": b"x" * (5 << 20)}, 413, "request_too_large"),
        ("GET", "/fail", {}, 500, "internal_error"),
    ],
)
def test_every_status_is_json_without_internals(port, method, path, kwargs, status, code):
    answer = httpx.request(method, url(port, path), timeout=60, **kwargs)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error", "message"}
    assert not any(h.lower().startswith("access-control-") for h in answer.headers)
    assert "secret" not in answer.text and "/srv" not in answer.text and "Traceback" not in answer.text
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "head, status",
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 20_000, 414),  # still arriving: h11's buffer limit
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000, 431),
        (b"HELLO THERE\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n{nope", 400),
    ],
)
def test_malformed_http_is_a_json_4xx_and_the_connection_closes(port, head, status):
    seconds, raw = exchange(port, head)
    assert only_json_response(raw)[0] == status
    assert seconds < SETTINGS.header_timeout_s + SLACK


@pytest.mark.parametrize(
    "smuggling",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 60\r\n\r\n0\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_request_smuggling_is_refused_and_the_hidden_request_never_served(port, smuggling):
    _, raw = exchange(port, smuggling)
    (answer,) = responses(raw)  # one answer: the smuggled GET is never read
    assert answer[0] == 400 and "Content-Length and Transfer-Encoding" in answer[2]["message"]


def test_a_body_declared_too_large_is_refused_before_it_is_sent(port):
    seconds, raw = exchange(
        port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
    )
    status, body = only_json_response(raw)
    assert (status, body["error"]) == (413, "request_too_large") and str(SETTINGS.max_body_bytes) in body["message"]
    assert b"100 Continue" not in raw and seconds < SLACK


def test_a_streamed_body_is_cut_at_the_limit_while_it_arrives(port):
    def stream(connection):
        chunk = b"x" * 65536
        for _ in range(200):  # 12.5 MB, three times the limit
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    seconds, raw = exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", then=stream)
    status, body = only_json_response(raw)
    assert (status, body["error"]) == (413, "request_too_large")


@pytest.mark.parametrize(
    "head",
    [
        b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"prompt"',
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
    ],
)
def test_a_body_that_never_arrives_is_answered_within_the_read_timeout(port, head):
    seconds, raw = exchange(port, head)
    status, body = only_json_response(raw)
    assert (status, body["error"]) == (408, "request_timeout")
    assert SETTINGS.read_timeout_s * 0.9 <= seconds < SETTINGS.read_timeout_s + SLACK
    if b"Expect" in head:
        assert raw.startswith(b"HTTP/1.1 100 ")


def test_a_trickled_body_is_cut_at_the_body_timeout(port):
    # each byte comes within the read timeout; the whole body never within the body timeout
    seconds, raw = exchange(
        port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", then=trickle(b" " * 100, 0.4)
    )
    assert only_json_response(raw)[0] == 408
    assert seconds < SETTINGS.body_timeout_s + SLACK + 5 * 0.4


def test_slow_or_missing_request_heads_are_cut_at_the_header_timeout(port):
    seconds, raw = exchange(port, b"")
    assert only_json_response(raw)[0] == 408 and seconds < SETTINGS.header_timeout_s + SLACK

    seconds, raw = exchange(port, b"POST / HTTP/1.1\r\n", then=trickle(b"Host: x\r\nX-Slow: 1234567890\r\n", 0.2))
    assert only_json_response(raw)[0] == 408 and seconds < SETTINGS.header_timeout_s + SLACK


def test_an_idle_keep_alive_connection_is_closed(port):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        assert responses(received)[0][0] == 200
        assert time.monotonic() - started < SETTINGS.keep_alive_s + SLACK


def test_a_malformed_request_does_not_wait_for_the_busy_model(port, service):
    frames = [b64(f) for f in synthetic_frames(20)]
    with ThreadPoolExecutor(1) as pool:
        long_run = pool.submit(httpx.post, url(port), json=request(frames=frames, keyframes=1), timeout=300)
        wait_for(service._lock.locked, 60)
        started = time.monotonic()
        for bad in (
            b"{nope",
            json.dumps(request(frames=["@@"])).encode(),
            json.dumps(request(frames=[base64.b64encode(bomb_jpeg()).decode()] * 5)).encode(),
        ):
            assert 400 <= httpx.post(url(port), content=bad, timeout=60).status_code < 500
        refused_in = time.monotonic() - started
        assert service._lock.locked(), "the long run should still hold the model"
        assert long_run.result().status_code == 200
    assert refused_in < 5


def test_a_caller_that_leaves_frees_the_model(port, service, caplog):
    frames = [b64(f) for f in synthetic_frames(20)]
    body = json.dumps(request(frames=frames, keyframes=1)).encode()
    caplog.set_level(logging.INFO, logger="momentseg.serve")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_for(service._lock.locked, 60)
    left = time.monotonic()
    wait_for(lambda: not service._lock.locked(), 30)
    assert time.monotonic() - left < 5  # a whole 20-frame run takes longer on this model
    assert any("cancelled" in record.getMessage() for record in caplog.records)
    assert httpx.post(url(port), json=request(frames=FRAMES[:3], keyframes=1), timeout=120).status_code == 200


HOSTILE = [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # a TLS hello
    b"",
]


def _hostile_bodies():
    bomb = json.dumps(request(frames=[base64.b64encode(bomb_jpeg()).decode()] * 8)).encode()
    task = json.dumps({"prompt": "dog", "task": {"id": 1}}).encode()
    deep = b'{"prompt": "x", "frames": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    return [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body) for body in (bomb, task, deep)
    ]


def test_load_valid_requests_are_all_answered_among_hostile_ones_and_memory_stays_bounded(port):
    valid_count, hostile = 4, (HOSTILE + _hostile_bodies()) * 2
    valid = request(frames=FRAMES[:5], keyframes=1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with ThreadPoolExecutor(valid_count + len(hostile)) as pool:
        hostile_answers = [pool.submit(exchange, port, data) for data in hostile]
        valid_answers = [pool.submit(httpx.post, url(port), json=valid, timeout=300) for _ in range(valid_count)]
        statuses = [answer.result().status_code for answer in valid_answers]
        refused = [responses(answer.result()[1]) for answer in hostile_answers]
    assert statuses == [200] * valid_count
    for answers in refused:  # every hostile connection got one JSON 4xx, or was closed unanswered (empty)
        assert len(answers) <= 1
        assert all(400 <= status < 500 and body["error"] for status, _, body in answers)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before < 1024
    assert httpx.get(url(port, "/health"), timeout=10).status_code == 200


def test_the_serve_command_starts_and_answers(tiny_checkpoint):
    process = subprocess.Popen(
        serve_command(tiny_checkpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("serving MomentSeg on http://127.0.0.1:")
        served = line.split()[3]
        assert httpx.get(served + "health", timeout=30).json() == {"ready": True, "error": None}
        answer = httpx.post(served, json={"prompt": ""}, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    finally:
        process.terminate()
        assert process.wait(timeout=30) is not None


@pytest.mark.parametrize(
    "extra, env, message",
    [
        (["--port", "99999"], {}, "port number 0-65535"),
        (["--port", "1", "--host", "203.0.113.1"], {}, "cannot listen on 203.0.113.1:1"),
        (["--device", "cuda:7"], {}, "--device is cuda:7 but"),
        (["--device", "tpu"], {}, "--device must be"),
        ([], {"MOMENTSEG_READ_TIMEOUT": "soon"}, "MOMENTSEG_READ_TIMEOUT must be a number"),
        ([], {"MOMENTSEG_MAX_FRAMES": "0"}, "MOMENTSEG_MAX_FRAMES must be positive"),
        ([], {"MOMENTSEG_MAX_BUFFERED_BYTES": "1000"}, "must be at least MOMENTSEG_MAX_BODY_BYTES"),
        (["--checkpoint", "/nowhere/ck", "--port", "0"], {}, "not a folder"),  # 8080 may be taken here
    ],
)
def test_the_serve_command_refuses_bad_settings_on_one_line(tiny_checkpoint, monkeypatch, capsys, extra, env, message):
    from momentseg.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_client_that_stops_reading_its_answers_is_cut_off(server):
    """Pipelined requests whose answers are never read fill every buffer; the connection is then cut
    instead of holding a request slot and its memory for ever."""
    connections = server.server_state.connections
    wait_for(lambda: not connections, 30)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.connect(("127.0.0.1", server.port))
        flood = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 5000
        threading.Thread(target=_send_ignoring_errors, args=(connection, flood), daemon=True).start()
        wait_for(lambda: connections, 10)
        started = time.monotonic()
        wait_for(lambda: not connections, 30)  # while the client reads nothing
        assert time.monotonic() - started < SETTINGS.read_timeout_s + 3 * 2.0 + SLACK
        connection.settimeout(10)
        received = b""
        try:
            while chunk := connection.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            pass
    assert received.count(b"HTTP/1.1 200") < 5000


def _send_ignoring_errors(connection, data):
    try:
        connection.sendall(data)
    except OSError:
        pass


def test_requests_beyond_max_pending_are_turned_away_as_busy(service):
    server, stop = start_server(service, dataclasses.replace(SETTINGS, max_pending=1, read_timeout_s=5.0))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as holder:
            holder.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")  # holds the one slot
            wait_for(lambda: server.server_state.tasks, 10)
            answer = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=10)
            assert (answer.status_code, answer.json()["error"]) == (503, "busy")
            assert answer.headers["retry-after"]
        wait_for(lambda: not server.server_state.tasks, 10)
        assert httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=10).status_code == 200
    finally:
        stop()


def test_bodies_held_at_once_are_bounded_and_given_back(service):
    """max_buffered_bytes bounds what all waiting bodies hold together: a second body that would pass it
    is refused as it streams in (503 busy), and the bytes come back when the first caller leaves."""
    settings = dataclasses.replace(
        SETTINGS, max_body_bytes=1 << 20, max_buffered_bytes=(3 << 20) // 2, read_timeout_s=5.0
    )
    server, stop = start_server(service, settings)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as holder:
            # 1 MiB declared, 900 KiB sent: held while the rest is awaited
            holder.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1 << 20) + b"x" * 900_000)
            wait_for(lambda: server.server_state.tasks, 10)
            time.sleep(0.5)
            answer = httpx.post(f"http://127.0.0.1:{server.port}/", content=b"y" * 900_000, timeout=20)
            assert (answer.status_code, answer.json()["error"]) == (503, "busy"), answer.text
            assert "MOMENTSEG_MAX_BUFFERED_BYTES" in answer.json()["message"] and answer.headers["retry-after"]
        wait_for(lambda: not server.server_state.tasks, 10)
        answer = httpx.post(f"http://127.0.0.1:{server.port}/", content=b"y" * 900_000, timeout=20)
        assert (answer.status_code, answer.json()["error"]) == (400, "malformed_json")  # read whole, then parsed
    finally:
        stop()
