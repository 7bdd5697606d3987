"""Tiny random-weight models in the real architectures, built offline: for tests, demos, training and CI.

``layout`` picks which checkpoint layout the model is saved in (see :mod:`momentseg.model.checkpoint`):
``official`` (the MomentSeg release: [FIND] head with ReLU, ``img_hidden_fcs``, ``<p>``/``</p>`` tokens and an
embedding larger than the tokenizer, as the authors add tokens without resizing), ``momentseg`` (this
project's older layout) or ``sa2va`` (no [FIND] head).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig

from momentseg.model.prompts import FIND_TOKEN, SEG_TOKEN
from momentseg.model.qwen_config import text_config

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# the tokens the official models add (configs/momentseg-*.py special_tokens)
OFFICIAL_ADDED_TOKENS = [SEG_TOKEN, FIND_TOKEN, "<p>", "</p>"]
TINY_WORDS = (  # noqa: SIM905 (a word list reads best as text)
    "system user assistant you are a helpful it is this low-resolution video can find the key frames range "
    "of text query in segment man who picks up phone and walks away dog cat car person red blue moving "
    "jumps over fence left right green yellow white purple orange square circle triangle star shape object "
    "appears disappears moves stops slides falls rises grows shrinks spins enters leaves from to up down top "
    "bottom stays still then after before while when sure segmentation result please referring here refer "
    "resoluton low resolution big small that bounces turns ball the - < > . , ? ! ' \n"
).split(" ")
# the official tiny reference's embedding rows: 304 tokens, 320 rows
OFFICIAL_TINY_VOCAB_ROWS = 320
TINY_SAM2_CONFIG = "configs/sam2/sam2_hiera_t.yaml"
# this project's reduced SAM2 (momentseg/model/sam2_configs): what a model small enough to ship uses
MINI_SAM2_CONFIG = "momentseg:sam2_configs/sam2_hiera_mini.yaml"
TINY_SAM2_IMAGE_SIZE = 128
# random decoders score objects as absent (logit < 0), which blanks every mask: bias them present
TINY_OBJECT_SCORE_BIAS = 4.0
LAYOUTS = ("official", "momentseg", "sa2va")


def build_tiny_tokenizer(*, with_find: bool = True, added_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with Qwen's chat/vision special tokens, then ``added_tokens``
    (default: [SEG] and, ``with_find``, [FIND])."""
    vocab = {"<unk>": 0}
    for word in TINY_WORDS:
        vocab.setdefault(word.strip() or word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.decoder = decoders.WordPiece(prefix="##")
    if added_tokens is None:
        added_tokens = [SEG_TOKEN] + ([FIND_TOKEN] if with_find else [])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS + added_tokens,
    )


def tiny_qwen_config(
    tokenizer, hidden_size: int = 64, vocab_size: int | None = None, layers: int = 2, initializer_range: float = 0.02
) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL geometry shrunk: by default 2 text layers of width 64, a 2-block vision tower of width 32
    (the official tiny reference's sizes); ``vocab_size`` embedding rows (default: one per token)."""
    ids = tokenizer.convert_tokens_to_ids
    # initializer_range is no declared field of the composite config, which keeps it for the weight init
    return Qwen2_5_VLConfig(  # type: ignore[call-arg]
        text_config=dict(
            vocab_size=vocab_size or len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            rms_norm_eps=1e-6,
            max_window_layers=layers,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            bos_token_id=None,
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
            tie_word_embeddings=False,
            initializer_range=initializer_range,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=14,
            temporal_patch_size=2,
            spatial_merge_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
            out_hidden_size=hidden_size,
            tokens_per_second=2,
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )


def build_tiny_model(
    layout: str = "momentseg",
    seed: int = 0,
    sam2_image_size: int = TINY_SAM2_IMAGE_SIZE,
    *,
    sam2_config: str = TINY_SAM2_CONFIG,
    hidden_size: int = 64,
    layers: int = 2,
    initializer_range: float = 0.02,
    seg_prompt_std: float | None = None,
    video_token_scale: float = 1.0,
    attention_initializer_range: float | None = None,
):
    """A random-weight model for ``layout``: tiny Qwen2.5-VL (``layers`` text layers of ``hidden_size``,
    weights of std ``initializer_range``), SAM2 2.0 of ``sam2_config`` (default Hiera-T) at
    ``sam2_image_size`` px. ``seg_prompt_std``: the [SEG] projection's weights drawn so that p starts at
    about that scale per dimension (SAM2's own prompt tokens start at 1; PyTorch's default init gives p ≈ 0.2,
    which the mask decoder barely notices). ``video_token_scale``: the vision merger's output multiplied by it,
    so that image and video tokens enter the text layers large enough to keep their own content through
    layers of a large ``initializer_range`` (the [FIND] similarity reads each frame's tokens).
    ``attention_initializer_range``: the std of the text layers' query and key projections when it differs
    (small keeps the attention soft: every word reaches [SEG], and the attention can still learn)."""
    import torch
    from torch import nn
    from transformers import Qwen2_5_VLForConditionalGeneration

    from momentseg.model.checkpoint import ModelInfo, MomentSegModel
    from momentseg.model.heads import FindHead, SegProjector
    from momentseg.model.lmm import QwenLMM, build_processor
    from momentseg.model.sam2_tracker import build_predictor

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    torch.manual_seed(seed)
    official = layout == "official"
    with_find = layout != "sa2va"
    tokenizer = (
        build_tiny_tokenizer(added_tokens=OFFICIAL_ADDED_TOKENS)
        if official
        else build_tiny_tokenizer(with_find=with_find)
    )
    config = tiny_qwen_config(
        tokenizer, hidden_size, OFFICIAL_TINY_VOCAB_ROWS if official else None, layers, initializer_range
    )
    qwen = Qwen2_5_VLForConditionalGeneration(config).eval()
    predictor = build_predictor(sam2_config, sam2_image_size, "cpu")
    with torch.no_grad():
        merger_output = qwen.model.visual.merger.mlp[-1]
        merger_output.weight.mul_(video_token_scale)
        merger_output.bias.mul_(video_token_scale)
        if attention_initializer_range is not None:
            for layer in qwen.model.language_model.layers:
                layer.self_attn.q_proj.weight.normal_(0, attention_initializer_range)
                layer.self_attn.k_proj.weight.normal_(0, attention_initializer_range)
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(TINY_OBJECT_SCORE_BIAS)
    hidden = text_config(config).hidden_size
    seg_projector = SegProjector(hidden).eval()
    if seg_prompt_std is not None:
        first, second = seg_projector[0], seg_projector[2]
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear), "SegProjector: Linear, ReLU, Linear"
        with torch.no_grad():  # h (RMS-normed, ≈ 1 per dim) → ≈ 1 → ReLU → ≈ seg_prompt_std per dim
            first.weight.normal_(0, hidden**-0.5)
            second.weight.normal_(0, seg_prompt_std * (2 / hidden) ** 0.5)
    find_head = FindHead(hidden, activation=nn.ReLU if official else nn.GELU).eval() if with_find else None
    trunk = sam2_config.rsplit("/", 1)[-1].removeprefix("sam2_").removesuffix(".yaml")
    info = ModelInfo("tiny", layout, ("seg", "find") if with_find else ("seg",), sam2_config, sam2_image_size, trunk)
    return MomentSegModel(
        QwenLMM(qwen, build_processor(tokenizer)),
        seg_projector,
        find_head,
        predictor,
        info,
        SegProjector(hidden).eval() if official else None,
    )


def write_tiny_checkpoint(
    folder, layout: str = "momentseg", seed: int = 0, sam2_image_size: int = TINY_SAM2_IMAGE_SIZE, **sizes
):
    """Save a tiny random-weight checkpoint in ``layout`` (``sizes``: those of :func:`build_tiny_model`);
    returns the folder."""
    from momentseg.model.checkpoint import save_checkpoint

    return save_checkpoint(build_tiny_model(layout, seed, sam2_image_size, **sizes), folder)
