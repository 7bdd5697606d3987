"""Raw-socket helpers for testing a server made by ``momentseg.serve`` on loopback: what well-behaved
clients never send (slow or missing bodies, smuggling, oversized heads), read back byte for byte."""

import json
import select
import socket
import threading
import time

from momentseg.serve import bind, make_server


def serve_in_thread(app, settings):
    """``app`` on ``make_server`` on a free loopback port in a thread; returns the server (``.port``) and
    a function that stops it."""
    sock = bind("127.0.0.1", 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # small send buffers fill up fast when nobody reads
    server = make_server(app, sock, settings=settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30)
    server.port = sock.getsockname()[1]

    def stop():
        server.should_exit = True
        thread.join(timeout=15)

    return server, stop


def exchange(port, data: bytes, *, timeout: float = 20.0, then=None):
    """Send raw bytes, read until the server closes; returns (seconds, bytes received)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(data)
            if then is not None:
                then(connection)
            while chunk := connection.recv(65536):
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return time.monotonic() - started, received


def responses(raw: bytes) -> list[tuple[int, dict, object]]:
    """The responses in a raw byte stream (a smuggled request would add one)."""
    found = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        body, raw = rest[:length], rest[length:]
        found.append((status, headers, json.loads(body) if length else None))
    assert not raw, raw[:200]
    return found


def only_json_response(raw: bytes):
    ((status, headers, body),) = [r for r in responses(raw) if r[0] != 100]
    assert headers["content-type"] == "application/json" and set(body) == {"error", "message"}, (headers, body)
    return status, body


def trickle(data: bytes, interval: float):
    """Send ``data`` a byte at a time every ``interval`` s, until the server answers."""

    def send(connection):
        for byte in data:
            if select.select([connection], [], [], interval)[0]:
                return
            connection.sendall(bytes([byte]))

    return send


def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
