"""Typed access to a Qwen2.5-VL config's parts.

transformers annotates ``text_config`` and ``vision_config`` as ``dict | PreTrainedConfig | None`` although
the config's constructor has made both config objects; these accessors say so once, with a check.
"""

from __future__ import annotations

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLTextConfig
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig


def text_config(config: Qwen2_5_VLConfig) -> Qwen2_5_VLTextConfig:
    """The language model's config."""
    text = config.text_config
    if not isinstance(text, Qwen2_5_VLTextConfig):
        raise TypeError(f"a Qwen2.5-VL config's text_config is a {type(text).__name__}, not a Qwen2_5_VLTextConfig")
    return text


def vision_config(config: Qwen2_5_VLConfig) -> Qwen2_5_VLVisionConfig:
    """The vision tower's config."""
    vision = config.vision_config
    if not isinstance(vision, Qwen2_5_VLVisionConfig):
        raise TypeError(
            f"a Qwen2.5-VL config's vision_config is a {type(vision).__name__}, not a Qwen2_5_VLVisionConfig"
        )
    return vision
