"""SAM2 as MomentSeg's mask decoder and tracker, on the real ``sam2`` video predictor.

``MomentSAM2VideoPredictor`` adds to sam2 1.1.0's predictor only what MomentSeg needs: the [SEG]
prompt as an extra sparse token in the mask decoder (Sa2VA's path), the decoder's predicted IoU kept
per frame (BAP's S^t and S^p), and an inference state over lazily decoded frames. ``Sam2Tracker`` is
the BAP ``Tracker`` over it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Collection, Iterator

import cv2
import numpy as np
import torch
from sam2.build_sam import build_sam2_video_predictor
from sam2.sam2_video_predictor import SAM2VideoPredictor

from momentseg.propagation import TrackedFrame

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# memory never reaches further back than max_obj_ptrs_in_encoder (16) tracked frames
MEMORY_REACH = 16
OBJECT_ID = 1

# The decoder settings Sa2VA's SAM2 runs with (dynamic multimask by stability)
SA2VA_DECODER_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]


class MomentSAM2VideoPredictor(SAM2VideoPredictor):
    """sam2's video predictor that takes an extra sparse prompt token and remembers the predicted IoU."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_sparse_prompt: torch.Tensor | None = None
        self.last_iou: torch.Tensor | None = None
        self.sam_prompt_encoder.register_forward_hook(self._append_extra_sparse_prompt)

    def _append_extra_sparse_prompt(self, module, inputs, outputs):
        if self.extra_sparse_prompt is None:
            return outputs
        sparse, dense = outputs
        extra = self.extra_sparse_prompt.to(sparse.dtype).expand(sparse.shape[0], -1, -1)
        return torch.cat([sparse, extra], dim=1), dense

    def _forward_sam_heads(self, *args, **kwargs):
        out = super()._forward_sam_heads(*args, **kwargs)
        self.last_iou = out[2].max(-1).values
        return out

    def _use_mask_as_output(self, *args, **kwargs):
        out = super()._use_mask_as_output(*args, **kwargs)
        self.last_iou = out[2].max(-1).values  # the given mask is taken as exact (IoU 1)
        return out


def build_predictor(config: str, image_size: int, device: str | torch.device = "cpu") -> MomentSAM2VideoPredictor:
    """Random-weight ``MomentSAM2VideoPredictor`` from a packaged sam2 config (weights are loaded later)."""
    overrides = [
        f"++model._target_={MomentSAM2VideoPredictor.__module__}.{MomentSAM2VideoPredictor.__qualname__}",
        f"++model.image_size={image_size}",
        *SA2VA_DECODER_OVERRIDES,
    ]
    return build_sam2_video_predictor(
        config, ckpt_path=None, device=str(device), apply_postprocessing=False, hydra_overrides_extra=overrides
    )


class LazyFrames:
    """Frames resized to SAM2's square input and normalised on access: nothing is held at 1024²."""

    def __init__(self, frames, image_size: int):
        self.frames = frames
        self.image_size = image_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        rgb = cv2.resize(self.frames[index], (self.image_size, self.image_size), interpolation=cv2.INTER_CUBIC)
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
        return (image - self.mean) / self.std


@dataclass(frozen=True)
class DecodedMask:
    """A mask the decoder produced with its scores: S = IoU · σ(o)."""

    mask: np.ndarray
    iou: float
    object_score_logit: float


class Sam2Tracker:
    """The BAP ``Tracker`` over a ``MomentSAM2VideoPredictor`` and one object.

    ``frames`` is any sequence of RGB uint8 [H, W, 3] arrays; each is decoded when SAM2 visits it. Tracked
    frames' memory older than SAM2 can reach is dropped as tracking goes, so state stays bounded in T.
    """

    def __init__(self, predictor: MomentSAM2VideoPredictor, frames, *, on_frame: Callable[[], None] | None = None):
        self.predictor = predictor
        height, width = frames[0].shape[:2]
        device = predictor.device
        self.state = {
            "images": LazyFrames(frames, predictor.image_size),
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

    @property
    def memory(self) -> dict:
        """SAM2's per-object memory: ``cond_frame_outputs`` and ``non_cond_frame_outputs`` by frame."""
        return self.state["output_dict_per_obj"][self.object_index]

    def _to_video_mask(self, low_res_logits: torch.Tensor) -> np.ndarray:
        _, video_logits = self.predictor._get_orig_video_res_output(self.state, low_res_logits)
        return (video_logits[0, 0] > 0).cpu().numpy()

    @torch.inference_mode()
    def decode_prompt(self, frame: int, prompt: torch.Tensor) -> DecodedMask:
        """The [SEG] mask at ``frame`` from image features alone (no memory), as for a first prompt."""
        predictor = self.predictor
        predictor.extra_sparse_prompt = prompt.reshape(1, 1, -1).to(predictor.device, torch.float32)
        try:
            out, _ = predictor._run_single_frame_inference(
                inference_state=self.state,
                output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                frame_idx=frame, batch_size=1, is_init_cond_frame=True, point_inputs=None, mask_inputs=None,
                reverse=False, run_mem_encoder=False,
            )
        finally:
            predictor.extra_sparse_prompt = None
        return DecodedMask(
            self._to_video_mask(out["pred_masks"]),
            float(predictor.last_iou.item()),
            float(out["object_score_logits"].item()),
        )

    @torch.inference_mode()
    def condition(self, frame: int, mask) -> None:
        self.predictor.add_new_mask(self.state, frame, OBJECT_ID, np.asarray(mask, dtype=bool))

    @torch.inference_mode()
    def propagate(self, start: int, *, reverse: bool) -> Iterator[TrackedFrame]:
        predictor = self.predictor
        predictor.propagate_in_video_preflight(self.state)
        step = -1 if reverse else 1
        tracked = self.state["frames_tracked_per_obj"][self.object_index]
        frame = start + step
        while 0 <= frame < self.state["num_frames"]:
            out, low_res = predictor._run_single_frame_inference(
                inference_state=self.state, output_dict=self.memory, frame_idx=frame, batch_size=1,
                is_init_cond_frame=False, point_inputs=None, mask_inputs=None, reverse=reverse,
                run_mem_encoder=True,
            )
            self.memory["non_cond_frame_outputs"][frame] = out
            tracked[frame] = {"reverse": reverse}
            # SAM2 never looks further back than MEMORY_REACH tracked frames: drop what it cannot reach
            self.memory["non_cond_frame_outputs"].pop(frame - step * MEMORY_REACH, None)
            result = TrackedFrame(
                frame, self._to_video_mask(low_res), float(predictor.last_iou.item()),
                float(out["object_score_logits"].item()),
            )
            if self.on_frame is not None:
                self.on_frame()
            yield result
            frame += step

    def clear_memory(self, keep: Collection[int]) -> None:
        keep = set(keep)
        self.memory["non_cond_frame_outputs"].clear()
        for frame in [f for f in self.memory["cond_frame_outputs"] if f not in keep]:
            del self.memory["cond_frame_outputs"][frame]
            self.state["mask_inputs_per_obj"][self.object_index].pop(frame, None)
        tracked = self.state["frames_tracked_per_obj"][self.object_index]
        for frame in [f for f in tracked if f not in keep]:
            del tracked[frame]
