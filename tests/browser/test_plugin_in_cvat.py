"""The CVAT plugin in a real CVAT, as an annotator would use it (see conftest.py for what these tests need).

One annotate run on the middle job of a 3-job video task is made once (the `annotated` fixture records what
the browser showed along the way); the tests check one promise each.
"""

import os
import re
import time

import pytest

from .conftest import HOST

RUN_TIMEOUT_S = 900
PROMPT = "the red square moving to the right"


def login(browser, user_var, password_var):
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    page.goto(f"{HOST}/auth/login")
    page.fill("#credential", os.environ[user_var])
    page.fill("#password", os.environ[password_var])
    page.click(".cvat-credentials-action-button")
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
    return page


def open_job(page, task, job):
    page.goto(f"{HOST}/tasks/{task}/jobs/{job}")
    page.wait_for_selector(".cvat-canvas-container", timeout=120_000)
    page.wait_for_selector("#cvat_canvas_background", state="attached", timeout=120_000)
    page.wait_for_timeout(1500)


def momentseg_menu(page, item_class, shot=None):
    page.click(".cvat-annotation-header-menu-button")
    page.click(".cvat-annotation-menu .momentseg-menu")
    page.locator(f".{item_class}").wait_for()
    if shot:
        shot()
    page.click(f".{item_class}")


def current_frame(page):
    return int(page.input_value(".cvat-player-frame-selector input"))


def api(page, method, path, body=None):
    """A call with the page's own CVAT session (as the person), CSRF token included."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    headers = {"X-CSRFToken": cookies.get("csrftoken", ""), "X-Requested-With": "momentseg"}
    response = page.request.fetch(
        f"{HOST}{path}", method=method, headers=headers, data=body if body is not None else None, timeout=60_000
    )
    return response.status, (response.json() if response.body() else None)


def follow_run(page, dialog):
    """The titles the dialog showed until the run finished."""
    seen = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    title = page.locator(f"{dialog} .momentseg-run-title")
    title.wait_for(timeout=60_000)
    while time.monotonic() < deadline:
        text = title.inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        if text in ("Done", "Failed", "Cancelled"):
            return seen
        page.wait_for_timeout(300)
    pytest.fail(f"the run did not finish in {RUN_TIMEOUT_S} s; the dialog showed {seen}")


def job_annotations(page, job):
    status, body = api(page, "GET", f"/api/jobs/{job}/annotations")
    assert status == 200, body
    return body


def canvas_shapes(page):
    return page.locator("#cvat_canvas_content .cvat_canvas_shape").count()


@pytest.fixture(scope="module")
def annotated(browser, video_task, shots):
    """As the annotator: open the middle job, draw a rectangle and leave it unsaved, run Annotate by text."""
    job = video_task["jobs"][1]
    page = login(browser, "CVAT_TEST_USER", "CVAT_TEST_PASSWORD")
    open_job(page, video_task["id"], job["id"])
    page.evaluate("window.__momentsegSamePage = true")

    # the person's unsaved edit: a rectangle drawn by hand
    page.click(".cvat-draw-rectangle-control")
    page.click(".cvat-draw-rectangle-shape-button")
    box = page.locator(".cvat-canvas-container").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.30)
    page.mouse.click(box["x"] + box["width"] * 0.40, box["y"] + box["height"] * 0.45)
    page.wait_for_selector(".cvat-objects-sidebar-state-item")
    drawn = page.locator(".cvat-objects-sidebar-state-item").count()

    momentseg_menu(page, "momentseg-menu-annotate", lambda: shots(page, "menu"))
    page.wait_for_selector(".momentseg-annotate-dialog")
    page.fill(".momentseg-prompt", PROMPT)
    shots(page, "annotate-dialog")
    page.click(".momentseg-annotate-submit")
    page.wait_for_selector(".momentseg-annotate-dialog .momentseg-run-progress")
    shots(page, "annotate-progress")
    titles = follow_run(page, ".momentseg-annotate-dialog")
    shots(page, "annotate-done")
    details = page.locator(".momentseg-annotate-dialog .momentseg-run-detail").all_inner_texts()

    # the run is done and the person has an unsaved rectangle: they are asked before anything loads
    confirm = page.locator(".momentseg-unsaved-confirm")
    confirm.wait_for(timeout=30_000)
    asked = confirm.inner_text()
    shots(page, "unsaved-confirm")
    confirm.locator("button.ant-btn-primary").click()
    page.wait_for_selector(".ant-message :text('MomentSeg: object')", timeout=60_000)
    page.click(".momentseg-annotate-dialog .ant-modal-footer button:has-text('Close')")
    page.wait_for_timeout(1000)
    shots(page, "annotations-loaded")

    status, body = api(page, "GET", f"/momentseg/api/runs?task={video_task['id']}")
    assert status == 200, body
    run = body["runs"][0]
    yield {
        "page": page,
        "job": job,
        "task": video_task,
        "titles": titles,
        "details": details,
        "asked": asked,
        "drawn": drawn,
        "run": run,
        "shapes_on_canvas": canvas_shapes(page),
        "same_page": page.evaluate("window.__momentsegSamePage === true"),
        "annotations": job_annotations(page, job["id"]),
    }
    page.context.close()


def test_the_dialog_shows_progress_then_the_result(annotated):
    titles, run = annotated["titles"], annotated["run"]
    assert run["state"] == "done", run
    assert titles[-1] == "Done"
    progress = [t for t in titles if t.startswith("Queued") or t.endswith("…")]
    assert progress, f"no queued/stage step was shown before Done: {titles}"
    result = run["result"]
    assert f"Object {result['object']}: masks on {result['frames_written']} frame" in annotated["details"][0]
    if result["moment"]:
        assert f"frames {result['moment']['start']}–{result['moment']['end']}" in annotated["details"][1]


def test_masks_appear_without_reloading_and_the_unsaved_edit_is_kept(annotated):
    assert annotated["same_page"], "the page was reloaded"
    assert "unsaved changes" in annotated["asked"]
    shapes = annotated["annotations"]["shapes"]
    manual = [s for s in shapes if s["type"] == "rectangle" and s["source"] == "manual"]
    assert len(manual) == 1, "the person's rectangle was not kept"
    masks = [s for s in shapes if s["type"] == "mask" and s["group"] == annotated["run"]["result"]["object"]]
    assert masks, "no MomentSeg masks in the job"
    assert annotated["shapes_on_canvas"] >= 2, "the masks are not drawn on the canvas"


def test_the_moment_band_sits_on_the_moments_frames(annotated):
    page, run = annotated["page"], annotated["run"]
    moment = run["result"]["moment"]
    assert moment, "the run found no moment"
    # open the job that holds the moment's first frame
    (job,) = [j for j in annotated["task"]["jobs"] if j["start"] <= moment["start"] <= j["stop"]]
    if job["id"] != annotated["job"]["id"]:
        open_job(page, annotated["task"]["id"], job["id"])
    band = page.locator(f".momentseg-moment-band[data-run='{run['id']}']")
    band.wait_for(timeout=30_000)
    assert int(band.get_attribute("data-start")) == moment["start"]
    assert int(band.get_attribute("data-end")) == min(moment["end"], job["stop"])
    center = run["result"]["center"]
    if center is not None and job["start"] <= center <= job["stop"]:
        assert page.locator(f".momentseg-mark-center[data-frame='{center}']").count() == 1
    box = band.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(1500)
    frame = current_frame(page)
    assert moment["start"] <= frame <= min(moment["end"], job["stop"]), frame


def test_the_runs_view_lists_the_tasks_runs(annotated, shots):
    page, run = annotated["page"], annotated["run"]
    momentseg_menu(page, "momentseg-menu-runs")
    rows = page.locator(".momentseg-runs-view .ant-table-row")
    rows.first.wait_for(timeout=30_000)
    shots(page, "runs-view")
    first = rows.first.inner_text()
    assert run["prompt"] in first and "Done" in first and os.environ["CVAT_TEST_USER"] in first, first
    page.click(".momentseg-runs-view .ant-modal-close")


def test_refine_keeps_the_persons_edited_frame(annotated, shots):
    page, run = annotated["page"], annotated["run"]
    job, task = annotated["job"], annotated["task"]
    object_id = run["result"]["object"]
    # the person corrects the object on the job's first frame: its mask becomes a 10x10 block, which is what
    # CVAT's UI saves when someone redraws an automatic mask (the shape turns "semi-auto")
    frame = job["start"]
    (shape,) = [
        s
        for s in job_annotations(page, job["id"])["shapes"]
        if s["frame"] == frame and s["group"] == object_id and s["type"] == "mask"
    ]
    corrected = dict(shape, points=[0, 100, 100, 100, 109, 109], source="semi-auto")
    status, body = api(
        page,
        "PATCH",
        f"/api/jobs/{job['id']}/annotations?action=update",
        {"version": 0, "tags": [], "shapes": [corrected], "tracks": []},
    )
    assert status == 200, body
    open_job(page, task["id"], job["id"])
    # select the object: the mask's item in the objects list
    page.locator(".cvat-objects-sidebar-state-item", has_text="MASK").first.hover()
    page.wait_for_timeout(500)

    momentseg_menu(page, "momentseg-menu-refine")
    page.wait_for_selector(".momentseg-refine-dialog")
    shots(page, "refine-dialog")
    page.click(".momentseg-refine-submit")
    titles = follow_run(page, ".momentseg-refine-dialog")
    assert titles[-1] == "Done", titles
    page.click(".momentseg-refine-dialog .ant-modal-footer button:has-text('Close')")
    status, body = api(page, "GET", f"/momentseg/api/runs?task={task['id']}")
    refine = body["runs"][0]
    assert refine["kind"] == "refine" and refine["state"] == "done", refine
    after = [
        s
        for s in job_annotations(page, job["id"])["shapes"]
        if s["frame"] == frame and s["group"] == object_id and s["type"] == "mask"
    ]
    assert [(s["points"], s["source"]) for s in after] == [(corrected["points"], "semi-auto")], (
        "refine changed the person's corrected frame"
    )
    others = [
        s
        for s in job_annotations(page, job["id"])["shapes"]
        if s["frame"] != frame and s["group"] == object_id and s["type"] == "mask"
    ]
    assert others, "refine left the object without its other frames"


def test_a_user_who_may_not_edit_is_refused_plainly(browser, admin, users, video_task, shots):
    from cvat_sdk import models

    # the viewer may open the last job (as its assignee) but may not edit the task
    job = video_task["jobs"][2]
    admin.api_client.jobs_api.partial_update(
        job["id"], patched_job_write_request=models.PatchedJobWriteRequest(assignee=users["CVAT_TEST_VIEWER_USER"])
    )
    page = login(browser, "CVAT_TEST_VIEWER_USER", "CVAT_TEST_VIEWER_PASSWORD")
    try:
        open_job(page, video_task["id"], job["id"])
        momentseg_menu(page, "momentseg-menu-annotate")
        page.wait_for_selector(".momentseg-annotate-dialog")
        page.fill(".momentseg-prompt", PROMPT)
        page.click(".momentseg-range input[value='task']")
        page.click(".momentseg-annotate-submit")
        error = page.locator(".momentseg-annotate-dialog .momentseg-error")
        error.wait_for(timeout=60_000)
        shots(page, "refused")
        assert re.search(r"may not|may edit only", error.inner_text()), error.inner_text()
        assert page.locator(".momentseg-annotate-dialog .momentseg-run-progress").count() == 0
        status, body = api(page, "GET", f"/momentseg/api/runs?task={video_task['id']}")
        assert all(r["user"] != os.environ["CVAT_TEST_VIEWER_USER"] for r in (body or {}).get("runs", []))
    finally:
        page.context.close()
        admin.api_client.jobs_api.partial_update(
            job["id"], patched_job_write_request=models.PatchedJobWriteRequest(assignee=users["CVAT_TEST_USER"])
        )
