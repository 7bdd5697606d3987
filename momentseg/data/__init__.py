"""Training and evaluation data in the benchmarks' official layouts, selected as ``KIND=ROOT[:WEIGHT]``.

Each reader is a small module with ``read(root, split) -> list[entry]``. Entries are light records; frames
and masks are decoded only when a sample is built. A missing or unreadable file is a :class:`DataError`
naming the file and the entry, never a silently skipped dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from momentseg.data import activitynet, charades, cvat_export, mevis, ref_youtube_vos, revos
from momentseg.data.entries import DataError, GroundingEntry, ReferringEntry

__all__ = ["READERS", "DataError", "DataSpec", "GroundingEntry", "ReferringEntry", "load_entries", "parse_data_spec"]

READERS = {
    "charades-sta": charades,
    "activitynet": activitynet,
    "mevis": mevis,
    "ref-youtube-vos": ref_youtube_vos,
    "revos": revos,
    "cvat": cvat_export,
}


@dataclass(frozen=True)
class DataSpec:
    """One ``--data KIND=ROOT[:WEIGHT]`` argument."""

    kind: str
    root: Path
    weight: float = 1.0


def parse_data_spec(text: str) -> DataSpec:
    """``mevis=/data/MeViS:2`` → DataSpec("mevis", Path("/data/MeViS"), 2.0); the weight is optional."""
    kind, sep, rest = text.partition("=")
    kind = kind.strip().lower()
    if not sep or not rest:
        raise DataError(f"--data '{text}' must look like KIND=ROOT[:WEIGHT], KIND one of {', '.join(READERS)}")
    if kind not in READERS:
        raise DataError(f"unknown data kind '{kind}' in --data '{text}': use one of {', '.join(READERS)}")
    root, weight = rest, 1.0
    head, colon, tail = rest.rpartition(":")
    if colon and head:
        try:
            weight = float(tail)
            root = head
        except ValueError:
            pass  # a ':' inside the path
    if not weight > 0:
        raise DataError(f"the sampling weight in --data '{text}' must be > 0")
    return DataSpec(kind, Path(root), weight)


def load_entries(spec: DataSpec, split: str | None = None) -> list:
    """Every entry of one dataset split (the reader's default split when ``split`` is None)."""
    if not spec.root.exists():
        raise DataError(f"{spec.kind} root '{spec.root}' does not exist")
    reader = READERS[spec.kind]
    entries = reader.read(spec.root, split or reader.DEFAULT_SPLIT)
    if not entries:
        raise DataError(f"{spec.kind} at '{spec.root}' (split '{split or reader.DEFAULT_SPLIT}') has no entries")
    return entries
