"""Full-size MomentSeg with random weights: Qwen2.5-VL-3B geometry (MomentSeg-3B) + SAM2 2.0 Hiera-L at 1024.

Runs the whole pipeline on a synthetic 100-frame 720p H.264 clip through the frame store and prints,
per run, the pipeline's stage times, where the wall time goes (LMM, SAM2, frames, masks, encoding) and
peak GPU memory per stage. Made for one CUDA GPU, unchanged (bfloat16 LMM, SAM2 under bfloat16
autocast). ``--device cpu --small`` runs a scaled-down model and clip the same way, so the script is
exercised where there is no GPU; figures from it say nothing about full-size speed.

Run: .venv/bin/python -m bench.gpu [--frames 100] [--size 720x1280] [--repeats 2]
     .venv/bin/python -m bench.gpu --device cpu --small
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.decoding import write_long_gop_h264
from bench.stages import StageClock, instrument, report, timed_decoder

FULL_SAM2 = ("configs/sam2/sam2_hiera_l.yaml", 1024, "hiera_l")
SMALL_SAM2 = ("configs/sam2/sam2_hiera_t.yaml", 256, "hiera_t")
OBJECT_SCORE_BIAS = 4.0  # random decoders call every object absent; bias them present so masks propagate


def qwen_config(tokenizer, small=False):
    """Qwen2.5-VL-3B's config.json geometry (tie_word_embeddings false, as MomentSeg-3B); ``small`` shrinks it."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=128000,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        out_hidden_size=2048,
        tokens_per_second=2,
    )
    if small:
        text.update(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            rope_parameters={**text["rope_parameters"], "mrope_section": [4, 6, 6]},
        )
        vision.update(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=2, fullatt_block_indexes=[1], out_hidden_size=128
        )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def build_model(device, dtype, small=False):
    """Random weights allocated straight on ``device`` in ``dtype`` (no float32 host copy of 3B parameters)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from momentseg.model.checkpoint import ModelInfo, MomentSegModel
    from momentseg.model.heads import FindHead, SegProjector
    from momentseg.model.lmm import QwenLMM, build_processor
    from momentseg.model.sam2_tracker import build_predictor
    from momentseg.model.tiny import build_tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    config = qwen_config(tokenizer, small)
    with torch.device(device):
        qwen = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    sam2_config, image_size, trunk = SMALL_SAM2 if small else FULL_SAM2
    predictor = build_predictor(sam2_config, image_size, device).eval()  # float32 weights, autocast as sam2 does
    with torch.no_grad():
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(OBJECT_SCORE_BIAS)
    hidden = config.text_config.hidden_size
    info = ModelInfo(
        "random (MomentSeg-3B geometry)" if not small else "random (small)",
        "momentseg",
        ("seg", "find"),
        sam2_config,
        image_size,
        trunk,
        str(dtype).removeprefix("torch."),
    )
    return MomentSegModel(
        QwenLMM(qwen, build_processor(tokenizer)),
        SegProjector(hidden).to(device, dtype).eval(),
        FindHead(hidden).to(device, dtype).eval(),
        predictor,
        info,
    )


class PeakMemory:
    """Peak GPU memory per pipeline stage, read at each stage change the pipeline reports."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.peaks: dict[str, float] = {}
        self.stage = None

    def __call__(self, stage, done, total):
        if stage == self.stage or not self.cuda:
            return
        self.close()
        self.stage = stage
        torch.cuda.reset_peak_memory_stats()

    def close(self):
        if self.stage is not None and self.cuda:
            peak = torch.cuda.max_memory_allocated() / 2**30
            self.peaks[self.stage] = round(max(self.peaks.get(self.stage, 0.0), peak), 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="scaled-down model and clip (for CPU)")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--size", help="HxW (default 720x1280, 180x320 with --small)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gop", type=int, default=250)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(
            "bench/gpu.py: no CUDA device here; run it with --device cpu --small for the scaled-down model"
        )
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as sam2's examples
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions
    from momentseg.video import FrameStore, VideoFile

    frames = args.frames or (16 if args.small else 100)
    height, width = (int(v) for v in (args.size or ("180x320" if args.small else "720x1280")).split("x"))
    dtype = torch.bfloat16 if cuda else torch.float32
    start = time.perf_counter()
    model = build_model(device, dtype, args.small)
    parameters = [p for part in model.parts().values() for p in part.parameters()]
    weights_gib = sum(p.numel() * p.element_size() for p in parameters) / 2**30
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(
        f"device: {name}, LMM {dtype}, model built in {time.perf_counter() - start:.1f}s, weights {weights_gib:.2f} GiB"
    )
    sync = torch.cuda.synchronize if cuda else None
    # teacher-forced answers: a trained model says "It is [SEG]." in a few tokens; random weights would
    # generate max_new_tokens, which measures nothing the product does
    options = SegmentOptions(force_answer=True)
    pipeline = MomentSegPipeline(model)
    with tempfile.TemporaryDirectory() as folder:
        path = write_long_gop_h264(Path(folder) / "clip.mp4", frames, height, width, args.gop)
        for repeat in range(args.repeats):
            video = VideoFile(path)
            decoding = timed_decoder(video)
            with FrameStore(video) as store:
                clock, peaks = StageClock(sync), PeakMemory(cuda)
                instrument(clock, model, store)
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                result = pipeline.run(store, "the red ball that rolls to the right", options, progress=peaks)
                if cuda:
                    torch.cuda.synchronize()
                wall = time.perf_counter() - start
                peaks.close()
                clock.restore()
            print(f"\nrun {repeat}: {frames} frames {width}x{height}, {wall:.2f}s, {frames / wall:.2f} frames/s")
            outside = report(clock, wall, result.timings, [("decoder thread, overlapped (s)", f"{decoding[0]:.3f}")])
            print(
                json.dumps(
                    {
                        "run": repeat,
                        "device": name,
                        "frames": frames,
                        "size": f"{height}x{width}",
                        "total_s": round(wall, 3),
                        "outside_models": round(outside, 4),
                        "timings_s": result.timings,
                        "peak_gpu_gib_by_stage": peaks.peaks,
                    }
                )
            )


if __name__ == "__main__":
    main()
