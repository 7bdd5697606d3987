"""Peak host memory while loading a multi-gigabyte bfloat16 checkpoint on CPU (goal: ≤ 1.3× the weights).

Writes a random-weight checkpoint of about ``--gb`` gigabytes in bfloat16 (default: the official MomentSeg
layout, sharded like a Hugging Face release) with a mid-size geometry: Qwen2.5-VL at Qwen2.5-1.5B's text
width with as many layers as the size allows, 8 vision blocks of the real width, SAM2 2.0 Hiera-L. Then
loads it with ``load_checkpoint`` in a fresh process and prints the peak RSS above the process's baseline
(after imports) divided by the bytes of the loaded weights, and by the bytes of the file.

Run: .venv/bin/python bench/loading.py [--gb 2.5] [--dtype bfloat16] [--layout official|sa2va|momentseg]
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

GB = 1e9
# Qwen2.5-1.5B's text geometry; vision tower at Qwen2.5-VL's width with fewer blocks
TEXT = dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12, num_key_value_heads=2, vocab_size=151936)
VISION = dict(depth=8, hidden_size=1280, intermediate_size=3420, num_heads=16, fullatt_block_indexes=[3, 7])
SAM2_CONFIG = "configs/sam2/sam2_hiera_l.yaml"


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def qwen_config(layers, tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config=dict(
            **TEXT,
            num_hidden_layers=layers,
            max_position_embeddings=32768,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            eos_token_id=ids("<|im_end|>"),
        ),
        vision_config=dict(
            **VISION,
            out_hidden_size=TEXT["hidden_size"],
            patch_size=14,
            temporal_patch_size=2,
            spatial_merge_size=2,
            window_size=112,
            tokens_per_second=2,
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def empty_shapes(config, layout):
    """Disk key → shape for every weight of ``layout``, from modules built on the meta device."""
    from accelerate import init_empty_weights
    from torch import nn
    from transformers import Qwen2_5_VLForConditionalGeneration

    from momentseg.model import checkpoint as ck
    from momentseg.model.heads import FindHead, SegProjector
    from momentseg.model.sam2_tracker import build_predictor

    hidden = config.text_config.hidden_size
    with init_empty_weights(include_buffers=False):
        parts = {
            ck.LMM: Qwen2_5_VLForConditionalGeneration(config),
            ck.SAM2: build_predictor(SAM2_CONFIG, 1024, "meta"),
            ck.SEG: SegProjector(hidden),
            ck.FIND: FindHead(hidden, activation=nn.ReLU),
            ck.IMAGE: SegProjector(hidden),
        }
    return {
        layout.disk_key(part, key): tuple(t.shape)
        for part, module in parts.items()
        if part in layout.required
        for key, t in module.state_dict().items()
    }


def write_checkpoint(folder, gb, layout_name, shard_gb=1.0):
    """A random bfloat16 checkpoint of about ``gb`` GB, in shards of at most ``shard_gb`` GB."""
    from safetensors.torch import save_file

    from momentseg.model.checkpoint import LAYOUTS
    from momentseg.model.official import official_config
    from momentseg.model.tiny import OFFICIAL_ADDED_TOKENS, build_tiny_tokenizer

    layout = LAYOUTS[layout_name]
    tokenizer = build_tiny_tokenizer(added_tokens=OFFICIAL_ADDED_TOKENS if layout.find_activation else ["[SEG]"])
    bytes_of = lambda shapes: 2 * sum(math.prod(s) for s in shapes.values())  # noqa: E731 (bf16)
    fixed = bytes_of(empty_shapes(qwen_config(0, tokenizer), layout))
    per_layer = bytes_of(empty_shapes(qwen_config(1, tokenizer), layout)) - fixed
    layers = max(1, round((gb * GB - fixed) / per_layer))
    config = qwen_config(layers, tokenizer)
    shapes = empty_shapes(config, layout)
    shards, current, size = [], [], 0
    for key in sorted(shapes):
        nbytes = 2 * math.prod(shapes[key])
        if current and size + nbytes > shard_gb * GB:
            shards.append(current)
            current, size = [], 0
        current.append(key)
        size += nbytes
    shards.append(current)
    weight_map = {}
    for number, keys in enumerate(shards, 1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(
            {k: torch.empty(shapes[k], dtype=torch.bfloat16).uniform_(-0.02, 0.02) for k in keys},
            folder / name,
            metadata={"format": "pt"},
        )
        weight_map.update(dict.fromkeys(keys, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if layout.name == "official":
        config_dict = official_config(config, dtype="bfloat16")
    else:
        config_dict = {**config.to_dict(), "momentseg": {"sam2_image_size": 1024}}
    (folder / "config.json").write_text(json.dumps(config_dict))
    tokenizer.save_pretrained(folder)
    return layers, sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def measure(folder, dtype):
    """In this (fresh) process: peak RSS above the post-import baseline while loading."""
    from momentseg.model.checkpoint import load_checkpoint

    baseline = _status("VmRSS")
    start = time.perf_counter()
    model = load_checkpoint(folder, device="cpu", dtype=dtype)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    weights = sum(t.nbytes for module in model.parts().values() for t in module.state_dict().values())
    print(json.dumps({"baseline_bytes": baseline, "peak_bytes": peak, "weight_bytes": weights, "seconds": seconds}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.5, help="checkpoint size to write (bfloat16)")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="dtype to load the LMM in (SAM2 always loads in float32)",
    )
    parser.add_argument("--layout", default="official", choices=["official", "sa2va", "momentseg"])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.dtype)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        layers, file_bytes = write_checkpoint(folder, args.gb, args.layout)
        print(
            f"wrote a {file_bytes / GB:.2f} GB bfloat16 {args.layout}-layout checkpoint ({layers} text layers, "
            f"SAM2 2.0 Hiera-L) in {time.perf_counter() - start:.0f} s"
        )
        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(folder), "--dtype", args.dtype],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
    above = figures["peak_bytes"] - figures["baseline_bytes"]
    print(
        f"loaded in {args.dtype} in {figures['seconds']:.1f} s: weights in memory "
        f"{figures['weight_bytes'] / GB:.2f} GB (SAM2 in float32), peak RSS above baseline {above / GB:.2f} GB"
    )
    print(f"peak / weights in memory = {above / figures['weight_bytes']:.3f}  (goal ≤ 1.3)")
    print(f"peak / file = {above / file_bytes:.3f}")


if __name__ == "__main__":
    main()
