"""Qwen2.5-VL as MomentSeg's LMM: the TSG pass ([FIND] vs. frame tokens) and the RefVOS pass ([SEG]).

Inputs are built as the official inference builds them under transformers 4.51
(``docs/official.md`` §2-5): frames resized with PIL bicubic to multiples of 28
within the pixel budget, CLIP-normalised, two frames per temporal patch (the last repeated to pad); the
M-RoPE positions of 4.51's ``get_rope_index`` without ``second_per_grid_ts`` (temporal id 2t for
temporal patch t, text after a video continuing after its largest id). Both passes answer greedily,
as the official code does, or with the answer teacher-forced (``force_answer``); the hidden state of
the [FIND]/[SEG] token is the last layer's (final-norm) state where that token is fed to the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from transformers import (
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from momentseg.model.budgets import (
    IMAGE_MAX_PIXELS,
    IMAGE_MIN_PIXELS,
    MAX_NEW_TOKENS,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
)
from momentseg.model.prompts import (
    FIND_ANSWER,
    FIND_TOKEN,
    SEG_ANSWER,
    SEG_TOKEN,
    SYSTEM_PROMPT,
    find_prompt,
    seg_prompt,
)
from momentseg.model.qwen_config import text_config, vision_config

PATCH = 28  # a merged 2x2 group of 14-px patches: one LLM token
VIT_PATCH = 14
TEMPORAL_PATCH = 2
MERGE = 2
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class TSGHiddenStates:
    """The TSG pass: h_FIND [H] (None when the model answered without [FIND]), the video-token states per
    temporal patch [L_t, P, H], and the answer text."""

    find: torch.Tensor | None
    frame_tokens: torch.Tensor
    answer: str


@dataclass(frozen=True)
class SegHiddenState:
    """The RefVOS pass: h_SEG [H] (None when the model answered without [SEG]) and the answer text."""

    seg: torch.Tensor | None
    answer: str


def build_processor(tokenizer) -> Qwen2_5_VLProcessor:
    """Qwen2.5-VL's processor around ``tokenizer`` (its tokenizer and vision settings; budgets per call)."""
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


def normalized_frame(frame: np.ndarray, min_pixels: int, max_pixels: int) -> np.ndarray:
    """One RGB uint8 frame as Qwen2-VL's image processor of transformers 4.51 prepares it: smart-resized
    (PIL bicubic) to multiples of 28 within [min_pixels, max_pixels], /255, CLIP mean/std; float32 [3, h, w]."""
    height, width = frame.shape[:2]
    new_h, new_w = smart_resize(height, width, factor=PATCH, min_pixels=min_pixels, max_pixels=max_pixels)
    resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BICUBIC))
    scaled = (resized.astype(np.float64) / 255.0).astype(np.float32)
    normalized = (scaled - np.asarray(OPENAI_CLIP_MEAN, np.float32)) / np.asarray(OPENAI_CLIP_STD, np.float32)
    return normalized.transpose(2, 0, 1)


def vision_patches(frames: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Flattened ViT patches of one image or one video ([3, h, w] frames of one size) and its grid (t, h, w).

    Consecutive frames pair into temporal patches; an odd count repeats the last frame (4.51 ``_preprocess``).
    """
    stack = np.stack(frames)
    if stack.shape[0] % TEMPORAL_PATCH:
        stack = np.concatenate([stack, np.repeat(stack[-1:], TEMPORAL_PATCH - stack.shape[0] % TEMPORAL_PATCH, 0)])
    channels, height, width = stack.shape[1:]
    grid_t, grid_h, grid_w = stack.shape[0] // TEMPORAL_PATCH, height // VIT_PATCH, width // VIT_PATCH
    patches = stack.reshape(
        grid_t, TEMPORAL_PATCH, channels, grid_h // MERGE, MERGE, VIT_PATCH, grid_w // MERGE, MERGE, VIT_PATCH
    )
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * TEMPORAL_PATCH * VIT_PATCH * VIT_PATCH)
    return np.ascontiguousarray(flat), [grid_t, grid_h, grid_w]


def mrope_position_ids(
    input_ids: torch.Tensor, grids: list[list[int]], vision_token_id: int, time_scale: float
) -> torch.Tensor:
    """M-RoPE position ids [3, 1, L] as transformers 4.51's ``get_rope_index`` computes them.

    ``grids`` are the (t, h, w) of the vision blocks in order, all of one kind (``vision_token_id``);
    the temporal id of temporal patch t is ⌊t · time_scale⌋ (videos: tokens_per_second · 1 s, since the
    official code passes no ``second_per_grid_ts``; images: 0). Text continues after the largest id.
    """
    ids = input_ids.tolist()
    positions, cursor, next_id = [], 0, 0
    for grid_t, grid_h, grid_w in grids:
        start = ids.index(vision_token_id, cursor)
        text = torch.arange(start - cursor) + next_id
        positions.append(text.expand(3, -1))
        base = next_id + start - cursor
        h, w = grid_h // MERGE, grid_w // MERGE
        t_ids = (torch.arange(grid_t) * time_scale).long().view(-1, 1).expand(-1, h * w).flatten()
        h_ids = torch.arange(h).view(1, -1, 1).expand(grid_t, -1, w).flatten()
        w_ids = torch.arange(w).view(1, 1, -1).expand(grid_t, h, -1).flatten()
        block = torch.stack([t_ids, h_ids, w_ids]) + base
        positions.append(block)
        next_id = int(block.max()) + 1
        cursor = start + grid_t * h * w
    positions.append((torch.arange(len(ids) - cursor) + next_id).expand(3, -1))
    return torch.cat(positions, dim=1).unsqueeze(1)


def attention_implementation(device: torch.device) -> str:
    """FlashAttention-2 where it is installed and the model is on a GPU, else PyTorch's SDPA."""
    import importlib.util

    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class QwenLMM:
    """The two MomentSeg passes through a stock ``Qwen2_5_VLForConditionalGeneration``.

    ``system_prompt`` None is the official "You are a helpful assistant."; "" leaves the system turn out.
    """

    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        processor: Qwen2_5_VLProcessor,
        system_prompt: str | None = None,
    ):
        self.model = model
        self.processor = processor
        self.system_prompt = SYSTEM_PROMPT if system_prompt is None else system_prompt
        preferred = attention_implementation(next(model.parameters()).device)
        if model.config._attn_implementation != preferred:
            model.set_attn_implementation(preferred)
        tokenizer = processor.tokenizer
        self.tokenizer = tokenizer
        self.seg_token_id = self._token_id(SEG_TOKEN)
        self.find_token_id = self._token_id(FIND_TOKEN)
        self.stop_token_ids = {i for i in map(self._token_id, STOP_TOKENS) if i is not None}

    def _token_id(self, token: str) -> int | None:
        found = self.tokenizer.convert_tokens_to_ids(token)
        return None if found in (None, self.tokenizer.unk_token_id) else found

    @property
    def hidden_size(self) -> int:
        return text_config(self.model.config).hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _answer(
        self,
        prompt: str,
        vision: dict,
        grids: list[list[int]],
        vision_token_id: int,
        time_scale: float,
        forced_answer: str | None,
        max_new_tokens: int,
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Runs the prompt and the answer; returns the prompt's last-layer states [P, H], the answer tokens'
        states as inputs [A, H] and the answer ids (the final token has no state: it is never fed back)."""
        prompt_ids = torch.tensor(self.tokenizer.encode(prompt, add_special_tokens=False))
        positions = mrope_position_ids(prompt_ids, grids, vision_token_id, time_scale)
        next_position = int(positions.max()) + 1
        vision = {k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype) for k, v in vision.items()}
        language = self.model.model
        if forced_answer is not None:
            answer_ids = self.tokenizer.encode(forced_answer, add_special_tokens=False)
            ids = torch.cat([prompt_ids, torch.tensor(answer_ids)])
            answer_positions = (torch.arange(len(answer_ids)) + next_position).expand(3, 1, -1)
            out = language(
                input_ids=ids[None].to(self.device),
                position_ids=torch.cat([positions, answer_positions], dim=2).to(self.device),
                **vision,
            )
            hidden = out.last_hidden_state[0]
            return hidden[: len(prompt_ids)], hidden[len(prompt_ids) :], answer_ids
        out = language(
            input_ids=prompt_ids[None].to(self.device), position_ids=positions.to(self.device), use_cache=True, **vision
        )
        prompt_hidden, cache = out.last_hidden_state[0], out.cache
        logits = self.model.lm_head(prompt_hidden[-1])
        answer_ids, answer_hidden = [], []
        for step in range(max_new_tokens):
            token = int(logits.argmax())
            answer_ids.append(token)
            if token in self.stop_token_ids or step == max_new_tokens - 1:
                break
            out = language(
                input_ids=torch.tensor([[token]], device=self.device),
                position_ids=torch.full((3, 1, 1), next_position + step, device=self.device),
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            answer_hidden.append(out.last_hidden_state[0, -1])
            logits = self.model.lm_head(answer_hidden[-1])
        hidden = torch.stack(answer_hidden) if answer_hidden else prompt_hidden[:0]
        return prompt_hidden, hidden, answer_ids

    @staticmethod
    def _state_at(answer_ids: list[int], hidden: torch.Tensor, token_id: int | None) -> torch.Tensor | None:
        """The state where the first ``token_id`` of the answer is fed back (official: first one only)."""
        for index, token in enumerate(answer_ids[: len(hidden)]):
            if token == token_id:
                return hidden[index]
        return None

    @torch.inference_mode()
    def encode_tsg(
        self,
        frames: Iterable[np.ndarray],
        query: str,
        *,
        min_pixels: int = VIDEO_MIN_PIXELS,
        max_pixels: int = VIDEO_MAX_PIXELS,
        style: str = "refvos",
        force_answer: bool = False,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> TSGHiddenStates:
        """TSG pass: the low-resolution video (Qwen video mode) and the [FIND] question (official MM:574-661)."""
        if self.find_token_id is None:
            raise RuntimeError("the tokenizer has no [FIND] token")
        patches, grid = vision_patches([normalized_frame(f, min_pixels, max_pixels) for f in frames])
        tokens = grid[0] * grid[1] * grid[2] // (MERGE * MERGE)
        prompt = find_prompt(query, tokens, style, self.system_prompt)
        vision = {"pixel_values_videos": torch.from_numpy(patches), "video_grid_thw": torch.tensor([grid])}
        time_scale = float(vision_config(self.model.config).tokens_per_second)
        prompt_hidden, hidden, answer_ids = self._answer(
            prompt,
            vision,
            [grid],
            self.model.config.video_token_id,
            time_scale,
            FIND_ANSWER if force_answer else None,
            max_new_tokens,
        )
        prompt_ids = torch.tensor(self.tokenizer.encode(prompt, add_special_tokens=False))
        video_rows = (prompt_ids == self.model.config.video_token_id).nonzero()[:, 0].to(prompt_hidden.device)
        frame_tokens = prompt_hidden[video_rows].view(grid[0], -1, prompt_hidden.shape[-1])
        return TSGHiddenStates(
            self._state_at(answer_ids, hidden, self.find_token_id), frame_tokens, self.tokenizer.decode(answer_ids)
        )

    @torch.inference_mode()
    def encode_seg(
        self,
        keyframes: Iterable[np.ndarray],
        query: str,
        *,
        min_pixels: int = IMAGE_MIN_PIXELS,
        max_pixels: int = IMAGE_MAX_PIXELS,
        style: str = "refvos",
        force_answer: bool = False,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> SegHiddenState:
        """RefVOS pass: the keyframes as high-resolution images and the [SEG] question (official MM:673-764)."""
        per_image = [vision_patches([normalized_frame(f, min_pixels, max_pixels)]) for f in keyframes]
        grids = [grid for _, grid in per_image]
        prompt = seg_prompt(query, [t * h * w // (MERGE * MERGE) for t, h, w in grids], style, self.system_prompt)
        vision = {
            "pixel_values": torch.from_numpy(np.concatenate([p for p, _ in per_image])),
            "image_grid_thw": torch.tensor(grids),
        }
        _, hidden, answer_ids = self._answer(
            prompt,
            vision,
            grids,
            self.model.config.image_token_id,
            0.0,
            SEG_ANSWER if force_answer else None,
            max_new_tokens,
        )
        return SegHiddenState(self._state_at(answer_ids, hidden, self.seg_token_id), self.tokenizer.decode(answer_ids))
