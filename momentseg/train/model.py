"""The model as it trains: LoRA on the LMM's text layers, trainable [FIND]/[SEG] rows, the [FIND] head, the
[SEG] projector and SAM2's mask decoder; one forward gives the three losses. Frozen: the vision tower and
SAM2's image encoder (unless asked), the rest of the embeddings, SAM2's memory and prompt encoders.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration

from momentseg.data.entries import DataError
from momentseg.grounding import find_matching_loss, frame_query_similarity
from momentseg.model.checkpoint import MomentSegModel
from momentseg.model.heads import FindHead, SegProjector
from momentseg.model.lmm import QwenLMM
from momentseg.model.prompts import FIND_TOKEN, SEG_TOKEN
from momentseg.train.config import TrainableParts
from momentseg.train.losses import answer_loss, mask_loss
from momentseg.train.samples import PreparedSample

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

log = logging.getLogger(__name__)


def _layer(module: nn.Module | None) -> nn.Embedding | nn.Linear:
    """An input embedding or an LM head, as transformers returns them untyped."""
    if not isinstance(module, (nn.Embedding, nn.Linear)):
        raise TypeError(f"an embedding or a linear layer was expected, got {type(module).__name__}")
    return module


def _matrix(module: nn.Module | None) -> torch.Tensor:
    """The weight of an input embedding or an LM head."""
    return _layer(module).weight


def untie_output_embeddings(qwen: Qwen2_5_VLForConditionalGeneration) -> bool:
    """Give the LM head its own copy of a tied input embedding (the official checkpoints keep them apart:
    ``tie_word_embeddings`` false, the 3B's ``lm_head`` cloned at conversion). Tied, the trained [SEG] and
    [FIND] rows of one would overwrite the other's and the checkpoint could not be saved. True if it untied."""
    tied = bool(qwen.config.tie_word_embeddings or getattr(qwen.config.get_text_config(), "tie_word_embeddings", False))
    output, embedding = qwen.get_output_embeddings(), qwen.get_input_embeddings()
    shared = _matrix(output).data_ptr() == _matrix(embedding).data_ptr()
    for config in {id(c): c for c in (qwen.config, qwen.config.get_text_config())}.values():
        config.tie_word_embeddings = False
    if shared:
        output.weight = nn.Parameter(_matrix(embedding).detach().clone(), requires_grad=_matrix(output).requires_grad)
    if tied or shared:
        log.warning(
            "the base model ties its LM head to its input embedding: training unties them (as the official "
            "checkpoints are), so the [SEG] and [FIND] rows train in each and the checkpoint keeps both"
        )
    return tied or shared


class SpecialRows(nn.Module):
    """A frozen embedding (or output projection) whose rows for a few special tokens are trainable."""

    token_ids: torch.Tensor

    def __init__(self, base: nn.Embedding | nn.Linear, token_ids: list[int]):
        super().__init__()
        self.base = base
        self.register_buffer("token_ids", torch.tensor(token_ids), persistent=False)
        self.rows = nn.Parameter(base.weight[token_ids].detach().clone().float())

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if isinstance(self.base, nn.Embedding):
            match = x[..., None] == self.token_ids
            if match.any():
                picked = match.float() @ self.rows.to(out.dtype)
                out = torch.where(match.any(-1, keepdim=True), picked, out)
            return out
        special = x @ self.rows.to(x.dtype).T  # output logits of the special tokens
        return out.index_copy(-1, self.token_ids, special)

    def merged(self) -> nn.Embedding | nn.Linear:
        with torch.no_grad():
            self.base.weight[self.token_ids] = self.rows.to(self.base.weight.dtype)
        return self.base


def add_find_token(model: MomentSegModel) -> MomentSegModel:
    """Give a Sa2VA-layout model what the official layout has and it lacks: the [FIND] token (its embedding
    row drawn around the mean row when the vocabulary must grow), ``find_hidden_fcs`` and ``img_hidden_fcs``
    (the latter untrained: the official code reads it only with ``perframe_seg``)."""
    untie_output_embeddings(model.lmm.model)
    hidden = model.lmm.hidden_size
    dtype = next(model.lmm.model.parameters()).dtype
    if getattr(model, "image_projector", None) is None:
        model = dataclasses.replace(model, image_projector=SegProjector(hidden).to(model.device, dtype))
    if model.find_head is not None:
        return model
    tokenizer = model.lmm.processor.tokenizer
    tokenizer.add_tokens([FIND_TOKEN], special_tokens=True)
    qwen = model.lmm.model
    find_id = tokenizer.convert_tokens_to_ids(FIND_TOKEN)
    rows = _matrix(qwen.get_input_embeddings()).shape[0]
    if find_id >= rows:  # the official vocabulary has spare rows; a smaller one grows by the mean row
        qwen.resize_token_embeddings(find_id + 1, mean_resizing=False)
        with torch.no_grad():
            for matrix in (_matrix(qwen.get_input_embeddings()), _matrix(qwen.get_output_embeddings())):
                matrix[rows:] = matrix[:rows].mean(0)
    head = FindHead(hidden).to(model.device, dtype)
    lmm = QwenLMM(qwen, model.lmm.processor, system_prompt=getattr(model.lmm, "system_prompt", None))
    info = dataclasses.replace(model.info, layout="momentseg", heads=("seg", "find"))
    return dataclasses.replace(model, lmm=lmm, find_head=head, info=info)


class TrainableMomentSeg(nn.Module):
    """The trainable model; ``forward(sample)`` returns ``loss`` and its parts (absent parts are None)."""

    def __init__(self, model: MomentSegModel, parts: TrainableParts):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.parts = parts
        self.base = model
        qwen = model.lmm.model
        tokenizer = model.lmm.processor.tokenizer
        self.find_id = tokenizer.convert_tokens_to_ids(FIND_TOKEN)
        self.seg_id = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
        self.video_token_id = qwen.config.video_token_id
        for parameter in qwen.parameters():
            parameter.requires_grad_(False)
        self.qwen: nn.Module = qwen  # LoRA goes into qwen's layers in place: it stays the inner model
        if parts.lora_rank > 0:
            config = LoraConfig(
                r=parts.lora_rank,
                lora_alpha=parts.lora_alpha,
                lora_dropout=parts.lora_dropout,
                target_modules=LORA_TARGETS,
            )
            self.qwen = get_peft_model(qwen, config)
        inner = qwen
        special = [self.seg_id, self.find_id]
        inner.set_input_embeddings(SpecialRows(_layer(inner.get_input_embeddings()), special))
        inner.set_output_embeddings(SpecialRows(_layer(inner.get_output_embeddings()), special))
        self.inner = inner
        if parts.gradient_checkpointing:  # recompute the LMM's activations in backward: memory for time
            inner.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if model.find_head is None:
            raise DataError("the model has no [FIND] head to train (add_find_token gives it one)")
        self.seg_projector = model.seg_projector.requires_grad_(True)
        self.find_head = model.find_head.requires_grad_(True)
        self.predictor = model.predictor.requires_grad_(False)
        self.predictor.sam_mask_decoder.requires_grad_(True)
        if parts.train_image_encoder:
            self.predictor.image_encoder.requires_grad_(True)
        if parts.train_vision_tower:  # after peft, which freezes every weight it did not add
            inner.model.visual.requires_grad_(True)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors by name: what a resumable training checkpoint holds."""
        return {name: p.detach().cpu() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        if set(state) != names:
            differ = sorted(set(state) ^ names)
            raise DataError(
                f"the saved training state does not match this model and options ({len(differ)} "
                f"tensors differ, e.g. {differ[0]}): resume with the --base and options it was saved with"
            )
        parameters = dict(self.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                parameters[name].copy_(tensor)

    def decode_masks(self, images: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """SAM2's first-frame decode of every keyframe with the [SEG] prompt (no memory, as Sa2VA trains):
        image features + no-memory embedding, sparse prompt [padding point, p], best of the 3 masks by
        predicted IoU. Returns low-res logits [N, h, w]."""
        predictor = self.predictor
        with torch.set_grad_enabled(self.parts.train_image_encoder and self.training):
            backbone = predictor.forward_image(images)
            _, features, _, sizes = predictor._prepare_backbone_features(backbone)
        count = images.shape[0]
        image_embedding = (features[-1] + predictor.no_mem_embed).permute(1, 2, 0).reshape(count, -1, *sizes[-1])
        high_res = [f.permute(1, 2, 0).reshape(count, -1, *s) for f, s in zip(features[:-1], sizes[:-1], strict=True)]
        points = torch.zeros(count, 1, 2, device=images.device)
        labels = -torch.ones(count, 1, dtype=torch.int32, device=images.device)
        sparse, dense = predictor.sam_prompt_encoder(points=(points, labels), boxes=None, masks=None)
        sparse = torch.cat([sparse, prompt.to(sparse.dtype).reshape(1, 1, -1).expand(count, -1, -1)], dim=1)
        masks, ious, _, _ = predictor.sam_mask_decoder(
            image_embeddings=image_embedding,
            image_pe=predictor.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=high_res,
        )
        best = ious.argmax(-1)
        return masks[torch.arange(count, device=masks.device), best]

    def forward(self, sample: PreparedSample) -> dict[str, torch.Tensor | None]:
        parts = self.parts
        device = next(self.seg_projector.parameters()).device
        inputs = {k: v.to(device) for k, v in sample.inputs.items()}
        hidden = self.inner.model(**inputs).last_hidden_state[0]
        ids = inputs["input_ids"][0]
        positions = sample.answer_positions.to(device)
        loss_text = answer_loss(self.inner.lm_head(hidden[positions - 1]), ids[positions])
        loss_find = loss_mask = None
        if sample.kind == "tsg":
            grid_t = int(inputs["video_grid_thw"][0, 0])
            video = hidden[ids == self.video_token_id]
            frame_tokens = self.find_head(video.reshape(grid_t, -1, video.shape[-1])).mean(1)
            find = self.find_head(hidden[(ids == self.find_id).nonzero()[0, 0]])
            logits = frame_query_similarity(find, frame_tokens, parts.tau)
            assert sample.find_targets is not None, "a TSG sample carries its find targets"
            targets = sample.find_targets.to(device)
            loss_find = find_matching_loss(logits, targets, positive_weight=parts.positive_weight)
        else:
            prompt = self.seg_projector(hidden[(ids == self.seg_id).nonzero()[0, 0]])
            assert sample.sam_images is not None and sample.masks is not None, "a RefVOS sample carries its masks"
            logits = self.decode_masks(sample.sam_images.to(device), prompt.float())
            loss_mask = mask_loss(
                logits,
                sample.masks.to(device),
                bce_weight=parts.mask_bce_weight,
                dice_weight=parts.mask_dice_weight,
                num_points=parts.mask_points,
            )
        loss = parts.text_weight * loss_text
        if loss_find is not None:
            loss = loss + parts.find_weight * loss_find
        if loss_mask is not None:
            loss = loss + parts.mask_weight * loss_mask
        return {"loss": loss, "loss_text": loss_text, "loss_find": loss_find, "loss_mask": loss_mask}

    def merged_model(self) -> MomentSegModel:
        """The trained MomentSegModel: LoRA merged into the text layers, special rows written back."""
        inner = self.inner
        from peft import PeftModel

        input_rows, output_rows = inner.get_input_embeddings(), inner.get_output_embeddings()
        assert isinstance(input_rows, SpecialRows) and isinstance(output_rows, SpecialRows), "set in __init__"
        inner.set_input_embeddings(input_rows.merged())
        inner.set_output_embeddings(output_rows.merged())
        if isinstance(self.qwen, PeftModel):
            self.qwen.merge_and_unload()  # into inner's own layers, in place
        qwen = inner
        qwen.eval()
        base = self.base
        lmm = QwenLMM(qwen, base.lmm.processor, system_prompt=getattr(base.lmm, "system_prompt", None))
        info = dataclasses.replace(base.info, layout="official", heads=("seg", "find"))
        return dataclasses.replace(
            base,
            lmm=lmm,
            seg_projector=self.seg_projector.eval(),
            find_head=self.find_head.eval(),
            predictor=self.predictor.eval(),
            info=info,
        )
