"""The queue's throughput and its own overhead: runs per minute with 1 and 2 ``momentseg webhooks worker``
processes on one Redis queue (tiny model, CPU), and per run the time from enqueue to start and from the
end of the write to the reply, in milliseconds.

Everything is real but the CVAT server, which is the stand-in CVAT of the tests (tests/cvat_stub.py,
the same REST API on 127.0.0.1): a Debian ``redis-server`` on a free port, worker processes loading a
tiny checkpoint, runs queued as ``momentseg cvat annotate --project`` queues them (throughput) and as a
comment queues them (overhead: the reply is a comment posted on the issue). Workers are started and
idle before anything is queued, so model loading is not counted.

Run: .venv/bin/python -m bench.queue [--runs 12] [--frames 8] [--workers 1 2]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the stand-in CVAT server

import redis  # noqa: E402
from cvat_stub import TOKEN, CvatStub  # noqa: E402

from momentseg.webhooks.batch import BatchRow, queue_batch  # noqa: E402
from momentseg.webhooks.queue import FINAL, WebhookQueue, open_huey  # noqa: E402

PROJECT = 2
PIXELS = 4 * 28 * 28


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    import socket

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install -y redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return server, url
        except redis.ConnectionError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def frames(count: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def start_worker(
    checkpoint: Path, env: dict[str, str], log: IO[bytes], keyframes: int, pixels: int, fps: float | None = None
) -> subprocess.Popen:
    """A ``momentseg webhooks worker`` process on the CPU writing to ``log``, ``pixels`` the budget of both the
    TSG and the image pass (the tests start their workers with it too)."""
    fps_flags = [] if fps is None else ["--fps", str(fps)]
    sizes = ["--keyframes", str(keyframes), "--tsg-pixels", str(pixels), "--image-pixels", str(pixels)]
    command = [sys.executable, "-m", "momentseg.cli", "webhooks", "worker", "--checkpoint", str(checkpoint)]
    command += ["--device", "cpu", *fps_flags, *sizes, "--force-answer"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_workers(count: int, cvat: CvatStub, redis_url: str, checkpoint: Path, folder: Path) -> list:
    env = dict(
        os.environ,
        CVAT_HOST=cvat.url,
        CVAT_ACCESS_TOKEN=TOKEN,
        MOMENTSEG_WEBHOOK_SECRET="bench",
        MOMENTSEG_WEBHOOK_PROJECTS=str(PROJECT),
        MOMENTSEG_WEBHOOK_CVAT_HOSTS=cvat.host,
        MOMENTSEG_REDIS_URL=redis_url,
        MOMENTSEG_WEBHOOK_LABEL="object",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
    )
    workers = []
    for _ in range(count):
        log = folder / f"worker{len(list(folder.glob('worker*.log')))}.log"
        with open(log, "wb") as out:
            worker = start_worker(checkpoint, env, out, keyframes=3, pixels=PIXELS)
        workers.append((worker, log))
    deadline = time.monotonic() + 600
    while not all("unfinished runs re-queued" in log.read_text() for _, log in workers):
        if time.monotonic() > deadline or any(w.poll() is not None for w, _ in workers):
            sys.exit("a worker did not start:\n" + "\n".join(log.read_text()[-2000:] for _, log in workers))
        time.sleep(0.5)
    return workers


def stop(workers) -> None:
    for worker, _ in workers:
        worker.send_signal(signal.SIGTERM)
    for worker, _ in workers:
        worker.wait(120)


def wait_done(queue: WebhookQueue, keys: list[str]) -> list[dict]:
    while True:
        records = [queue.get(key) for key in keys]
        if all(r["state"] in FINAL for r in records):
            bad = [r for r in records if r["state"] != "done"]
            if bad:
                sys.exit(f"run {bad[0]['key']} ended {bad[0]['state']}: {bad[0].get('error')}")
            return records
        time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="runs per throughput measurement")
    parser.add_argument("--frames", type=int, default=8, help="frames per task")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--overhead-runs", type=int, default=5, help="runs, one at a time, for the overhead")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    subprocess.run(
        [sys.executable, "-m", "momentseg.cli", "tiny-checkpoint", str(folder / "tiny")],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    server, redis_url = start_redis(folder)
    cvat = CvatStub()
    cvat.host = urlparse(cvat.url).netloc
    cvat.add_project(PROJECT)
    tasks = list(range(100, 100 + args.runs))
    for task in tasks:
        cvat.add_task(task, frames(args.frames), ["object", "moment"], project_id=PROJECT)
    queue = WebhookQueue(open_huey(redis_url=redis_url), None, max_waiting=10 * args.runs)
    figures = {"frames_per_task": args.frames, "cpu_threads_per_worker": 1, "os_cpus": os.cpu_count()}
    try:
        for count in args.workers:
            workers = start_workers(count, cvat, redis_url, folder / "tiny", folder)
            try:
                started = time.perf_counter()
                keys, _ = queue_batch(
                    queue,
                    f"w{count}",
                    [BatchRow(t, "object", "the bright square") for t in tasks],
                    host=cvat.host,
                    user="bench",
                )
                wait_done(queue, keys)
                seconds = time.perf_counter() - started
                figures[f"runs_per_minute_{count}_workers"] = round(args.runs / seconds * 60, 2)
                print(
                    f"{count} worker(s): {args.runs} runs in {seconds:.1f} s = {args.runs / seconds * 60:.1f} runs/min",
                    flush=True,
                )
                if count == min(args.workers):
                    figures.update(overhead(queue, cvat, tasks, args.overhead_runs))
            finally:
                stop(workers)
    finally:
        cvat.close()
        server.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(figures))


def overhead(queue: WebhookQueue, cvat: CvatStub, tasks: list[int], runs: int) -> dict:
    """Runs queued one at a time on idle workers, as comments: enqueue → start and written → replied."""
    start_ms, reply_ms = [], []
    job = cvat.tasks[tasks[0]].jobs[0].id
    for _ in range(runs):
        issue, comment = cvat.add_issue(job, 0, [1.0, 1.0, 5.0, 5.0], "/segment the bright square")
        record, _ = queue.receive(
            f"{cvat.host}/comments/{comment}",
            dict(
                command="segment",
                issue_id=issue,
                author="bench",
                host=cvat.host,
                prompt="the bright square",
                label="object",
                object_id=comment,
            ),
        )
        queue.start(record)
        (done,) = wait_done(queue, [record["key"]])
        start_ms.append((done["running_at"] - done["queued_at"]) * 1000)
        reply_ms.append((done["done_at"] - done["written_at"]) * 1000)
    print(
        f"overhead per run (median of {runs}): enqueue -> start {statistics.median(start_ms):.1f} ms, "
        f"written -> replied {statistics.median(reply_ms):.1f} ms",
        flush=True,
    )
    return {
        "enqueue_to_start_ms": round(statistics.median(start_ms), 1),
        "written_to_reply_ms": round(statistics.median(reply_ms), 1),
    }


if __name__ == "__main__":
    main()
