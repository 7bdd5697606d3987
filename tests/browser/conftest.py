"""A real CVAT 2.73 with cvat-plugin/ built into its UI, driven by Playwright through the system's Chromium.

Runs when CVAT_TEST_HOST names that CVAT (its `/momentseg/` route leading to a running MomentSeg companion);
otherwise every test here is skipped, saying so. Settings (environment):

- CVAT_TEST_HOST: e.g. http://localhost:8080
- CVAT_TEST_ADMIN_USER / CVAT_TEST_ADMIN_PASSWORD: makes the test task and its job assignments
- CVAT_TEST_USER / CVAT_TEST_PASSWORD: the annotator (the task's assignee)
- CVAT_TEST_VIEWER_USER / CVAT_TEST_VIEWER_PASSWORD: a user with no edit rights on the task
- CVAT_TEST_PROJECT: the project the task goes in (its labels: `object`, and the tag `moment`); without it the
  task gets those labels itself
- CVAT_TEST_CHROMIUM: the browser (default /usr/bin/chromium; never downloaded)
- CVAT_TEST_SHOTS: a folder for screenshots of each step (optional)
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

HOST = os.environ.get("CVAT_TEST_HOST", "").rstrip("/")
FRAMES, SEGMENT = 60, 20  # a 3-job video task
SETTINGS = (
    "CVAT_TEST_ADMIN_USER",
    "CVAT_TEST_ADMIN_PASSWORD",
    "CVAT_TEST_USER",
    "CVAT_TEST_PASSWORD",
    "CVAT_TEST_VIEWER_USER",
    "CVAT_TEST_VIEWER_PASSWORD",
)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    mine = [item for item in items if Path(str(item.fspath)).is_relative_to(here)]
    if not mine:
        return
    reason = None
    if not HOST:
        reason = (
            "CVAT_TEST_HOST is not set: these tests need a real CVAT 2.73 whose UI is built with "
            "cvat-plugin/ (CLIENT_PLUGINS) and whose /momentseg/ route reaches a MomentSeg companion"
        )
    elif missing := [name for name in SETTINGS if not os.environ.get(name)]:
        reason = f"CVAT_TEST_HOST is set but {', '.join(missing)} is not (see tests/browser/conftest.py)"
    elif not Path(os.environ.get("CVAT_TEST_CHROMIUM", "/usr/bin/chromium")).exists():
        reason = "no Chromium at CVAT_TEST_CHROMIUM (default /usr/bin/chromium; apt-get install chromium)"
    if reason:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


def write_video(path: Path, frames=FRAMES, width=320, height=180, fps=10):
    """A red square crossing the frame left to right, and a green disc falling in frames 20-49."""
    import av

    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 50, np.uint8)
            x = 10 + i * (width - 60) // frames
            image[70:110, x : x + 40] = (220, 30, 30)
            if 20 <= i < 50:
                cy = 20 + (i - 20) * (height - 40) // 30
                image[(yy - cy) ** 2 + (xx - width // 2) ** 2 < 15**2] = (30, 200, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def cvat_client(user_var, password_var):
    from cvat_sdk import Client, Config

    client = Client(HOST, config=Config(status_check_period=0.5), check_server_version=False)
    client.login((os.environ[user_var], os.environ[password_var]))
    return client


@pytest.fixture(scope="session")
def admin():
    with cvat_client("CVAT_TEST_ADMIN_USER", "CVAT_TEST_ADMIN_PASSWORD") as client:
        yield client


@pytest.fixture(scope="session")
def users(admin):
    found = {}
    for var in ("CVAT_TEST_USER", "CVAT_TEST_VIEWER_USER"):
        name = os.environ[var]
        (user,) = [u for u in admin.api_client.users_api.list(search=name)[0].results if u.username == name]
        found[var] = user.id
    return found


@pytest.fixture(scope="session")
def video_task(admin, users):
    """A fresh 3-job video task assigned to the annotator, deleted afterwards."""
    from cvat_sdk import models

    folder = Path(tempfile.mkdtemp(prefix="momentseg-browser-"))
    video = folder / "crossing.mp4"
    write_video(video)
    # overlap 0: a video task's default overlap of 5 frames would make 4 jobs
    spec = {
        "name": "momentseg browser test",
        "segment_size": SEGMENT,
        "overlap": 0,
        "assignee_id": users["CVAT_TEST_USER"],
    }
    if os.environ.get("CVAT_TEST_PROJECT"):
        spec["project_id"] = int(os.environ["CVAT_TEST_PROJECT"])
    else:
        spec["labels"] = [{"name": "object", "type": "any"}, {"name": "moment", "type": "tag"}]
    task = admin.tasks.create_from_data(
        models.TaskWriteRequest(**spec), [str(video)], data_params={"image_quality": 80}
    )
    try:
        jobs = sorted(task.get_jobs(), key=lambda job: job.start_frame)
        assert len(jobs) == 3, f"expected a 3-job task, got {len(jobs)} jobs"
        yield {"id": task.id, "jobs": [{"id": j.id, "start": j.start_frame, "stop": j.stop_frame} for j in jobs]}
    finally:
        task.remove()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CVAT_TEST_CHROMIUM", "/usr/bin/chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def shots():
    """shots(page, name): a screenshot of the step when CVAT_TEST_SHOTS names a folder."""
    folder = os.environ.get("CVAT_TEST_SHOTS")

    def take(page, name):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(700)  # let antd's open/close animations end
            page.screenshot(path=str(Path(folder) / f"{name}.png"))

    return take
