"""A real ``momentseg serve`` in a subprocess (the tiny checkpoint, task mode on the stand-in CVAT), with its
log read back: what the CLI's and the webhook worker's ``--function`` talk to in the tests."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK_TOKEN = "serve-task-token"


def serve_command(checkpoint) -> list[str]:
    """``momentseg serve`` on the CPU on a free port: the first line it prints names its address."""
    return [
        sys.executable,
        "-m",
        "momentseg.cli",
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--port",
        "0",
    ]


class ServeProcess:
    """``momentseg serve --port 0`` reading tasks from ``cvat_url``; ``url`` once it listens, ``log`` its lines."""

    def __init__(self, checkpoint, cvat_url: str, cvat_token: str, **env: str):
        environment = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            CVAT_HOST=cvat_url,
            CVAT_ACCESS_TOKEN=cvat_token,
            MOMENTSEG_TASK_TOKEN=TASK_TOKEN,
            **env,
        )
        self.process = subprocess.Popen(
            serve_command(checkpoint),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        self.log: list[str] = []
        self.url = None
        started = threading.Event()

        def read() -> None:
            for line in self.process.stdout:
                self.log.append(line.rstrip("\n"))
                if line.startswith("serving MomentSeg on "):
                    self.url = line.split()[3]
                    started.set()
            started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(180) or self.url is None:
            self.close()
            raise RuntimeError("momentseg serve did not start:\n" + "\n".join(self.log[-20:]))

    def options_of_runs(self) -> list[dict]:
        """The options of each run, from the service's log line "running N frames with options {...}"."""
        marker = " with options "
        return [json.loads(line.split(marker, 1)[1]) for line in self.log if marker in line]

    def wait_for_runs(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.options_of_runs()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.options_of_runs()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
