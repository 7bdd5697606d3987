"""Checkpoints in Sa2VA-Qwen2.5-VL's layout, optionally with MomentSeg's [FIND] head.

A checkpoint is a folder (or a hub id, fetched when the machine is online) holding ``config.json``
(Qwen2.5-VL's config, plus an optional ``momentseg`` section), safetensors weights (one file or an
index with shards) and the tokenizer. Weight keys by prefix:

| prefix | module |
|---|---|
| ``model.`` | ``Qwen2_5_VLForConditionalGeneration`` |
| ``grounding_encoder.sam2_model.`` | SAM2 (``.g_weight`` on disk is sam2's ``.gamma``) |
| ``text_hidden_fcs.`` | :class:`SegProjector` |
| ``find_head.`` | :class:`FindHead` (MomentSeg layout only) |

Loading is strict: a missing or unexpected key is an error listing the keys. Only safetensors are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.initialization import no_init_weights

from momentseg.errors import MomentSegError
from momentseg.model.heads import FindHead, SegProjector
from momentseg.model.lmm import QwenLMM, build_processor
from momentseg.model.prompts import FIND_TOKEN, SEG_TOKEN
from momentseg.model.sam2_tracker import MomentSAM2VideoPredictor, build_predictor

QWEN_PREFIX = "model."
SAM2_PREFIX = "grounding_encoder.sam2_model."
SEG_PREFIX = "text_hidden_fcs."
FIND_PREFIX = "find_head."
SA2VA_SAM2_CONFIG = "configs/sam2/sam2_hiera_l.yaml"
SA2VA_SAM2_IMAGE_SIZE = 1024
CHECKPOINT_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer*", "*.txt",
                    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt"]


class CheckpointError(MomentSegError):
    """A checkpoint cannot be found, read or matched to the model."""

    code = "checkpoint_error"


@dataclass(frozen=True)
class ModelInfo:
    """What ran: the checkpoint, its layout and which heads it has."""

    checkpoint: str
    layout: str
    heads: tuple[str, ...]
    sam2_config: str
    sam2_image_size: int

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "layout": self.layout, "heads": list(self.heads),
                "sam2": {"config": self.sam2_config, "image_size": self.sam2_image_size}}


@dataclass
class MomentSegModel:
    """Every trained part of MomentSeg, on one device."""

    lmm: QwenLMM
    seg_projector: SegProjector
    find_head: FindHead | None
    predictor: MomentSAM2VideoPredictor
    info: ModelInfo

    @property
    def device(self) -> torch.device:
        return self.lmm.device


def _resolve(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    if path.is_dir():
        return path
    if path.exists() or str(checkpoint).count("/") != 1:
        raise CheckpointError(f"checkpoint '{checkpoint}' is not a folder, and not a hub id of the form owner/name")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(checkpoint), allow_patterns=CHECKPOINT_FILES))
    except Exception as error:  # the hub client raises many types: offline, 404, auth
        raise CheckpointError(
            f"checkpoint '{checkpoint}' is not a local folder and could not be fetched from the hub "
            f"({type(error).__name__}: {error}); download it and pass the folder"
        ) from error


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if not shards:
        raise CheckpointError(f"no safetensors weights in '{folder}' (pickle checkpoints are never loaded)")
    weights: dict[str, torch.Tensor] = {}
    for shard in shards:
        if not (folder / shard).exists():
            raise CheckpointError(f"weight shard '{shard}' listed in the index is missing from '{folder}'")
        weights.update(load_file(folder / shard))
    return weights


def _take(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: weights.pop(key) for key in [k for k in weights if k.startswith(prefix)]}


def _sam2_from_disk(key: str) -> str:
    return key.replace(".g_weight", ".gamma")


def _sam2_to_disk(key: str) -> str:
    return key.replace(".gamma", ".g_weight")


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        def listing(keys):
            shown = ", ".join(prefix + k for k in keys[:20])
            return shown + (f" … and {len(keys) - 20} more" if len(keys) > 20 else "")

        parts = ([f"missing keys: {listing(missing)}"] if missing else []) + (
            [f"unexpected keys: {listing(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"checkpoint does not match the model under '{prefix}': " + "; ".join(parts))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"checkpoint tensors under '{prefix}' have the wrong shapes: {error}") from error


def default_device() -> tuple[torch.device, torch.dtype]:
    """cuda with bfloat16 when present, else CPU with float32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def load_checkpoint(checkpoint: str | Path, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None, system_prompt: str | None = None) -> MomentSegModel:
    """Load a Sa2VA-Qwen2.5-VL or MomentSeg checkpoint into the real model classes."""
    folder = _resolve(checkpoint)
    auto_device, auto_dtype = default_device()
    device = torch.device(device) if device is not None else auto_device
    dtype = dtype or (auto_dtype if device.type == "cuda" else torch.float32)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"'{folder}' has no config.json")
    config_dict = json.loads(config_path.read_text())
    ours = config_dict.pop("momentseg", {})
    config = Qwen2_5_VLConfig.from_dict(config_dict)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{folder}' has no readable tokenizer: {error}") from error
    if tokenizer.convert_tokens_to_ids(SEG_TOKEN) in (None, tokenizer.unk_token_id):
        raise CheckpointError(f"the tokenizer in '{folder}' has no {SEG_TOKEN} token")

    weights = _read_weights(folder)
    qwen_state = _take(weights, QWEN_PREFIX)
    sam2_state = {_sam2_from_disk(k): v for k, v in _take(weights, SAM2_PREFIX).items()}
    seg_state = _take(weights, SEG_PREFIX)
    find_state = _take(weights, FIND_PREFIX)
    if weights:
        keys = sorted(weights)
        raise CheckpointError(f"unexpected keys outside every known prefix: {', '.join(keys[:20])}")
    has_find = bool(find_state)
    if has_find and tokenizer.convert_tokens_to_ids(FIND_TOKEN) in (None, tokenizer.unk_token_id):
        raise CheckpointError(f"'{folder}' has a [FIND] head but its tokenizer has no {FIND_TOKEN} token")

    with no_init_weights():
        qwen = Qwen2_5_VLForConditionalGeneration(config)
    _load_strict(qwen, qwen_state, QWEN_PREFIX)
    hidden = config.text_config.hidden_size
    seg_projector = SegProjector(hidden)
    _load_strict(seg_projector, seg_state, SEG_PREFIX)
    find_head = None
    if has_find:
        find_head = FindHead(hidden, find_state["2.weight"].shape[0])
        _load_strict(find_head, find_state, FIND_PREFIX)

    sam2_config = ours.get("sam2_config", SA2VA_SAM2_CONFIG)
    sam2_size = int(ours.get("sam2_image_size", SA2VA_SAM2_IMAGE_SIZE))
    predictor = build_predictor(sam2_config, sam2_size, "cpu")
    _load_strict(predictor, sam2_state, SAM2_PREFIX)

    qwen.to(device, dtype).eval()
    seg_projector.to(device, dtype).eval()
    if find_head is not None:
        find_head.to(device, dtype).eval()
    predictor.to(device).eval()
    info = ModelInfo(
        checkpoint=str(checkpoint),
        layout="momentseg" if has_find else "sa2va",
        heads=("seg", "find") if has_find else ("seg",),
        sam2_config=sam2_config,
        sam2_image_size=sam2_size,
    )
    lmm = QwenLMM(qwen, build_processor(tokenizer), system_prompt=system_prompt)
    return MomentSegModel(lmm, seg_projector, find_head, predictor, info)


def save_checkpoint(model: MomentSegModel, folder: str | Path) -> Path:
    """Write ``model`` in the checkpoint layout above (the [FIND] head only when it has one)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state: dict[str, torch.Tensor] = {}
    for prefix, module, rename in (
        (QWEN_PREFIX, model.lmm.model, str),
        (SAM2_PREFIX, model.predictor, _sam2_to_disk),
        (SEG_PREFIX, model.seg_projector, str),
        *([(FIND_PREFIX, model.find_head, str)] if model.find_head is not None else []),
    ):
        for key, tensor in module.state_dict().items():
            state[prefix + rename(key)] = tensor.detach().to("cpu").contiguous()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = model.lmm.model.config.to_dict()
    config["momentseg"] = {"sam2_config": model.info.sam2_config, "sam2_image_size": model.info.sam2_image_size}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    model.lmm.processor.tokenizer.save_pretrained(folder)
    return folder
