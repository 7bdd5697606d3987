"""Probe a random tiny base before training it (docs/training.md § 9.1), in seconds:

* how far the [SEG] state moves when only the colour word of the sentence changes ("the red square" …
  "the white square"): a colour word that does not move it cannot teach the mask which object to pick;
* how much of what the video tokens carry survives the text layers: the correlation of the tokens'
  pairwise similarities before and after them (the [FIND] similarity reads each frame's tokens).

Run: .venv/bin/python -m bench.base_probe [--initializer-range S] [--video-token-scale K]
     [--attention-initializer-range S] (defaults: bench/train_shapes_model.py's base)
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from bench.train_shapes_model import ATTENTION_INITIALIZER_RANGE, INITIALIZER_RANGE, VIDEO_TOKEN_SCALE
from momentseg.data.synthetic import COLOURS
from momentseg.model.lmm import normalized_frame, vision_patches
from momentseg.model.tiny import MINI_SAM2_CONFIG, build_tiny_model

SENTENCE = "please segment the {} square in this video . [SEG]"
PIXELS = 4 * 4 * 28 * 28


def pairwise_similarities(tokens: torch.Tensor) -> torch.Tensor:
    centred = torch.nn.functional.normalize(tokens - tokens.mean(0), dim=-1)
    return (centred @ centred.T).flatten()


def probe(initializer_range: float, video_token_scale: float, attention_initializer_range: float | None) -> dict:
    model = build_tiny_model(
        "sa2va",
        0,
        sam2_config=MINI_SAM2_CONFIG,
        initializer_range=initializer_range,
        video_token_scale=video_token_scale,
        attention_initializer_range=attention_initializer_range,
    )
    qwen, tokenizer = model.lmm.model, model.lmm.processor.tokenizer
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8) for i in range(8)]
    patches, grid = vision_patches([normalized_frame(f, PIXELS, PIXELS) for f in frames])
    text_layers = qwen.model.language_model
    with torch.no_grad():
        video = torch.cat(
            list(qwen.model.get_video_features(torch.as_tensor(patches), torch.tensor([grid])).pooler_output)
        )
        states = {}
        for colour in COLOURS:
            ids = torch.tensor(tokenizer.convert_tokens_to_ids(SENTENCE.format(colour).split()))
            hidden = text_layers(
                inputs_embeds=torch.cat([video, text_layers.embed_tokens(ids)])[None]
            ).last_hidden_state[0]
            states[colour] = hidden
    seg = torch.stack([hidden[-1] for hidden in states.values()])
    moves = torch.cdist(seg, seg) / seg.norm(dim=-1).mean()
    moves = moves[~torch.eye(len(states), dtype=torch.bool)]
    after = next(iter(states.values()))[: len(video)]
    kept = torch.corrcoef(torch.stack([pairwise_similarities(after), pairwise_similarities(video)]))[0, 1]
    return {
        "[SEG] moved by a colour word, least": round(float(moves.min()), 3),
        "[SEG] moved by a colour word, mean": round(float(moves.mean()), 3),
        "video tokens' similarities kept": round(float(kept), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--initializer-range", type=float, default=INITIALIZER_RANGE)
    parser.add_argument("--video-token-scale", type=float, default=VIDEO_TOKEN_SCALE)
    parser.add_argument("--attention-initializer-range", type=float, default=ATTENTION_INITIALIZER_RANGE)
    args = parser.parse_args()
    settings = vars(args)
    print(json.dumps({**settings, **probe(**settings)}))


if __name__ == "__main__":
    main()
