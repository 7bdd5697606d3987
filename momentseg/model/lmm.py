"""Qwen2.5-VL as MomentSeg's LMM: the TSG pass ([FIND] vs. frame tokens) and the RefVOS pass ([SEG])."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from transformers import (
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.video_utils import VideoMetadata

from momentseg.model.prompts import FIND_TOKEN, SEG_TOKEN, refvos_conversation, tsg_conversation

PATCH = 28  # a merged 2x2 group of 14-px patches: one LLM token


@dataclass(frozen=True)
class TSGHiddenStates:
    """The [FIND] hidden state h_FIND [H] and the video-token states per temporal patch [L_t, P, H]."""

    find: torch.Tensor
    frame_tokens: torch.Tensor


def build_processor(tokenizer) -> Qwen2_5_VLProcessor:
    """Qwen2.5-VL's processor around ``tokenizer``; pixel budgets are set per call."""
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=Qwen2VLVideoProcessor(cap_pixels_per_frame=True),
        tokenizer=tokenizer,
    )


def downscale_to_budget(frame: np.ndarray, max_pixels: int) -> np.ndarray:
    """Shrink an RGB frame (aspect kept) to at most ``max_pixels`` before the processor's exact resize,
    so a long video never holds full-resolution frames for the LMM."""
    height, width = frame.shape[:2]
    scale = (max_pixels / (height * width)) ** 0.5
    if scale >= 1:
        return frame
    size = (max(PATCH, round(width * scale)), max(PATCH, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class QwenLMM:
    """Teacher-forced forward passes through a stock ``Qwen2_5_VLForConditionalGeneration``."""

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, processor: Qwen2_5_VLProcessor,
                 system_prompt: str | None = None):
        self.model = model
        self.processor = processor
        self.system_prompt = system_prompt
        tokenizer = processor.tokenizer
        self.seg_token_id = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
        find_id = tokenizer.convert_tokens_to_ids(FIND_TOKEN)
        self.find_token_id = None if find_id in (None, tokenizer.unk_token_id) else find_id

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _last_hidden_state(self, inputs) -> torch.Tensor:
        inputs = inputs.to(self.device)
        dtype = next(self.model.parameters()).dtype
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(dtype)
        # the inner model returns the final-normed states without the vocabulary projection
        out = self.model.model(**inputs)
        return out.last_hidden_state[0]

    @torch.inference_mode()
    def encode_tsg(self, frames: list[np.ndarray], query: str, fps: float, max_pixels: int) -> TSGHiddenStates:
        """TSG pass: the low-resolution video (Qwen video mode) and the TSG question answered with [FIND]."""
        if self.find_token_id is None:
            raise RuntimeError("the tokenizer has no [FIND] token")
        video = np.stack([downscale_to_budget(f, max_pixels) for f in frames])
        size = {"shortest_edge": 4 * PATCH * PATCH, "longest_edge": max_pixels}
        inputs = self.processor(
            text=[tsg_conversation(query, self.system_prompt)],
            videos=[video],
            videos_kwargs={
                "video_metadata": [VideoMetadata(total_num_frames=len(frames), fps=fps)],
                "do_sample_frames": False,
                "size": size,
            },
            return_tensors="pt",
        )
        ids = inputs["input_ids"][0]
        grid_t, grid_h, grid_w = inputs["video_grid_thw"][0].tolist()
        hidden = self._last_hidden_state(inputs)
        video_positions = (ids == self.model.config.video_token_id).nonzero()[:, 0].to(hidden.device)
        per_patch = (grid_h // 2) * (grid_w // 2)
        frame_tokens = hidden[video_positions].view(grid_t, per_patch, -1)
        find_position = (ids == self.find_token_id).nonzero()[-1, 0]
        return TSGHiddenStates(find=hidden[find_position], frame_tokens=frame_tokens)

    @torch.inference_mode()
    def encode_seg(self, keyframes: list[np.ndarray], query: str, max_pixels: int) -> torch.Tensor:
        """RefVOS pass: the keyframes as high-resolution images, answered with [SEG]; returns h_SEG [H]."""
        images = [downscale_to_budget(f, max_pixels) for f in keyframes]
        size = {"shortest_edge": 4 * PATCH * PATCH, "longest_edge": max_pixels}
        inputs = self.processor(
            text=[refvos_conversation(query, len(images), self.system_prompt)],
            images=images,
            images_kwargs={"size": size},
            return_tensors="pt",
        )
        ids = inputs["input_ids"][0]
        hidden = self._last_hidden_state(inputs)
        seg_position = (ids == self.seg_token_id).nonzero()[-1, 0]
        return hidden[seg_position]
