"""The multi-process path on CPU (gloo): two ranks train one model and share an evaluation."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors import safe_open

from momentseg.data.synthetic import SyntheticOptions, generate

TORCHRUN = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
    "-m",
    "momentseg.cli",
]
TINY_BUDGETS = [
    "--tsg-pixels",
    "3136",
    "--tsg-min-pixels",
    "3136",
    "--image-pixels",
    "3136",
    "--image-min-pixels",
    "3136",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("synth"),
        train_clips=4,
        test_clips=3,
        seed=7,
        options=SyntheticOptions(frames=6, actions=("appears",), distractors=0),
    )


def run(args, timeout=300, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


TRAIN_SMALL = [
    "--device",
    "cpu",
    "--lora-rank",
    "4",
    "--lora-alpha",
    "8",
    "--num-workers",
    "0",
    "--tsg-frames",
    "6",
    "--temporal-frames",
    "3",
    "--keyframes",
    "2",
    "--quiet",
    "--temporal-pixels",
    "3136",
    "--temporal-min-pixels",
    "3136",
    *TINY_BUDGETS,
]


def train(base, data, out, *flags, **run_options):
    """``momentseg train`` on two processes for two steps at the sizes above; ``data``: the ``--data`` specs."""
    data_flags = [flag for spec in data for flag in ("--data", spec)]
    return run(
        ["train", "--base", str(base), *data_flags, "--out", str(out), "--max-steps", "2", *flags, *TRAIN_SMALL],
        **run_options,
    )


def test_two_processes_train_with_gloo(synth, sa2va_checkpoint, tmp_path):
    data = [f"charades-sta={synth / 'charades-sta'}", f"mevis={synth / 'mevis'}"]
    train(sa2va_checkpoint, data, tmp_path, "--save-every", "1")
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and {r["processes"] for r in log} == {2}
    # each rank's Σ of its trainable values: DDP's averaged gradients keep the ranks' copies equal
    first, second = (r["rank_checksums"] for r in log)
    assert len(first) == 2 and first[0] == first[1] and second[0] == second[1] and first != second
    with safe_open(str(tmp_path / "checkpoint" / "model.safetensors"), "pt") as handle:
        assert any(k.startswith("find_hidden_fcs.") for k in handle.keys())


def test_two_processes_share_an_evaluation(synth, tiny_checkpoint, tmp_path):
    run(
        [
            "eval",
            "--checkpoint",
            str(tiny_checkpoint),
            "--data",
            f"mevis={synth / 'mevis'}",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--keyframes",
            "3",
            "--force-answer",
            "--quiet",
            *TINY_BUDGETS,
        ]
    )
    shards = [
        [json.loads(line)["key"] for line in (tmp_path / "rows" / f"rank-{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert len(shards[0]) == 2 and len(shards[1]) == 1 and not set(shards[0]) & set(shards[1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["summary"]["expressions"] == 3 and len(metrics["rows"]) == 3


def test_a_bad_sample_on_one_rank_stops_both_ranks_with_the_same_error(synth, sa2va_checkpoint, tmp_path):
    """The clip rank 1 draws first has unreadable frames; rank 0's is fine. Both ranks stop at that step with
    the same one-line error naming rank 1 and the clip, well before any collective timeout."""
    import time

    import numpy as np

    from momentseg.data import load_entries, parse_data_spec

    data = tmp_path / "mevis"
    shutil.copytree(synth / "mevis", data)
    entries = load_entries(parse_data_spec(f"mevis={data}"))

    def first_draw(rank):  # what MixtureOfDatasets draws at micro-step 0 (seed 0, one dataset)
        rng = np.random.default_rng([0, rank, 0])
        rng.choice(1, p=[1.0])
        return entries[rng.integers(len(entries))].video_id

    broken = first_draw(1)
    assert first_draw(0) != broken, "the synthetic clips must give the two ranks different first samples"
    for frame in (data / "train" / "JPEGImages" / broken).iterdir():
        frame.write_bytes(b"not a jpeg")
    started = time.monotonic()
    done = train(sa2va_checkpoint, [f"mevis={data}"], tmp_path / "out", timeout=240, check=False)
    assert done.returncode != 0 and time.monotonic() - started < 200
    errors = [line for line in done.stderr.splitlines() if line.startswith("momentseg: error:")]
    assert len(errors) == 2 and errors[0] == errors[1], done.stderr[-3000:]
    assert errors[0].startswith("momentseg: error: rank 1: ") and broken in errors[0]
