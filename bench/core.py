"""Prints MCS latency for T = 100 … 10,000 and mask codec throughput on 1080p masks.

Run: .venv/bin/python bench/core.py
"""

import time
from functools import partial

import numpy as np

from momentseg.masks import mask_to_polygons, to_coco_rle, to_cvat_rle
from momentseg.sampling import moment_centric_sampling


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def encode_all(encode, masks):
    return [encode(mask) for mask in masks]


def main():
    rng = np.random.default_rng(0)
    print("MCS (K = 8), best of 50")
    print(f"{'T':>7} {'ms':>8}")
    for frames in (100, 300, 1000, 3000, 10000):
        similarity = rng.random(frames)
        print(f"{frames:>7} {1000 * best_of(partial(moment_centric_sampling, similarity, 8), 50):>8.3f}")

    yy, xx = np.mgrid[:1080, :1920]
    masks = []
    for i in range(10):
        cy, cx = 300 + 40 * i, 600 + 60 * i
        masks.append(((yy - cy) ** 2 / 200**2 + (xx - cx) ** 2 / 320**2) < 1)
    print("\nCodecs on 1080p masks (an ellipse per frame), frames/s")
    for name, encode in (("CVAT RLE", to_cvat_rle), ("COCO RLE", to_coco_rle), ("polygons", mask_to_polygons)):
        elapsed = best_of(partial(encode_all, encode, masks), 3)
        print(f"{name:>9} {len(masks) / elapsed:>8.1f}")


if __name__ == "__main__":
    main()
