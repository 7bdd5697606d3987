import cv2
import numpy as np
import pytest

from momentseg.errors import InvalidInputError
from momentseg.video import ArrayFrames, FrameFolder, open_video

from conftest import synthetic_frames


def test_frame_folder_reads_in_natural_order_as_rgb(tmp_path):
    frames = synthetic_frames(12)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    video = open_video(tmp_path, fps=5)
    assert isinstance(video, FrameFolder) and len(video) == 12 and video.fps == 5
    assert video.names[:3] == ["0", "1", "2"] and video.names[10] == "10"
    np.testing.assert_array_equal(video[11], frames[11])


def test_video_file_decodes_sequentially_and_by_seek(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 48))
    for frame in synthetic_frames(10):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    video = open_video(path)
    assert len(video) == 10 and video.fps == pytest.approx(12.0)
    sequential = [video[i] for i in range(10)]
    assert sequential[0].shape == (48, 64, 3)
    np.testing.assert_array_equal(video[4], sequential[4])
    # the disc moves right: its red centroid grows with the frame index
    centroids = [np.argwhere(f[..., 0] > 150)[:, 1].mean() for f in sequential]
    assert np.all(np.diff(centroids) > 0)


def test_corrupt_and_missing_input_is_named(tmp_path):
    (tmp_path / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InvalidInputError, match="frame 0 cannot be decoded"):
        open_video(tmp_path)[0]
    with pytest.raises(InvalidInputError, match="does not exist"):
        open_video(tmp_path / "missing.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="holds no images"):
        open_video(empty)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"garbage")
    with pytest.raises(InvalidInputError, match="cannot be opened|no frames"):
        open_video(broken)


def test_array_frames_validate_type():
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        ArrayFrames([np.zeros((4, 4), np.uint8)])
    with pytest.raises(InvalidInputError, match="no frames"):
        ArrayFrames([])
