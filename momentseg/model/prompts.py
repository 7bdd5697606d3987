"""The TSG and RefVOS prompts, in Qwen's chat format, exactly as the authors' inference writes them.

The official texts (``docs/official.md`` §2-5) are kept verbatim, typos included
("low-resoluton", the literal "<video>" left in the RefVOS prompt, no "?" after the RefVOS-path TSG
question): the released weights were trained and evaluated on them. The paper's Table 16 first
variants are an option (style "paper").
"""

from __future__ import annotations

FIND_TOKEN = "[FIND]"
SEG_TOKEN = "[SEG]"
SYSTEM_PROMPT = "You are a helpful assistant."
# the answers the official models were trained to give first (Charades/ReVOS ANSWER_LIST[0])
FIND_ANSWER = f"It is {FIND_TOKEN}."
SEG_ANSWER = f"It is {SEG_TOKEN}."
VIDEO = "<video>"
IMAGE = "<image>"

# the [FIND] question; "<video>" becomes the video's tokens
FIND_PROMPTS = {
    # RefVOS evaluation (evaluation/dataset/refVOS.py:19): what predict_forward_find_seg is given
    "refvos": (
        f"{VIDEO}\nHere is a low-resolution video you can refer to. Can you find the key frames range of "
        "the text query '{query}' in this video"
    ),
    # TSG evaluation (evaluation/dataset/TVG.py:17)
    "tsg": (
        f"{VIDEO}\nThis is a low-resolution video. Can you find the key frames range of the text query "
        "'{query}' in this video?"
    ),
    "paper": (
        f"{VIDEO}\n This is a low-resolution video.\nCan you find the key frames range of the text query "
        "'{query}' in this video?"
    ),
}
# the [SEG] question; only "<image>" is replaced (by every keyframe's image tokens)
SEG_PROMPTS = {
    "refvos": f"{VIDEO}\nThis is a low-resoluton video. {IMAGE}\nPlease segment {{query}} in this video.",
    "paper": f"{IMAGE}\n Can you segment the {{query}} in this video?",
}
# every token the chat template or the vision placeholders use: never accepted inside a user's prompt
RESERVED_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    FIND_TOKEN,
    SEG_TOKEN,
    "<p>",
    "</p>",
)


def chat(user: str, system_prompt: str | None = SYSTEM_PROMPT) -> str:
    """xtuner's ``qwen_chat`` template: system, then the user turn, ending where the assistant answers."""
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    return f"{system}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def video_tokens(count: int) -> str:
    return "<|vision_start|>" + "<|video_pad|>" * count + "<|vision_end|>"


def image_tokens(counts: list[int]) -> str:
    return "".join("<|vision_start|>" + "<|image_pad|>" * count + "<|vision_end|>" for count in counts)


def find_prompt(
    query: str, video_token_count: int, style: str = "refvos", system_prompt: str | None = SYSTEM_PROMPT
) -> str:
    """The TSG turn over the low-resolution video (official MM:596-604)."""
    return chat(
        FIND_PROMPTS[style].replace(VIDEO, video_tokens(video_token_count)).replace("{query}", query), system_prompt
    )


def seg_prompt(
    query: str, image_token_counts: list[int], style: str = "refvos", system_prompt: str | None = SYSTEM_PROMPT
) -> str:
    """The RefVOS turn over the keyframes as images (official MM:686-707)."""
    return chat(
        SEG_PROMPTS[style].replace(IMAGE, image_tokens(image_token_counts)).replace("{query}", query), system_prompt
    )
