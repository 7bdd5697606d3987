"""ActivityNet Captions (2D-TAN layout): ``{split}.json`` = {vid: {duration, timestamps, sentences}}.

Videos: ``videos/<vid>.mp4`` (``v_`` prefix optional), or 1-FPS frames in ``videos_1FPS/<vid>/``.
"""

from __future__ import annotations

from pathlib import Path

from momentseg.data.entries import DataError, GroundingEntry, read_json
from momentseg.data.tsg_videos import locate_video, video_opener

DEFAULT_SPLIT = "train"
KIND = "activitynet"
VIDEO_DIRS = ("videos", "v1-3/train_val", "v1-2/train", "v1-2/val")


def read(root: Path, split: str) -> list[GroundingEntry]:
    path = root / f"{split}.json"
    data = read_json(path, KIND)
    entries = []
    for video_id, item in data.items():
        where = f"{path.name}[{video_id}]"
        try:
            duration = float(item["duration"])
            pairs = list(zip(item["timestamps"], item["sentences"], strict=True))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{where}: needs 'duration' and equally long 'timestamps'/'sentences' ({error})") from None
        try:
            video = locate_video(root, VIDEO_DIRS, video_id, where)
        except DataError:
            if not video_id.startswith("v_"):
                raise
            video = locate_video(root, VIDEO_DIRS, video_id[2:], where)
        for index, ((start, end), sentence) in enumerate(pairs):
            start, end = max(float(start), 0.0), min(float(end), duration)  # 2D-TAN clips to the video
            if start >= end:
                continue  # 2D-TAN drops these too: they carry no moment
            sentence = sentence.strip().rstrip(".").strip()
            entries.append(
                GroundingEntry(KIND, video_id, sentence, start, end, duration, video_opener(video, f"{where}[{index}]"))
            )
    return entries
