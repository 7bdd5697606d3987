from momentseg.result import Moment, SegmentResult


def result_over(num_frames, moment, fps=10.0):
    return SegmentResult(
        prompt="the red ball",
        num_frames=num_frames,
        width=8,
        height=6,
        fps=fps,
        moment=moment,
        moment_reason=None,
        center_frame=1,
        keyframes=[0, num_frames - 1],
        similarity=[0.1] * num_frames,
        tracks=[],
        model={},
        options={},
        timings={},
    )


def test_task_frames_carry_the_moment_in_the_videos_seconds():
    # the run saw task frames 20..25 (a job of a task): its moment 1..3 is frames 21..23 of the video
    task = result_over(6, Moment(1, 3, 0.1, 0.4, 0.8)).to_task_frames(list(range(20, 26)))
    assert (task["moment"]["start_frame"], task["moment"]["end_frame"]) == (21, 23)
    assert (task["moment"]["start_sec"], task["moment"]["end_sec"]) == (2.1, 2.4)
    assert task["moment"]["score"] == 0.8
    assert task["keyframes"] == [20, 25] and task["center_frame"] == 21


def test_task_frames_with_a_step_count_seconds_from_the_frames_themselves():
    task = result_over(3, Moment(0, 1, 0.0, 0.2, 0.5), fps=5.0).to_task_frames([10, 20, 30])
    assert (task["moment"]["start_sec"], task["moment"]["end_sec"]) == (2.0, 4.2)


def test_a_result_without_a_moment_stays_without_one():
    assert result_over(3, None).to_task_frames([4, 5, 6])["moment"] is None
