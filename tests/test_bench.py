"""Smoke tests of the benchmark scripts' code paths (they print figures; nothing here times anything)."""

import json
import sys

import pytest


def run_main(module, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    module.main()
    return capsys.readouterr().out


def test_gpu_benchmark_small_path_runs_on_cpu(monkeypatch, capsys):
    from bench import gpu

    out = run_main(
        gpu, ["--device", "cpu", "--small", "--repeats", "1", "--frames", "6", "--size", "64x96"], monkeypatch, capsys
    )
    row = json.loads(out.strip().splitlines()[-1])
    assert row["device"] == "CPU" and row["frames"] == 6 and row["size"] == "64x96"
    assert set(row["timings_s"]) >= {"tsg", "refvos", "propagation"}
    assert 0 < row["outside_models"] < 1 and row["peak_gpu_gib_by_stage"] == {}
    for category in ("SAM2", "LMM", "frames (decode waits, spill reads, views)"):
        assert category in out


def test_gpu_benchmark_refuses_cuda_without_a_gpu(monkeypatch):
    from bench import gpu

    if gpu.torch.cuda.is_available():
        pytest.skip("a GPU is here: the full-size path would run")
    monkeypatch.setattr(sys, "argv", ["bench.gpu"])
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu.main()


def test_propagation_benchmark_compares_with_bare_sam2(monkeypatch, capsys):
    from bench import propagation

    out = run_main(
        propagation,
        ["--frames", "4", "--size", "48x64", "--configs", "tiny", "--repeats", "1", "--threads", "1"],
        monkeypatch,
        capsys,
    )
    row = out.strip().splitlines()[-1].split()
    assert row[0] == "tiny"
    bare_wall, ours_wall, ratio = map(float, row[3:6])
    half = 0.005  # every figure is printed to 2 decimals: the ratio lies between those of the rounded walls' ends
    assert (ours_wall - half) / (bare_wall + half) - half <= ratio <= (ours_wall + half) / (bare_wall - half) + half
    assert float(row[-1]) > 0.5  # the two runs track the same object: their masks agree


def test_shapes_model_benchmark_trains_in_two_phases_ships_bf16_and_scores(monkeypatch, capsys, tmp_path):
    from bench import train_shapes_model
    from momentseg.masks import from_coco_rle

    argv = ["--out", str(tmp_path / "run"), "--example", str(tmp_path / "example")]
    argv += ["--mask-steps", "1", "--steps", "1", "--train-clips", "2", "--test-clips", "1"]
    out = run_main(train_shapes_model, argv, monkeypatch, capsys)
    for phase in ("masks", "train"):
        assert len((tmp_path / "run" / phase / "train_log.jsonl").read_text().splitlines()) == 1
    assert "shipped:" in out and "bf16" in out and "trained, own answers" in out
    expected = json.loads((tmp_path / "example" / "expected.json").read_text())
    start, end = expected["moment"]
    assert " that " in expected["prompt"] and 0 <= start <= end < len(expected["masks"])
    assert len(list((tmp_path / "example").glob("*.jpg"))) == len(expected["masks"])
    assert all(from_coco_rle(rle).shape == (64, 64) for rle in expected["masks"])


def test_base_probe_tells_a_soft_attention_base_from_a_peaked_one(monkeypatch, capsys):
    from bench import base_probe

    soft = base_probe.probe(0.15, 10.0, 0.05)
    peaked = base_probe.probe(0.15, 10.0, 0.15)
    least = "[SEG] moved by a colour word, least"
    assert soft[least] > 2 * peaked[least]
    assert base_probe.probe(0.02, 1.0, 0.02)["video tokens' similarities kept"] > 0.9
    row = json.loads(run_main(base_probe, [], monkeypatch, capsys).strip().splitlines()[-1])
    assert row["initializer_range"] == 0.15 and least in row
