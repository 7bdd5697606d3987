"""From dataset entries to prepared training samples: the official training conversations, the low-res
TSG video with its [FIND] targets, and the RefVOS keyframes with temporal tokens and ground-truth masks.

Everything here runs in the data-loader workers (decoding, resizing, tokenising); the model step only
moves tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from momentseg.data.entries import DataError, GroundingEntry, ReferringEntry
from momentseg.model.lmm import MERGE, downscale_to_budget, mrope_position_ids, normalized_frame, vision_patches
from momentseg.model.prompts import FIND_PROMPTS, IMAGE, SEG_PROMPTS, VIDEO, chat
from momentseg.model.sam2_tracker import sam2_input
from momentseg.train.config import SampleRecipe

VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
# the [FIND] questions of the official TSG and RefVOS inference: a model trained on both answers either
TSG_QUESTION_STYLES = ("tsg", "refvos")
# the official recipe's answers (Charades_Dataset FIND_ANSWER_LIST, ReVOS_Dataset ANSWER_LIST)
FIND_ANSWERS = ("It is [FIND].", "Sure, [FIND].", "Sure, it is [FIND].", "[FIND].")
SEG_ANSWERS = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
    "[SEG].",
)


@dataclass(frozen=True)
class VisionBlock:
    """One image or video of a conversation, prepared as the inference prepares it (momentseg.model.lmm)."""

    patches: np.ndarray
    grid: list[int]
    is_video: bool

    @property
    def tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w // (MERGE * MERGE)


def vision_block(frames: list[np.ndarray], min_pixels: int, max_pixels: int, *, is_video: bool) -> VisionBlock:
    patches, grid = vision_patches([normalized_frame(f, min_pixels, max_pixels) for f in frames])
    return VisionBlock(patches, grid, is_video)


def position_ids(
    input_ids: torch.Tensor,
    blocks: list[VisionBlock],
    video_token_id: int,
    image_token_id: int,
    tokens_per_second: float,
) -> torch.Tensor:
    """M-RoPE ids [3, 1, L] for a prompt mixing a video and images, by the rule of
    :func:`momentseg.model.lmm.mrope_position_ids` (video temporal id ⌊t · tokens_per_second⌋, images 0;
    text continues after the largest id)."""
    parts, cursor, next_id = [], 0, 0
    ids = input_ids.tolist()
    for block in blocks:
        token = video_token_id if block.is_video else image_token_id
        start = ids.index(token, cursor)
        parts.append((torch.arange(start - cursor) + next_id).expand(3, -1))
        ids_block = mrope_position_ids(
            torch.tensor(ids[start : start + block.tokens]),
            [block.grid],
            token,
            tokens_per_second if block.is_video else 0.0,
        )[:, 0]
        ids_block = ids_block + next_id + start - cursor
        parts.append(ids_block)
        next_id = int(ids_block.max()) + 1
        cursor = start + block.tokens
    parts.append((torch.arange(len(ids) - cursor) + next_id).expand(3, -1))
    return torch.cat(parts, dim=1).unsqueeze(1)


@dataclass
class PreparedSample:
    """One tokenised conversation with what its losses need.

    ``answer_positions`` index the answer tokens (their targets are ``input_ids`` there); TSG samples carry
    ``find_targets`` y_j per temporal patch; RefVOS samples carry SAM2-ready keyframes and their masks.
    """

    kind: str
    name: str
    inputs: dict[str, torch.Tensor]
    answer_positions: torch.Tensor
    find_targets: torch.Tensor | None = None
    sam_images: torch.Tensor | None = None
    masks: torch.Tensor | None = None


def tsg_question(query: str, style: str = "tsg") -> str:
    """The [FIND] question with the video tokens in place: ``tsg`` (the official TVG prompt = the paper's
    Table 16 first variant) or ``refvos`` (what the official RefVOS inference asks)."""
    return FIND_PROMPTS[style].replace(VIDEO, VIDEO_PLACEHOLDER).replace("{query}", query)


def refvos_question(expression: str, num_images: int) -> str:
    """The RefVOS question of the official inference, with the temporal tokens (the low-res video) where the
    inference leaves the literal "<video>" (temporal token injecting is for training only)."""
    return (
        SEG_PROMPTS["refvos"]
        .replace(VIDEO, VIDEO_PLACEHOLDER)
        .replace(IMAGE, IMAGE_PLACEHOLDER * num_images)
        .replace("{query}", expression)
    )


def conversation(question: str, answer: str, system_prompt: str | None) -> tuple[str, str]:
    """(prompt, answer) in xtuner's qwen_chat format; the answer ends with <|im_end|>, which is also learnt."""
    return chat(question, system_prompt), f"{answer}<|im_end|>"


def sample_indices(total: int, count: int) -> np.ndarray:
    """``count`` frames spread uniformly (floor of linspace, as the official code samples)."""
    return np.linspace(0, total - 1, min(total, count)).astype(int)


def find_targets(sampled: np.ndarray, fps: float, start: float, end: float) -> np.ndarray:
    """y_j per temporal patch: 1 when the patch (two consecutive sampled frames) lies in [start, end] s.

    A frame counts as inside when its centre time (k + ½) / fps is; a patch when at least half its frames are.
    """
    if len(sampled) % 2:
        sampled = np.append(sampled, sampled[-1])  # Qwen pads an odd frame count with the last frame
    inside = ((sampled + 0.5) / fps >= start) & ((sampled + 0.5) / fps <= end)
    return (inside.reshape(-1, 2).mean(1) >= 0.5).astype(np.float32)


@dataclass(frozen=True)
class SampleBuilder:
    """Turns entries into :class:`PreparedSample`s with the model's tokenizer and vision geometry."""

    tokenizer: Any
    video_token_id: int
    image_token_id: int
    tokens_per_second: float
    sam2_image_size: int
    recipe: SampleRecipe

    @classmethod
    def for_model(cls, model, recipe: SampleRecipe) -> SampleBuilder:
        config = model.lmm.model.config
        return cls(
            model.lmm.processor.tokenizer,
            config.video_token_id,
            config.image_token_id,
            float(config.vision_config.tokens_per_second),
            model.predictor.image_size,
            recipe,
        )

    def _answer(self, variants: tuple[str, ...], rng: np.random.Generator) -> str:
        return variants[0] if self.recipe.answer_variants == "first" else str(rng.choice(variants))

    def _tokenise(self, question: str, answer: str, blocks: list[VisionBlock]) -> tuple[dict, torch.Tensor]:
        """input_ids, position_ids and pixel tensors of prompt + answer; the answer's positions."""
        for block in blocks:
            placeholder = VIDEO_PLACEHOLDER if block.is_video else IMAGE_PLACEHOLDER
            pad = "<|video_pad|>" if block.is_video else "<|image_pad|>"
            question = question.replace(placeholder, f"<|vision_start|>{pad * block.tokens}<|vision_end|>", 1)
        prompt, answer = conversation(question, answer, self.recipe.system_prompt)
        prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        answer_ids = self.tokenizer.encode(answer, add_special_tokens=False)
        ids = torch.tensor(prompt_ids + answer_ids)
        positions = position_ids(
            ids[: len(prompt_ids)], blocks, self.video_token_id, self.image_token_id, self.tokens_per_second
        )
        answer_positions = (torch.arange(len(answer_ids)) + int(positions.max()) + 1).expand(3, 1, -1)
        inputs = {"input_ids": ids[None], "position_ids": torch.cat([positions, answer_positions], dim=2)}
        videos = [b for b in blocks if b.is_video]
        images = [b for b in blocks if not b.is_video]
        if videos:
            inputs["pixel_values_videos"] = torch.from_numpy(np.concatenate([b.patches for b in videos]))
            inputs["video_grid_thw"] = torch.tensor([b.grid for b in videos])
        if images:
            inputs["pixel_values"] = torch.from_numpy(np.concatenate([b.patches for b in images]))
            inputs["image_grid_thw"] = torch.tensor([b.grid for b in images])
        return inputs, torch.arange(len(prompt_ids), len(ids))

    def tsg(self, entry, rng: np.random.Generator, moment_frames: tuple[int, int] | None = None) -> PreparedSample:
        """The TSG conversation over ≤ tsg_frames low-res frames, answered with [FIND]."""
        recipe = self.recipe
        frames = entry.open_frames()
        sampled = sample_indices(len(frames), recipe.tsg_frames)
        video = vision_block(
            [downscale_to_budget(frames[int(i)], recipe.tsg_pixels) for i in sampled],
            recipe.tsg_min_pixels,
            recipe.tsg_pixels,
            is_video=True,
        )
        if moment_frames is not None:  # a moment given in frames (CVAT exports): seconds at the video's fps
            start, end = moment_frames[0] / frames.fps, (moment_frames[1] + 1) / frames.fps
        else:
            start, end = entry.start, entry.end
        query = entry.query if isinstance(entry, GroundingEntry) else entry.expression
        style = str(rng.choice(TSG_QUESTION_STYLES))
        inputs, answer_positions = self._tokenise(tsg_question(query, style), self._answer(FIND_ANSWERS, rng), [video])
        targets = find_targets(sampled, frames.fps, start, end)
        if video.grid[0] != len(targets):
            raise DataError(f"{entry.name}: {video.grid[0]} temporal patches but {len(targets)} targets")
        return PreparedSample("tsg", entry.name, inputs, answer_positions, find_targets=torch.from_numpy(targets))

    def refvos(self, entry: ReferringEntry, rng: np.random.Generator) -> PreparedSample:
        """The RefVOS conversation: temporal tokens + N random keyframes as images, answered with [SEG];
        the keyframes also go to SAM2 with their ground-truth masks."""
        recipe = self.recipe
        frames = entry.open_frames()
        total = len(frames)
        keyframes = np.sort(rng.choice(total, min(total, recipe.keyframes), replace=False))
        temporal = vision_block(
            [
                downscale_to_budget(frames[int(i)], recipe.temporal_pixels)
                for i in sample_indices(total, recipe.temporal_frames)
            ],
            recipe.temporal_min_pixels,
            recipe.temporal_pixels,
            is_video=True,
        )
        decoded = [frames[int(k)] for k in keyframes]
        images = [
            vision_block(
                [downscale_to_budget(f, recipe.image_pixels)],
                recipe.image_min_pixels,
                recipe.image_pixels,
                is_video=False,
            )
            for f in decoded
        ]
        inputs, answer_positions = self._tokenise(
            refvos_question(entry.expression, len(images)), self._answer(SEG_ANSWERS, rng), [temporal, *images]
        )
        masks = np.stack([entry.mask(int(k)) for k in keyframes])
        if masks.shape[1:] != decoded[0].shape[:2]:
            raise DataError(f"{entry.name}: masks are {masks.shape[1:]}, frames {decoded[0].shape[:2]}")
        sam_images = torch.stack([sam2_input(f, self.sam2_image_size) for f in decoded])
        return PreparedSample(
            "refvos", entry.name, inputs, answer_positions, sam_images=sam_images, masks=torch.from_numpy(masks)
        )

    def build(self, entry, rng: np.random.Generator) -> PreparedSample:
        """A TSG sample for a grounding entry; for a referring entry a RefVOS sample, or (half of the time,
        when the entry carries a moment, as CVAT exports do) a TSG sample on its moment."""
        if isinstance(entry, GroundingEntry):
            return self.tsg(entry, rng)
        if not entry.has_masks:
            raise DataError(f"{entry.name}: no ground-truth masks, it cannot be trained on")
        if entry.moment is not None and rng.random() < 0.5:
            return self.tsg(entry, rng, moment_frames=entry.moment)
        return self.refvos(entry, rng)
