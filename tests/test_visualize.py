import av
import numpy as np
import pytest

from momentseg.masks import to_cvat_rle
from momentseg.result import Moment, SegmentResult, Shape, Track
from momentseg.video import ArrayFrames
from momentseg.visualize import similarity_figure, write_overlay_video, write_similarity_plot

from conftest import synthetic_frames

HEIGHT, WIDTH, FRAMES = 95, 127, 12  # odd on purpose: yuv420p needs even dimensions
BOX = (slice(35, 75), slice(85, 120))  # a mask over plain background, away from the red disc


def make_result(similarity=True):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[BOX] = True
    shapes = [Shape(i, "mask", to_cvat_rle(mask), i in (2, 9), False, 0.9) for i in range(FRAMES)]
    curve = list(np.round(np.sin(np.linspace(0, np.pi, FRAMES)), 4)) if similarity else None
    return SegmentResult(
        prompt="the red ball",
        num_frames=FRAMES,
        width=WIDTH,
        height=HEIGHT,
        fps=4.0,
        moment=Moment(3, 8, 0.75, 2.25, 0.8) if similarity else None,
        moment_reason=None,
        center_frame=6,
        keyframes=[2, 6, 9],
        similarity=curve,
        tracks=[Track("object", shapes)],
        model={},
        options={"threshold": 0.4},
        timings={},
    )


def test_overlay_is_browser_playable_h264_with_every_frame_and_the_mask(tmp_path):
    frames = ArrayFrames(synthetic_frames(FRAMES, HEIGHT, WIDTH))
    path = write_overlay_video(frames, make_result(), tmp_path / "overlay.mp4")
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable before it is fully loaded
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (126, 94)
        assert float(stream.average_rate) == pytest.approx(4.0)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == FRAMES
    inside = decoded[5][40:70, 90:115].reshape(-1, 3).mean(0)
    outside = decoded[5][40:70, 60:80].reshape(-1, 3).mean(0)
    assert inside[0] > 120 and inside[0] - inside[2] > 60  # tinted orange
    assert abs(outside[0] - 60) < 20 and abs(outside[0] - outside[2]) < 20  # grey background untouched


def test_similarity_plot_axes(tmp_path):
    result = make_result()
    figure = similarity_figure(result)
    axes = figure.axes[0]
    assert axes.get_xlabel() == "frame" and axes.get_ylabel() == "similarity"
    seconds = [child for child in axes.child_axes if child.get_xlabel() == "seconds"]
    assert len(seconds) == 1
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["moment 0.75–2.25 s", "similarity s", "θ = 0.4", "keyframes", "c* = 6"]
    curve, threshold, keyframes, center = axes.get_lines()
    np.testing.assert_allclose(curve.get_ydata(), result.similarity)
    assert list(threshold.get_ydata()) == [0.4, 0.4]
    assert list(keyframes.get_xdata()) == [2, 6, 9] and list(center.get_xdata()) == [6, 6]
    moment = axes.patches[0].get_extents().transformed(axes.transData.inverted())
    assert moment.x0 == pytest.approx(3) and moment.x1 == pytest.approx(8)
    path = write_similarity_plot(result, tmp_path / "similarity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_similarity_plot_without_find_head(tmp_path):
    figure = similarity_figure(make_result(similarity=False))
    axes = figure.axes[0]
    assert "no [FIND] head" in axes.get_title()
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["keyframes", "c* = 6"]
    assert write_similarity_plot(make_result(similarity=False), tmp_path / "plot.png").stat().st_size > 0
