"""The multi-process path on CPU (gloo): two ranks train one model and share an evaluation."""

import json
import os
import subprocess
import sys

import pytest
from safetensors import safe_open

from momentseg.data.synthetic import SyntheticOptions, generate

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "momentseg.cli"]
TINY_BUDGETS = ["--tsg-pixels", "3136", "--tsg-min-pixels", "3136", "--image-pixels", "3136", "--image-min-pixels", "3136"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), train_clips=4, test_clips=3, seed=7,
                    options=SyntheticOptions(frames=6, actions=("appears",), distractors=0))


def run(args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_train_with_gloo(synth, sa2va_checkpoint, tmp_path):
    run(["train", "--base", str(sa2va_checkpoint), "--data", f"charades-sta={synth / 'charades-sta'}",
         "--data", f"mevis={synth / 'mevis'}", "--out", str(tmp_path), "--device", "cpu", "--max-steps", "2",
         "--save-every", "1", "--lora-rank", "4", "--lora-alpha", "8", "--num-workers", "0", "--tsg-frames", "6",
         "--temporal-frames", "3", "--keyframes", "2", "--quiet", "--temporal-pixels", "3136",
         "--temporal-min-pixels", "3136", *TINY_BUDGETS])
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and {r["processes"] for r in log} == {2}
    with safe_open(str(tmp_path / "checkpoint" / "model.safetensors"), "pt") as handle:
        assert any(k.startswith("find_hidden_fcs.") for k in handle.keys())


def test_two_processes_share_an_evaluation(synth, tiny_checkpoint, tmp_path):
    run(["eval", "--checkpoint", str(tiny_checkpoint), "--data", f"mevis={synth / 'mevis'}", "--out", str(tmp_path),
         "--device", "cpu", "--keyframes", "3", "--force-answer", "--quiet", *TINY_BUDGETS])
    shards = [[json.loads(line)["key"] for line in (tmp_path / "rows" / f"rank-{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)]
    assert len(shards[0]) == 2 and len(shards[1]) == 1 and not set(shards[0]) & set(shards[1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["summary"]["expressions"] == 3 and len(metrics["rows"]) == 3
