"""The TSG and RefVOS conversations (paper Table 16, first variants), in Qwen's chat format.

Answers are teacher-forced so that one forward pass yields the [FIND] / [SEG] hidden state.
"""

from __future__ import annotations

FIND_TOKEN = "[FIND]"
SEG_TOKEN = "[SEG]"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def _chat(user: str, answer: str, system_prompt: str | None) -> str:
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    return f"{system}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"


def tsg_conversation(query: str, system_prompt: str | None = None) -> str:
    """The TSG question over a low-resolution video, answered "It is [FIND]."."""
    user = (
        f"{VIDEO_PLACEHOLDER}\n This is a low-resolution video.\n"
        f"Can you find the key frames range of the text query '{query}' in this video?"
    )
    return _chat(user, f"It is {FIND_TOKEN}.", system_prompt)


def refvos_conversation(query: str, num_images: int, system_prompt: str | None = None) -> str:
    """The RefVOS question over the keyframes as images, answered "It is [SEG]."."""
    user = f"{IMAGE_PLACEHOLDER * num_images}\n Can you segment the {query} in this video?"
    return _chat(user, f"It is {SEG_TOKEN}.", system_prompt)
