"""SAM2 as MomentSeg's mask decoder and tracker, on the real ``sam2`` video predictor.

``MomentSAM2VideoPredictor`` adds to sam2 1.1.0's predictor only what the official MomentSeg SAM2 does
differently (``docs/official.md`` §5-6): the [SEG] prompt p as an extra sparse
token after the prompt encoder's embeddings, on keyframes and on every tracked frame; masks kept when
the object score is negative; the decoder's predicted IoU kept per frame. ``Sam2Tracker`` is the BAP
``Tracker`` over it: frames resized to SAM2's square input like the official ``DirectResize`` (PIL, no
aspect kept), and the image encoder and propagation under bfloat16 autocast when the model runs in
bfloat16 (as sam2's examples and the official code do on the GPU).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from sam2.build_sam import build_sam2_video_predictor
from sam2.sam2_video_predictor import SAM2VideoPredictor

from momentseg.model.budgets import MASK_UPSAMPLING
from momentseg.model.sam2_config import PROJECT_CONFIG_PREFIX, project_config_file
from momentseg.propagation import TrackedFrame

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# memory never reaches further back than max_obj_ptrs_in_encoder (16) tracked frames
MEMORY_REACH = 16
OBJECT_ID = 1

# The decoder settings the official SAM2 (and Sa2VA's) runs with (dynamic multimask by stability)
SA2VA_DECODER_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]


def sam2_autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """bfloat16/float16 autocast for SAM2 on any device (sam2 keeps float32 weights); none for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class MomentSAM2VideoPredictor(SAM2VideoPredictor):
    """sam2's video predictor with the [SEG] prompt token, unblanked masks and the predicted IoU kept."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_sparse_prompt: torch.Tensor | None = None
        self.keep_masks_without_object = True
        self.last_iou: torch.Tensor | None = None
        self._raw_masks: torch.Tensor | None = None
        self.sam_prompt_encoder.register_forward_hook(self._append_extra_sparse_prompt)
        self.sam_mask_decoder.register_forward_hook(self._keep_raw_masks)

    def _append_extra_sparse_prompt(self, module, inputs, outputs):
        """p after the sparse embeddings (the padding point's), as the official S2:3306-3310."""
        if self.extra_sparse_prompt is None:
            return outputs
        sparse, dense = outputs
        extra = self.extra_sparse_prompt.to(sparse.dtype).expand(sparse.shape[0], -1, -1)
        return torch.cat([sparse, extra], dim=1), dense

    def last_iou_value(self) -> float:
        """The best predicted IoU of the last decode."""
        if self.last_iou is None:
            raise RuntimeError("SAM2 has decoded no mask yet")
        return float(self.last_iou.item())

    def _keep_raw_masks(self, module, inputs, outputs):
        self._raw_masks = outputs[0]

    def _forward_sam_heads(
        self, backbone_features, point_inputs=None, mask_inputs=None, high_res_features=None, multimask_output=False
    ):
        out = super()._forward_sam_heads(
            backbone_features, point_inputs, mask_inputs, high_res_features, multimask_output
        )
        low_multi, high_multi, ious, low, high, obj_ptr, object_score_logits = out
        self.last_iou = ious.max(-1).values
        raw, self._raw_masks = self._raw_masks, None
        if self.keep_masks_without_object and self.pred_obj_scores and bool((object_score_logits <= 0).any()):
            # the official code does not blank masks when the object score is negative (S2:3326-3337)
            assert raw is not None, "the mask decoder's forward hook keeps its masks"
            low_multi = raw.float()
            high_multi = F.interpolate(
                low_multi, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
            if multimask_output:
                best = torch.argmax(ious, dim=-1)
                rows = torch.arange(low_multi.shape[0], device=low_multi.device)
                low, high = low_multi[rows, best].unsqueeze(1), high_multi[rows, best].unsqueeze(1)
            else:
                low, high = low_multi, high_multi
        return low_multi, high_multi, ious, low, high, obj_ptr, object_score_logits

    def _use_mask_as_output(self, *args, **kwargs):
        out = super()._use_mask_as_output(*args, **kwargs)
        self.last_iou = out[2].max(-1).values  # the given mask is taken as exact (IoU 1)
        return out


def build_predictor(
    config: str, image_size: int, device: str | torch.device = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> MomentSAM2VideoPredictor:
    """Random-weight ``MomentSAM2VideoPredictor`` from a sam2 config: one packaged with sam2, or one of this
    project's (``momentseg:…``, composed the same way from its YAML file). Weights are loaded later."""
    overrides = [
        f"++model._target_={MomentSAM2VideoPredictor.__module__}.{MomentSAM2VideoPredictor.__qualname__}",
        f"++model.image_size={image_size}",
        *SA2VA_DECODER_OVERRIDES,
        *overrides,
    ]
    if not config.startswith(PROJECT_CONFIG_PREFIX):
        return build_sam2_video_predictor(
            config, ckpt_path=None, device=str(device), apply_postprocessing=False, hydra_overrides_extra=overrides
        )
    cfg = OmegaConf.merge(
        OmegaConf.load(str(project_config_file(config))),
        OmegaConf.from_dotlist([o.removeprefix("++") for o in overrides]),
    )
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True).to(device).eval()


def sam2_input(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """One RGB uint8 frame as SAM2's input: PIL resize to image_size² without keeping the aspect
    (official DirectResize, bicubic), /255, ImageNet mean/std; float32 [3, S, S] on the CPU."""
    square = np.array(Image.fromarray(frame).resize((image_size, image_size), Image.Resampling.BICUBIC))
    image = torch.from_numpy(square).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std


class LazyFrames:
    """Frames resized to SAM2's square input and normalised on access: nothing is held at 1024²."""

    def __init__(self, frames, image_size: int):
        self.frames = frames
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        return sam2_input(self.frames[index], self.image_size)


@dataclass(frozen=True)
class DecodedMask:
    """A keyframe's [SEG] decode: the mask at frame resolution, its scores and SAM2's output (memory)."""

    mask: np.ndarray
    iou: float
    object_score_logit: float
    output: dict[str, Any]


class Sam2Tracker:
    """The BAP ``Tracker`` over a ``MomentSAM2VideoPredictor`` and one object.

    ``frames`` is any sequence of RGB uint8 [H, W, 3] arrays, decoded when SAM2 visits them. ``prompt``
    is the [SEG] embedding p given to the decoder on tracked frames (the official code does). ``dtype``
    is the autocast precision (default: bfloat16 on CUDA, float32 elsewhere). ``mask_upsampling``
    "official" takes SAM2's 256² logits to image_size² and then to the frame size (both bilinear), as
    the official code; "direct" resizes once (sam2's own video output).
    """

    def __init__(
        self,
        predictor: MomentSAM2VideoPredictor,
        frames,
        *,
        prompt: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        mask_upsampling: str = "official",
        on_frame: Callable[[], None] | None = None,
    ):
        if mask_upsampling not in MASK_UPSAMPLING:
            raise ValueError(f"mask_upsampling must be one of {MASK_UPSAMPLING}, got {mask_upsampling!r}")
        self.predictor = predictor
        height, width = frames[0].shape[:2]
        device = predictor.device
        self.dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        self.prompt = None if prompt is None else self._as_prompt(prompt)
        self.mask_upsampling = mask_upsampling
        size = predictor.image_size
        # a FrameStore keeps each frame's SAM2 input in its cache and prefetches it (momentseg.video)
        images = (
            frames.view(f"sam2-input-{size}", partial(sam2_input, image_size=size))
            if hasattr(frames, "view")
            else LazyFrames(frames, size)
        )
        self.state = {
            "images": images,
            "num_frames": len(frames),
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": height,
            "video_width": width,
            "device": device,
            "storage_device": device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        self.object_index = predictor._obj_id_to_idx(self.state, OBJECT_ID)
        self.on_frame = on_frame

    def _as_prompt(self, prompt: torch.Tensor) -> torch.Tensor:
        return prompt.reshape(1, 1, -1).to(self.predictor.device, torch.float32)

    def _autocast(self) -> AbstractContextManager:
        return sam2_autocast(self.predictor.device, self.dtype)

    @property
    def memory(self) -> dict:
        """SAM2's per-object memory: ``cond_frame_outputs`` and ``non_cond_frame_outputs`` by frame."""
        return self.state["output_dict_per_obj"][self.object_index]

    @property
    def _temporary(self) -> dict:
        return self.state["temp_output_dict_per_obj"][self.object_index]

    def video_mask(self, low_res_logits: torch.Tensor) -> np.ndarray:
        """The final mask at frame resolution: logits > 0 (σ > 0.5) after bilinear upsampling (MM:780-784)."""
        logits = low_res_logits.to(self.predictor.device, torch.float32)
        if self.mask_upsampling == "official":
            size = self.predictor.image_size
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        frame_size = (self.state["video_height"], self.state["video_width"])
        logits = F.interpolate(logits, size=frame_size, mode="bilinear", align_corners=False)
        return (logits[0, 0] > 0).cpu().numpy()

    @torch.inference_mode()
    def decode_prompt(self, frame: int, prompt: torch.Tensor) -> DecodedMask:
        """The [SEG] mask at ``frame`` from image features alone (no memory), as an initial conditioning frame."""
        predictor = self.predictor
        predictor.extra_sparse_prompt = self._as_prompt(prompt)
        try:
            with self._autocast():
                out, _ = predictor._run_single_frame_inference(
                    inference_state=self.state,
                    output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                    frame_idx=frame,
                    batch_size=1,
                    is_init_cond_frame=True,
                    point_inputs=None,
                    mask_inputs=None,
                    reverse=False,
                    run_mem_encoder=False,
                )
        finally:
            predictor.extra_sparse_prompt = None
        return DecodedMask(
            self.video_mask(out["pred_masks"]),
            predictor.last_iou_value(),
            float(out["object_score_logits"].item()),
            out,
        )

    def reset(self) -> None:
        self.predictor._reset_tracking_results(self.state)

    @torch.inference_mode()
    def condition(self, frame: int, mask) -> None:
        """A keyframe's decode (``DecodedMask``) or a person's mask (bool [H, W]) as a conditioning frame."""
        if isinstance(mask, DecodedMask):
            self._temporary["cond_frame_outputs"][frame] = mask.output
            return
        with self._autocast():
            self.predictor.add_new_mask(self.state, frame, OBJECT_ID, np.asarray(mask, dtype=bool))

    @torch.inference_mode()
    def track(self, frame: int, *, reverse: bool) -> TrackedFrame:
        predictor = self.predictor
        step = -1 if reverse else 1
        predictor.extra_sparse_prompt = self.prompt
        try:
            with self._autocast():
                if any(self._temporary.values()):
                    predictor.propagate_in_video_preflight(self.state)
                out, low_res = predictor._run_single_frame_inference(
                    inference_state=self.state,
                    output_dict=self.memory,
                    frame_idx=frame,
                    batch_size=1,
                    is_init_cond_frame=False,
                    point_inputs=None,
                    mask_inputs=None,
                    reverse=reverse,
                    run_mem_encoder=True,
                )
        finally:
            predictor.extra_sparse_prompt = None
        self.memory["non_cond_frame_outputs"][frame] = out
        self.state["frames_tracked_per_obj"][self.object_index][frame] = {"reverse": reverse}
        # SAM2 never looks further back than MEMORY_REACH tracked frames: drop what it cannot reach
        self.memory["non_cond_frame_outputs"].pop(frame - step * MEMORY_REACH, None)
        result = TrackedFrame(
            frame, self.video_mask(low_res), predictor.last_iou_value(), float(out["object_score_logits"].item())
        )
        if self.on_frame is not None:
            self.on_frame()
        return result

    def clear_around(self, frame: int, reach: int | None) -> list[int]:
        tracked = self.memory["non_cond_frame_outputs"]
        removed = sorted(f for f in tracked if reach is None or abs(f - frame) <= reach)
        for f in removed:
            del tracked[f]
        return removed
