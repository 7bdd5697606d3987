"""Full-size MomentSeg on a GPU with random weights: Qwen2.5-VL-3B geometry + SAM2 hiera-L at 1024.

Runs the whole pipeline on a synthetic 100-frame 720p clip and prints per-stage latency and peak GPU
memory. Needs CUDA (it refuses to run on a CPU: a 3B model there says nothing about the product).

Run: .venv/bin/python -m bench.gpu [--frames 100] [--size 720x1280] [--repeats 2]
"""

import argparse
import json
import time

import torch

from bench.memory import SyntheticVideo


def qwen25_vl_3b_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
            num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, temporal_patch_size=2,
            spatial_merge_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31], out_hidden_size=2048,
            tokens_per_second=2,
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def build_full_model():
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.initialization import no_init_weights

    from momentseg.model.checkpoint import ModelInfo, MomentSegModel
    from momentseg.model.heads import FindHead, SegProjector
    from momentseg.model.lmm import QwenLMM, build_processor
    from momentseg.model.sam2_tracker import build_predictor
    from momentseg.model.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    with no_init_weights():
        qwen = Qwen2_5_VLForConditionalGeneration(qwen25_vl_3b_config(tokenizer))
    for parameter in qwen.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    qwen.to("cuda", torch.bfloat16).eval()
    predictor = build_predictor("configs/sam2/sam2_hiera_l.yaml", 1024, "cuda").eval()
    with torch.no_grad():
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    seg = SegProjector(2048).to("cuda", torch.bfloat16).eval()
    find = FindHead(2048).to("cuda", torch.bfloat16).eval()
    info = ModelInfo("random (Qwen2.5-VL-3B + SAM2 hiera-L geometry)", "momentseg", ("seg", "find"),
                     "configs/sam2/sam2_hiera_l.yaml", 1024)
    return MomentSegModel(QwenLMM(qwen, build_processor(tokenizer)), seg, find, predictor, info)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU")
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions

    height, width = (int(v) for v in args.size.split("x"))
    start = time.perf_counter()
    model = build_full_model()
    print(f"device: {torch.cuda.get_device_name()}, build {time.perf_counter() - start:.1f}s, "
          f"weights {torch.cuda.memory_allocated() / 2**30:.2f} GiB")
    pipeline = MomentSegPipeline(model)
    video = SyntheticVideo(args.frames, height, width)
    for repeat in range(args.repeats):
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = pipeline.run(video, "the red ball that rolls to the right", SegmentOptions())
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        print(json.dumps({"run": repeat, "frames": args.frames, "size": args.size, "total_s": round(total, 2),
                          "fps": round(args.frames / total, 2), "timings_s": result.timings,
                          "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}))


if __name__ == "__main__":
    main()
