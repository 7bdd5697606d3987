import gc
import threading

import av
import cv2
import numpy as np
import pytest

from momentseg.errors import InvalidInputError
from momentseg.video import ArrayFrames, FrameFolder, FrameStore, VideoFile, as_store, open_video

from conftest import synthetic_frames


def write_h264(path, frames, fps=25, gop=250):
    """An H.264 MP4 with one keyframe every ``gop`` frames (long GOPs are what made backward seeks slow)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory):
    frames = synthetic_frames(40, 48, 64)
    path = write_h264(tmp_path_factory.mktemp("video") / "clip.mp4", frames)
    return path, list(VideoFile(path).iter_frames())


def store_threads(store):
    """The store's decoder and prefetch threads (other tests' stores may still have theirs)."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("momentseg-") and (t is store._decoder._thread or t in store._prefetcher._threads)
    ]


def test_frame_folder_reads_in_natural_order_as_rgb(tmp_path):
    frames = synthetic_frames(12)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    video = open_video(tmp_path, fps=5)
    assert isinstance(video.source, FrameFolder) and len(video) == 12 and video.fps == 5
    assert video.names[:3] == ["0", "1", "2"] and video.names[10] == "10"
    np.testing.assert_array_equal(video[11], frames[11])
    np.testing.assert_array_equal(video[-1], frames[11])
    video.close()


def test_video_file_reads_mjpeg_avi(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 48))
    for frame in synthetic_frames(10):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    with open_video(path) as video:
        assert len(video) == 10 and video.fps == pytest.approx(12.0) and video.size == (48, 64)
        sequential = [video[i] for i in range(10)]
        np.testing.assert_array_equal(video[4], sequential[4])
    # the disc moves right: its red centroid grows with the frame index
    centroids = [np.argwhere(f[..., 0] > 150)[:, 1].mean() for f in sequential]
    assert np.all(np.diff(centroids) > 0)


def test_h264_file_decoded_once_over_forward_and_backward_sweeps(h264_clip):
    path, reference = h264_clip
    frame_bytes = reference[0].nbytes
    # a cache of 6 frames forces the spill file: the backward sweep must read it, not the decoder
    store = open_video(path, cache_bytes=6 * frame_bytes)
    assert len(store) == 40 and store.fps == pytest.approx(25.0)
    forward = [store[i] for i in range(40)]
    backward = [store[i] for i in reversed(range(40))][::-1]
    assert store.decodes == 40 and store.source.decodes == 40  # every codec decode, seeks included
    assert store.spill_bytes > 0 and store.cache_bytes <= 6 * frame_bytes
    for ours, truth in zip(forward, reference):
        np.testing.assert_array_equal(ours, truth)
    for ours, truth in zip(backward, reference):  # read back from the JPEG spill
        assert np.abs(ours.astype(int) - truth).mean() < 2
    store.close()


def test_video_file_seeks_back_for_random_access(h264_clip):
    path, reference = h264_clip
    video = VideoFile(path)
    for index in (3, 4, 30, 5, 0, 39):
        np.testing.assert_array_equal(video[index], reference[index])
    assert video.decodes > 40  # one GOP: every backward step decodes from the first frame again
    with pytest.raises(IndexError):
        video[40]
    video.close()


def test_views_are_computed_once_and_prefetched_in_walking_direction():
    frames = synthetic_frames(30)
    calls = []

    def shrink(rgb):
        calls.append(1)
        return rgb[::2, ::2].copy()

    store = as_store(ArrayFrames(frames), prefetch=3)
    assert as_store(store) is store
    view = store.view("half", shrink)
    assert len(view) == 30 and store.view("half", lambda rgb: rgb)[3].shape == (24, 32, 3)  # first fn kept
    walk = [view[i] for i in range(30)] + [view[i] for i in reversed(range(30))]
    assert len(calls) == 30 and store.decodes == 30
    np.testing.assert_array_equal(walk[7], frames[7][::2, ::2])
    # walking backward from a fresh point: the items before it are computed by the prefetcher
    store.close()
    store = as_store(ArrayFrames(frames), prefetch=3)
    view = store.view("half", shrink)
    view[20], view[19]
    store._prefetcher.submit(lambda: None).result()  # the worker ran what was queued before
    assert all(("half", i) in store._cache for i in (18, 17, 16)) and ("half", 21) not in store._cache
    store.close()


def test_cache_stays_within_its_byte_budget():
    frames = [np.full((100, 100, 3), i, np.uint8) for i in range(50)]
    budget = 5 * frames[0].nbytes
    store = FrameStore(ArrayFrames(frames), cache_bytes=budget, prefetch=0)
    view = store.view("double", lambda rgb: np.repeat(rgb, 2, axis=0))
    peak = 0
    for i in range(50):
        assert view[i][0, 0, 0] == i and store[i][0, 0, 0] == i
        peak = max(peak, store.cache_bytes)
    assert peak <= budget
    # evicted frames of a random-access source are read again, not spilled
    assert store[0][0, 0, 0] == 0 and store.decodes == 51 and store.spill_bytes == 0
    store.close()


def test_threads_stop_on_close_and_when_the_store_is_dropped(h264_clip):
    path, _ = h264_clip
    store = open_video(path, cache_bytes=1 << 30)
    view = store.view("half", lambda rgb: rgb[::2, ::2].copy())
    view[1], view[2]  # a walk: the prefetcher starts (the decoder may have finished already)
    threads = store_threads(store)
    assert any(thread.name.startswith("momentseg-prefetch") for thread in threads)
    store.close()
    assert not store.threads_alive and not any(thread.is_alive() for thread in threads)
    with pytest.raises(RuntimeError, match="closed"):
        store[39]
    store = open_video(path, cache_bytes=1 << 30)
    view = store.view("half", lambda rgb: rgb[::2, ::2].copy())
    view[0], view[1]
    threads = store_threads(store)
    assert threads
    del store, view
    gc.collect()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)


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


def test_a_file_shorter_than_its_header_fails_on_the_missing_frame(h264_clip):
    path, _ = h264_clip
    store = open_video(path)
    store._length = 45  # as if the header promised more frames than the stream holds
    assert store[39].shape == (48, 64, 3)
    with pytest.raises(InvalidInputError, match="frame 42 cannot be decoded.*ends after 40 frames"):
        store[42]
    store.close()


def test_array_frames_validate_type():
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        ArrayFrames([np.zeros((4, 4), np.uint8)])
    with pytest.raises(InvalidInputError, match="no frames"):
        ArrayFrames([])
