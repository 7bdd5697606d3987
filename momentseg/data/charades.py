"""Charades-STA (2D-TAN layout): ``charades_sta_{split}.txt`` lines ``VID START END##sentence.``.

Videos: ``Charades_v1_480/<vid>.mp4`` (or ``videos/``), or frames at 1 FPS in ``videos_1FPS/<vid>/``.
Durations come from ``Charades_v1_{split}.csv`` (column ``length``) when present, else from the video.
"""

from __future__ import annotations

import csv
from pathlib import Path

from momentseg.data.entries import DataError, GroundingEntry
from momentseg.data.tsg_videos import locate_video, video_opener

DEFAULT_SPLIT = "train"
KIND = "charades-sta"
VIDEO_DIRS = ("Charades_v1_480", "videos")


def _durations(root: Path, split: str) -> dict[str, float]:
    path = root / f"Charades_v1_{split}.csv"
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        try:
            return {row["id"]: float(row["length"]) for row in csv.DictReader(handle)}
        except (KeyError, ValueError) as error:
            raise DataError(f"'{path}' needs numeric 'id' and 'length' columns ({error})") from None


def read(root: Path, split: str) -> list[GroundingEntry]:
    path = root / f"charades_sta_{split}.txt"
    if not path.is_file():
        raise DataError(f"{KIND}: annotation file '{path}' does not exist")
    durations = _durations(root, split)
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        annotation, sep, sentence = line.partition("##")
        fields = annotation.split()
        try:
            video_id, start, end = fields[0], float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise DataError(f"{where}: expected 'VIDEO START END##sentence', got '{line[:80]}'") from None
        sentence = sentence.strip().rstrip(".").strip()
        if not sep or not sentence:
            raise DataError(f"{where}: the sentence after '##' is missing")
        video = locate_video(root, VIDEO_DIRS, video_id, where)
        duration = durations.get(video_id, 0.0)
        if duration:
            end = min(end, duration)  # 2D-TAN clips the ground truth to the video
        if start >= end:
            raise DataError(f"{where}: empty moment [{start}, {end}]")
        entries.append(GroundingEntry(KIND, video_id, sentence, start, end, duration, video_opener(video, where)))
    return entries
