"""Training options: the official recipe's defaults (paper App. B.2 / Table 15, official configs), each
overridable from a YAML file and then from the command line. Torch-free: ``momentseg``'s parser reads it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path

from momentseg.data.entries import DataError
from momentseg.errors import plain_reason
from momentseg.model.prompts import SYSTEM_PROMPT


@dataclass(frozen=True)
class TrainableParts:
    """What trains and the loss weights: LoRA r 128 / α 256 / dropout 0.05 on the LMM's text layers,
    τ 0.07 and λ_p 2.0 of the [FIND] loss, mask loss BCE 2.0 + Dice 0.5 on 112² sampled points."""

    lora_rank: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    train_image_encoder: bool = False
    train_vision_tower: bool = False
    tau: float = 0.07
    positive_weight: float = 2.0
    find_weight: float = 1.0
    text_weight: float = 1.0
    mask_weight: float = 1.0
    mask_bce_weight: float = 2.0
    mask_dice_weight: float = 0.5
    mask_points: int = 112 * 112
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class SampleRecipe:
    """Frame counts and pixel budgets of one training sample: TSG frames ≤ 60, temporal-token frames ≤ 50,
    5 RefVOS keyframes (paper Table 15, official configs)."""

    tsg_frames: int = 60
    temporal_frames: int = 50
    keyframes: int = 5
    tsg_min_pixels: int = 4 * 4 * 28 * 28
    tsg_pixels: int = 8 * 8 * 28 * 28
    temporal_min_pixels: int = 1 * 1 * 28 * 28
    temporal_pixels: int = 4 * 4 * 28 * 28
    image_min_pixels: int = 4 * 4 * 28 * 28
    image_pixels: int = 16 * 16 * 28 * 28
    system_prompt: str | None = SYSTEM_PROMPT
    # "all": random answers of the lists; "first": "It is [FIND]." / "It is [SEG]." (what inference forces).
    # Either way both [FIND] questions (the TSG evaluation's and the RefVOS inference's) are drawn
    answer_variants: str = "all"


@dataclass(frozen=True)
class TrainConfig(SampleRecipe, TrainableParts):
    """Every option of a run, flat (YAML keys and flags): the run's own below, plus the fields of
    :class:`TrainableParts` and :class:`SampleRecipe`."""

    base: str = ""
    data: list[str] = field(default_factory=list)
    out: str = "train_out"
    device: str | None = None
    # optimisation (AdamW β = (0.9, 0.999), wd 0.05, lr 4e-5, warm-up 5 %, batch 2)
    max_steps: int = 1000
    batch_size: int = 2
    grad_accumulation: int = 1
    lr: float = 4e-5
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    seed: int = 0
    # the micro-steps of one optimizer step draw expressions of one clip (its objects in turn, same keyframes),
    # so a model that ignores the sentence cannot lower the mask loss of the step
    group_expressions: bool = False
    save_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 2

    def parts(self) -> TrainableParts:
        return TrainableParts(**{f.name: getattr(self, f.name) for f in fields(TrainableParts)})

    def recipe(self) -> SampleRecipe:
        return SampleRecipe(**{f.name: getattr(self, f.name) for f in fields(SampleRecipe)})

    def validate(self) -> TrainConfig:
        if not self.base:
            raise DataError("give --base: the checkpoint to start from (Sa2VA or MomentSeg layout)")
        if not self.data:
            raise DataError("give at least one --data KIND=ROOT[:WEIGHT]")
        for name in ("max_steps", "batch_size", "grad_accumulation", "save_every", "keyframes", "tsg_frames"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.answer_variants not in ("all", "first"):
            raise DataError(f"answer_variants must be 'all' or 'first', got '{self.answer_variants}'")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise DataError(f"mixed_precision must be auto, no, bf16 or fp16, got '{self.mixed_precision}'")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: dict) -> TrainConfig:
    """Defaults, then the YAML file's keys, then the command line's (``None`` = not given)."""
    import yaml

    values: dict = {}
    if path:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise DataError(f"cannot read the config '{path}': {plain_reason(error)}") from None
        if not isinstance(values, dict):
            raise DataError(f"the config '{path}' must be a mapping of option: value")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DataError(f"unknown option(s) in '{path}': {', '.join(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None and k in known})
    return TrainConfig(**values)
