"""The official MomentSeg checkpoint layout (the authors' Hugging Face conversion, transformers 4.51).

``config.json`` has ``model_type: momentseg_chat`` with every Qwen2.5-VL field flattened at the top level
in the transformers-4.51 layout (``rope_scaling``, ``vision_config`` with ``in_chans``…), plus the base
model's config again under ``mllm_config``, its folder under ``mllm_path``, the pixel budgets and the chat
template's name. Weight keys (``docs/official.md`` §1):

| on disk | module |
|---|---|
| ``model.{embed_tokens,layers.*,norm}`` | Qwen2.5-VL text model (``model.language_model.*`` in transformers 5) |
| ``visual.*`` | Qwen2.5-VL vision tower (``model.visual.*``) |
| ``lm_head.weight`` | LM head |
| ``text_hidden_fcs.*`` | :class:`SegProjector` |
| ``find_hidden_fcs.*`` | :class:`FindHead` (Linear → ReLU → Linear) |
| ``img_hidden_fcs.*`` | :class:`SegProjector`-shaped; read only with ``perframe_seg`` |
| ``grounding_encoder.sam2_model.*`` | SAM2 2.0 (``.g_weight`` is sam2's ``.gamma``) |
"""

from __future__ import annotations

from transformers import Qwen2_5_VLConfig

from momentseg.model.qwen_config import text_config, vision_config

OFFICIAL_MODEL_TYPE = "momentseg_chat"
# what the authors' MomentSegConfig adds to Qwen2.5-VL's fields; none of it shapes a weight
OFFICIAL_EXTRA_FIELDS = (
    "architectures",
    "auto_map",
    "model_type",
    "mllm_config",
    "mllm_path",
    "template",
    "perframe_seg",
    "min_pixels",
    "max_pixels",
    "video_min_pixels",
    "video_max_pixels",
    "sam2_image_size",
    # InternVL-era defaults the authors' config class still carries
    "downsample_ratio",
    "dynamic_image_size",
    "force_image_size",
    "max_dynamic_patch",
    "min_dynamic_patch",
    "pad2square",
    "ps_version",
    "select_layer",
    "use_backbone_lora",
    "use_llm_lora",
    "use_thumbnail",
    "_commit_hash",
    "transformers_version",
)
# the released configs (configs/momentseg-{3B,7B}.py): image and video pixel budgets of training
OFFICIAL_PIXEL_BUDGETS = {
    "min_pixels": 4 * 4 * 28 * 28,
    "max_pixels": 16 * 16 * 28 * 28,
    "video_min_pixels": 1 * 1 * 28 * 28,
    "video_max_pixels": 4 * 4 * 28 * 28,
}
OFFICIAL_AUTO_MAP = {
    "AutoConfig": "configuration_momentseg_chat.MomentSegConfig",
    "AutoModel": "modeling_momentseg.MomentsegModel",
    "AutoModelForCausalLM": "modeling_momentseg.MomentsegModel",
}
# the image size the official code builds SAM2 at; ``sam2_image_size`` (ours) overrides it for test models
OFFICIAL_SAM2_IMAGE_SIZE = 1024
TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "use_cache",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
)
VISION_FIELDS = (
    "depth",
    "hidden_size",
    "intermediate_size",
    "num_heads",
    "hidden_act",
    "patch_size",
    "spatial_merge_size",
    "temporal_patch_size",
    "tokens_per_second",
    "window_size",
    "out_hidden_size",
    "fullatt_block_indexes",
)
TOKEN_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def qwen_config_from_official(config: dict) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL's transformers-5 config from the flattened 4.51 fields (transformers converts them)."""
    fields = {k: v for k, v in config.items() if k not in OFFICIAL_EXTRA_FIELDS}
    fields["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    return Qwen2_5_VLConfig.from_dict(fields)


def official_config(
    qwen: Qwen2_5_VLConfig,
    *,
    sam2_image_size: int = OFFICIAL_SAM2_IMAGE_SIZE,
    dtype: str = "float32",
    mllm_path: str = "./pretrained/Qwen2.5-VL",
) -> dict:
    """``config.json`` in the official layout for ``qwen``'s geometry (flattened, transformers-4.51 names)."""
    text, vision = text_config(qwen), vision_config(qwen)
    rope = text.rope_parameters or {}
    theta, section = rope.get("rope_theta"), rope.get("mrope_section")
    if theta is None or section is None:
        raise ValueError("the Qwen2.5-VL text config has no M-RoPE parameters (rope_theta, mrope_section)")
    flat = {name: getattr(text, name) for name in TEXT_FIELDS}
    flat.update(
        rope_theta=theta,
        rope_scaling={"mrope_section": list(section), "rope_type": "default", "type": "default"},
        vision_config={
            **{name: getattr(vision, name) for name in VISION_FIELDS},
            "in_chans": vision.in_channels,
            "in_channels": vision.in_channels,
            "model_type": "qwen2_5_vl",
        },
        **{name: getattr(qwen, name) for name in TOKEN_FIELDS},
        tie_word_embeddings=False,
        torch_dtype=dtype,
    )
    mllm = {
        **flat,
        "model_type": "qwen2_5_vl",
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "_name_or_path": mllm_path,
    }
    config = {
        "architectures": ["MomentsegModel"],
        "auto_map": OFFICIAL_AUTO_MAP,
        "model_type": OFFICIAL_MODEL_TYPE,
        **flat,
        "mllm_config": mllm,
        "mllm_path": mllm_path,
        "template": "qwen_chat",
        "perframe_seg": False,
        **OFFICIAL_PIXEL_BUDGETS,
    }
    if sam2_image_size != OFFICIAL_SAM2_IMAGE_SIZE:
        config["sam2_image_size"] = sam2_image_size
    return config
