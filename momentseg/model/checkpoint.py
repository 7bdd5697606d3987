"""Checkpoints in three layouts, loaded into the stock model classes without ``trust_remote_code``.

A checkpoint is a folder (or a hub id, fetched when the machine is online) holding ``config.json``,
safetensors weights (one file, or shards named by ``model.safetensors.index.json``) and the tokenizer.

Each layout's config.json; Qwen2.5-VL keys; heads:

- ``official`` (MomentSeg release): ``momentseg_chat``, 4.51 fields flattened; ``model.layers.*``,
  ``visual.*``, ``lm_head``; ``text_hidden_fcs``, ``find_hidden_fcs`` (ReLU), ``img_hidden_fcs``.
- ``sa2va`` (Sa2VA-Qwen2.5-VL): Qwen2.5-VL's; ``model.model.language_model.*``, ``model.model.visual.*``,
  ``model.lm_head``; ``text_hidden_fcs``.
- ``momentseg`` (this project before the release): Qwen2.5-VL's + a ``momentseg`` section; keys as Sa2VA;
  ``text_hidden_fcs``, ``find_head`` (GELU).

All three keep SAM2 under ``grounding_encoder.sam2_model.`` with ``.g_weight`` for sam2's ``.gamma``; the
SAM2 size and version are read from the weight shapes (:mod:`momentseg.model.sam2_config`).

Loading is strict and cheap: config, tokenizer and every safetensors header are checked first (a missing,
unexpected or wrongly shaped key is an error listing the keys, before any weight is read); the modules are
built on the meta device, and each tensor is read from its memory-mapped shard, converted once to the
target dtype and device, and assigned — peak host memory stays near the size of the loaded weights.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from accelerate import init_empty_weights
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from momentseg.devices import default_device
from momentseg.errors import MomentSegError, plain_reason
from momentseg.model.heads import SAM2_PROMPT_DIM, FindHead, SegProjector
from momentseg.model.lmm import QwenLMM, build_processor
from momentseg.model.official import (
    OFFICIAL_MODEL_TYPE,
    OFFICIAL_SAM2_IMAGE_SIZE,
    official_config,
    qwen_config_from_official,
)
from momentseg.model.prompts import FIND_TOKEN, SEG_TOKEN
from momentseg.model.qwen_config import text_config
from momentseg.model.sam2_config import Sam2Variant, Sam2VariantError, infer_sam2_variant
from momentseg.model.sam2_tracker import MomentSAM2VideoPredictor, build_predictor

LMM, SAM2, SEG, FIND, IMAGE = "lmm", "sam2", "seg_projector", "find_head", "image_projector"
EMBEDDING_KEY = "model.language_model.embed_tokens.weight"
SAM2_PREFIX = "grounding_encoder.sam2_model."
INDEX_FILE = "model.safetensors.index.json"
CHECKPOINT_FILES = [
    "config.json",
    "*.safetensors",
    INDEX_FILE,
    "tokenizer*",
    "*.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
]
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# a shard is re-opened after this many bytes, so the pages it maps stay few while a copy is kept
REMAP_BYTES = 64 * 2**20
LISTED_KEYS = 20


class CheckpointError(MomentSegError):
    """A checkpoint cannot be found, read or matched to the model."""

    code = "checkpoint_error"


@dataclass(frozen=True)
class Layout:
    """How one checkpoint layout names each part's weights: (prefix on disk, part, prefix in the module)."""

    name: str
    rules: tuple[tuple[str, str, str], ...]
    required: frozenset[str]
    find_activation: type[nn.Module] | None = None

    def locate(self, disk_key: str) -> tuple[str, str] | None:
        """(part, key in the part's module) of a key on disk; None if no rule claims it."""
        for disk_prefix, part, module_prefix in self.rules:
            if disk_key.startswith(disk_prefix):
                key = module_prefix + disk_key[len(disk_prefix) :]
                return part, key.replace(".g_weight", ".gamma") if part == SAM2 else key
        return None

    def disk_key(self, part: str, module_key: str) -> str:
        """The name on disk of a module key (the inverse of :meth:`locate`)."""
        rules = sorted((r for r in self.rules if r[1] == part), key=lambda r: -len(r[2]))
        for disk_prefix, _, module_prefix in rules:
            if module_key.startswith(module_prefix):
                key = disk_prefix + module_key[len(module_prefix) :]
                return key.replace(".gamma", ".g_weight") if part == SAM2 else key
        raise KeyError(module_key)


_COMMON = ((SAM2_PREFIX, SAM2, ""), ("text_hidden_fcs.", SEG, ""))
OFFICIAL = Layout(
    "official",
    (
        ("visual.", LMM, "model.visual."),
        ("lm_head.", LMM, "lm_head."),
        ("model.", LMM, "model.language_model."),
        *_COMMON,
        ("find_hidden_fcs.", FIND, ""),
        ("img_hidden_fcs.", IMAGE, ""),
    ),
    frozenset({LMM, SAM2, SEG, FIND, IMAGE}),
    nn.ReLU,
)
SA2VA = Layout("sa2va", (("model.", LMM, ""), *_COMMON), frozenset({LMM, SAM2, SEG}))
MOMENTSEG = Layout("momentseg", (*SA2VA.rules, ("find_head.", FIND, "")), frozenset({LMM, SAM2, SEG, FIND}), nn.GELU)
LAYOUTS = {layout.name: layout for layout in (OFFICIAL, SA2VA, MOMENTSEG)}


@dataclass(frozen=True)
class TensorEntry:
    """Where a tensor lies and what it is, from its shard's header."""

    shard: Path
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class CheckpointPlan:
    """Everything known about a checkpoint before a weight is read."""

    folder: Path
    source: str
    layout: Layout
    config: dict
    qwen_config: Qwen2_5_VLConfig
    tensors: dict[str, TensorEntry]
    parts: dict[str, dict[str, str]]  # part → {key in the module: key on disk}
    sam2: Sam2Variant

    @property
    def heads(self) -> tuple[str, ...]:
        return ("seg", "find") if FIND in self.layout.required else ("seg",)


@dataclass(frozen=True)
class ModelInfo:
    """What ran: the checkpoint, its layout, heads and SAM2, and the dtype the LMM was loaded in."""

    checkpoint: str
    layout: str
    heads: tuple[str, ...]
    sam2_config: str
    sam2_image_size: int
    sam2_trunk: str = ""
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "layout": self.layout,
            "heads": list(self.heads),
            "dtype": self.dtype,
            "sam2": {"config": self.sam2_config, "trunk": self.sam2_trunk, "image_size": self.sam2_image_size},
        }


@dataclass
class MomentSegModel:
    """Every trained part of MomentSeg, on one device.

    ``image_projector`` is the official ``img_hidden_fcs``: read by the authors' code only with
    ``perframe_seg`` (off in the released models), kept so a checkpoint saves back with all its weights.
    """

    lmm: QwenLMM
    seg_projector: SegProjector
    find_head: FindHead | None
    predictor: MomentSAM2VideoPredictor
    info: ModelInfo
    image_projector: SegProjector | None = field(default=None)

    @property
    def device(self) -> torch.device:
        return self.lmm.device

    def parts(self) -> dict[str, nn.Module]:
        """The modules by part name, as the checkpoint layouts name them."""
        parts: dict[str, nn.Module | None] = {
            LMM: self.lmm.model,
            SAM2: self.predictor,
            SEG: self.seg_projector,
            FIND: self.find_head,
            IMAGE: self.image_projector,
        }
        return {name: module for name, module in parts.items() if module is not None}


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


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except OSError as error:
        raise CheckpointError(f"cannot read {what} '{path}': {plain_reason(error)}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{what} '{path}' is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise CheckpointError(f"{what} '{path}' is not a JSON object")
    return value


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED_KEYS])
    return shown + (f" … and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else "")


def _shard_names(folder: Path) -> dict[str, list[str] | None]:
    """Shard file name → the keys the index puts there (None: every key of the file)."""
    index_path = folder / INDEX_FILE
    if not index_path.exists():
        names = sorted(p.name for p in folder.glob("*.safetensors"))
        if not names:
            raise CheckpointError(f"no safetensors weights in '{folder}' (pickle checkpoints are never loaded)")
        return dict.fromkeys(names)
    weight_map = _read_json(index_path, "weight index").get("weight_map")
    if (
        not isinstance(weight_map, dict)
        or not weight_map
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())
    ):
        raise CheckpointError(f"'{index_path}' has no weight_map of key → shard file name")
    shards: dict[str, list[str]] = defaultdict(list)
    for key, name in weight_map.items():
        # a shard is a file in this folder: a path, '..' or a drive never is, and is never opened
        if Path(name).name != name or name in (".", "..") or "\\" in name:
            raise CheckpointError(
                f"'{index_path}' names '{name}' for '{key}', which is not a file in the checkpoint folder"
            )
        shards[name].append(key)
    missing = sorted(name for name in shards if not (folder / name).is_file())
    if missing:
        raise CheckpointError(
            f"weight shards listed in '{index_path}' are missing from '{folder}': {', '.join(missing)}"
        )
    return dict(shards)


def _tensor_entries(folder: Path) -> dict[str, TensorEntry]:
    """Every weight's shard, dtype and shape, read from the safetensors headers only."""
    entries: dict[str, TensorEntry] = {}
    for name, listed in _shard_names(folder).items():
        path = folder / name
        try:
            with safe_open(path, framework="pt") as handle:
                names = handle.keys()
                present = set(names)
                for key in names if listed is None else listed:
                    if key not in present:
                        raise CheckpointError(f"the weight index puts '{key}' in '{name}', which does not hold it")
                    if key in entries:
                        raise CheckpointError(f"'{key}' is stored twice: in '{entries[key].shard.name}' and '{name}'")
                    tensor = handle.get_slice(key)
                    entries[key] = TensorEntry(path, tensor.get_dtype(), tuple(tensor.get_shape()))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(
                f"weight file '{path}' cannot be read (truncated, or not safetensors): {plain_reason(error)}"
            ) from error
    return entries


def detect_layout(keys, config: dict) -> Layout:
    """The layout from the weight keys (the config's ``model_type`` only names the official one)."""
    if any(k.startswith(("model.model.", "model.lm_head.")) for k in keys):
        return MOMENTSEG if any(k.startswith("find_head.") for k in keys) else SA2VA
    if config.get("model_type") == OFFICIAL_MODEL_TYPE or any(
        k.startswith(("model.layers.", "visual.", "find_hidden_fcs.")) for k in keys
    ):
        return OFFICIAL
    prefixes = sorted({k.split(".")[0] + "." for k in keys})
    raise CheckpointError(
        f"unknown checkpoint layout (model_type {config.get('model_type')!r}; weight keys start with "
        f"{', '.join(prefixes[:LISTED_KEYS])}): expected the official MomentSeg layout (model.layers.*, visual.*, "
        "find_hidden_fcs.*) or Sa2VA's (model.model.language_model.*, text_hidden_fcs.*)"
    )


def _qwen_config(layout: Layout, config: dict) -> Qwen2_5_VLConfig:
    try:
        if layout is OFFICIAL:
            return qwen_config_from_official(config)
        return Qwen2_5_VLConfig.from_dict({k: v for k, v in config.items() if k != "momentseg"})
    except (TypeError, ValueError, KeyError, AttributeError, StrictDataclassError) as error:
        # transformers validates field types and values (StrictDataclassError: "hidden_size" given "big")
        raise CheckpointError(f"config.json does not describe a Qwen2.5-VL model: {plain_reason(error)}") from error


def _sam2_image_size(layout: Layout, config: dict) -> int:
    section = config if layout is OFFICIAL else config.get("momentseg", {})
    if not isinstance(section, dict):
        raise CheckpointError("config.json's 'momentseg' section is not a JSON object")
    size = section.get("sam2_image_size", OFFICIAL_SAM2_IMAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 64 <= size <= 4096:
        raise CheckpointError(
            f"config.json's sam2_image_size must be a whole number of pixels from 64 to 4096, got {size!r}"
        )
    return size


def plan_checkpoint(checkpoint: str | Path) -> CheckpointPlan:
    """Read a checkpoint's config and weight headers, find its layout and SAM2; no weight is read."""
    folder = _resolve(checkpoint)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"'{folder}' has no config.json")
    config = _read_json(config_path, "config")
    tensors = _tensor_entries(folder)
    layout = detect_layout(tensors, config)
    parts: dict[str, dict[str, str]] = defaultdict(dict)
    unclaimed = []
    for disk_key in tensors:
        located = layout.locate(disk_key)
        if located is None:
            unclaimed.append(disk_key)
        else:
            parts[located[0]][located[1]] = disk_key
    if unclaimed:
        raise CheckpointError(
            f"unexpected keys outside every known prefix of the {layout.name} layout: {_listing(sorted(unclaimed))}"
        )
    if SAM2 not in parts:
        raise CheckpointError(f"the checkpoint has no SAM2 weights ({SAM2_PREFIX}*)")
    try:
        sam2 = infer_sam2_variant(
            {k: tensors[d].shape for k, d in parts[SAM2].items()}, _sam2_image_size(layout, config)
        )
    except Sam2VariantError as error:
        raise CheckpointError(str(error)) from error
    return CheckpointPlan(
        folder, str(checkpoint), layout, config, _qwen_config(layout, config), tensors, dict(parts), sam2
    )


def load_tokenizer(plan: CheckpointPlan):
    """The checkpoint's tokenizer, with [SEG] (and [FIND] when there is a [FIND] head) inside the embedding."""
    try:
        # the Qwen config is passed so the tokenizer never reads config.json (whose auto_map asks for remote code)
        tokenizer = AutoTokenizer.from_pretrained(plan.folder, local_files_only=True, config=plan.qwen_config)
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(f"'{plan.folder}' has no readable tokenizer: {error}") from error
    rows = text_config(plan.qwen_config).vocab_size
    needed = [SEG_TOKEN, *([FIND_TOKEN] if FIND in plan.layout.required else [])]
    for token in needed:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:  # one token, one id
            reason = " but the checkpoint has a [FIND] head" if token == FIND_TOKEN else ""
            raise CheckpointError(f"the tokenizer in '{plan.folder}' has no {token} token{reason}")
        if token_id >= rows:
            raise CheckpointError(f"{token} has id {token_id}, outside the {rows}-row embedding of '{plan.folder}'")
    return tokenizer


def _build_empty(plan: CheckpointPlan) -> dict[str, nn.Module]:
    """Each part's module on the meta device (no weight memory); small buffers stay real.

    The language model's shapes are checked first with its buffers on the meta device too: buffers
    are sized by the config, so a config that contradicts its weights (``hidden_size`` 10⁹) is refused
    before anything it sizes is allocated."""
    text = text_config(plan.qwen_config)
    embedding = plan.parts.get(LMM, {}).get(EMBEDDING_KEY)
    if embedding is None:
        raise CheckpointError(f"'{plan.folder}' has no token embedding ({plan.layout.disk_key(LMM, EMBEDDING_KEY)})")
    shape = plan.tensors[embedding].shape
    if shape != (text.vocab_size, text.hidden_size):
        raise CheckpointError(
            f"config.json says vocab_size {text.vocab_size} and hidden_size {text.hidden_size}, "
            f"but the token embedding {embedding} is {list(shape)}"
        )
    try:
        with init_empty_weights(include_buffers=True):
            language_model = Qwen2_5_VLForConditionalGeneration(plan.qwen_config)
    except (RuntimeError, ValueError) as error:  # sizes that overflow even on the meta device
        raise CheckpointError(f"config.json's sizes cannot be built: {error}") from None
    _check_keys(plan, {LMM: language_model})
    hidden = text.hidden_size
    with init_empty_weights(include_buffers=False):
        modules: dict[str, nn.Module] = {
            LMM: Qwen2_5_VLForConditionalGeneration(plan.qwen_config),
            SAM2: build_predictor(plan.sam2.config, plan.sam2.image_size, "meta"),
            SEG: SegProjector(hidden),
        }
        if FIND in plan.layout.required:
            out_weight = plan.parts.get(FIND, {}).get("2.weight")
            out_dim = plan.tensors[out_weight].shape[0] if out_weight else SAM2_PROMPT_DIM
            activation = plan.layout.find_activation
            assert activation is not None, "a layout with a [FIND] head names its activation"
            modules[FIND] = FindHead(hidden, out_dim, activation=activation)
        if IMAGE in plan.layout.required:
            modules[IMAGE] = SegProjector(hidden)
    return modules


def _check_keys(plan: CheckpointPlan, modules: dict[str, nn.Module]) -> None:
    missing, unexpected, wrong = [], [], []
    for part, module in modules.items():
        on_disk = plan.parts.get(part, {})
        expected = module.state_dict()
        for key, tensor in expected.items():
            if key not in on_disk:
                missing.append(plan.layout.disk_key(part, key))
            elif plan.tensors[on_disk[key]].shape != tuple(tensor.shape):
                wrong.append(f"{on_disk[key]} {list(plan.tensors[on_disk[key]].shape)} (model: {list(tensor.shape)})")
        unexpected += [disk_key for key, disk_key in on_disk.items() if key not in expected]
    problems = [
        f"{label}: {_listing(sorted(keys))}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"'{plan.folder}' does not match the {plan.layout.name} layout's model: " + "; ".join(problems)
        )


def _read_weights(
    plan: CheckpointPlan, targets: dict[str, tuple[torch.device, torch.dtype]], through_bfloat16: bool = False
) -> dict[str, dict]:
    """Each tensor copied once from its memory-mapped shard into its part's dtype and device
    (``through_bfloat16``: floating tensors rounded to bfloat16 precision on the way)."""
    where = {disk_key: (part, key) for part, keys in plan.parts.items() for key, disk_key in keys.items()}
    by_shard: dict[Path, list[str]] = defaultdict(list)
    for disk_key, entry in plan.tensors.items():
        by_shard[entry.shard].append(disk_key)
    state: dict[str, dict] = defaultdict(dict)
    for shard, keys in by_shard.items():
        handle, mapped = None, 0
        try:
            for disk_key in keys:
                if handle is None or mapped >= REMAP_BYTES:
                    handle, mapped = safe_open(shard, framework="pt"), 0
                part, key = where[disk_key]
                device, dtype = targets[part]
                tensor = handle.get_tensor(disk_key)
                mapped += tensor.nbytes
                if through_bfloat16 and tensor.is_floating_point():
                    tensor = tensor.to(torch.bfloat16)
                state[part][key] = tensor.to(
                    device=device, dtype=dtype if tensor.is_floating_point() else None, copy=True
                )
                del tensor  # the last reference to the mapped pages before a re-open
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"weight file '{shard}' cannot be read: {plain_reason(error)}") from error
    return state


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``bfloat16`` / ``float16`` / ``float32`` (or a torch dtype) as a torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_checkpoint(
    checkpoint: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    system_prompt: str | None = None,
    bfloat16_weights: bool | None = None,
) -> MomentSegModel:
    """Load an official MomentSeg, Sa2VA-Qwen2.5-VL or older MomentSeg checkpoint into the real classes.

    The LMM and heads are loaded in ``dtype`` (bfloat16 on CUDA, float32 on CPU by default); SAM2 keeps
    float32 weights, as sam2 runs them (under autocast on CUDA).

    ``bfloat16_weights`` rounds every weight to bfloat16 precision before it is held in its dtype. None
    (default) does it for the official layout only, because the official inference casts the whole model
    to bfloat16 before it generates (``preparing_for_generation``), also when it is then run in float32:
    its answers are those of the rounded weights. A no-op for checkpoints stored in bfloat16, as released.
    """
    device = torch.device(device if device is not None else default_device())
    dtype = parse_dtype(dtype) or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    plan = plan_checkpoint(checkpoint)
    tokenizer = load_tokenizer(plan)
    modules = _build_empty(plan)
    _check_keys(plan, modules)
    targets = {part: (device, torch.float32 if part == SAM2 else dtype) for part in modules}
    if bfloat16_weights is None:
        bfloat16_weights = plan.layout is OFFICIAL
    state = _read_weights(plan, targets, through_bfloat16=bfloat16_weights)
    for part, module in modules.items():
        module.load_state_dict(state.pop(part), strict=True, assign=True)
        # buffers built for real (rotary frequencies) follow the weights; the weights are already there
        module.to(device).eval()
    info = ModelInfo(
        checkpoint=str(checkpoint),
        layout=plan.layout.name,
        heads=plan.heads,
        sam2_config=plan.sam2.config,
        sam2_image_size=plan.sam2.image_size,
        sam2_trunk=plan.sam2.trunk,
        dtype=str(dtype).removeprefix("torch."),
    )
    # each part is of the class _build_empty made it of
    lmm = QwenLMM(
        cast(Qwen2_5_VLForConditionalGeneration, modules[LMM]), build_processor(tokenizer), system_prompt=system_prompt
    )
    return MomentSegModel(
        lmm,
        cast(SegProjector, modules[SEG]),
        cast("FindHead | None", modules.get(FIND)),
        cast(MomentSAM2VideoPredictor, modules[SAM2]),
        info,
        cast("SegProjector | None", modules.get(IMAGE)),
    )


def save_checkpoint(model: MomentSegModel, folder: str | Path, layout: str | None = None) -> Path:
    """Write ``model`` in ``layout`` (default: the one it was loaded from or built for)."""
    layout_spec = LAYOUTS[layout or model.info.layout]
    parts = model.parts()
    absent = sorted(layout_spec.required - set(parts))
    if absent:
        raise ValueError(f"the {layout_spec.name} layout needs {', '.join(absent)}, which this model lacks")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        layout_spec.disk_key(part, key): tensor.detach().to("cpu").contiguous()
        for part, module in parts.items()
        if part in layout_spec.required
        for key, tensor in module.state_dict().items()
    }
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    qwen_config = model.lmm.model.config
    if layout_spec is OFFICIAL:
        dtype = str(next(model.lmm.model.parameters()).dtype).removeprefix("torch.")
        config = official_config(qwen_config, sam2_image_size=model.info.sam2_image_size, dtype=dtype)
    else:
        config = qwen_config.to_dict()
        config["momentseg"] = {"sam2_config": model.info.sam2_config, "sam2_image_size": model.info.sam2_image_size}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    model.lmm.processor.tokenizer.save_pretrained(folder)
    return folder


def describe_checkpoint(checkpoint: str | Path) -> dict:
    """What ``momentseg info`` prints: layout, heads, SAM2, sizes, dtype on disk, special tokens, what runs."""
    plan = plan_checkpoint(checkpoint)
    tokenizer = load_tokenizer(plan)
    modules = _build_empty(plan)
    _check_keys(plan, modules)
    counts: Counter = Counter()
    dtypes: Counter = Counter()
    for part, keys in plan.parts.items():
        for key, disk_key in keys.items():
            entry = plan.tensors[disk_key]
            name = ("vision tower" if key.startswith("model.visual.") else "language model") if part == LMM else part
            counts[name] += entry.numel
            dtypes[entry.dtype] += entry.numel
    special = {
        token: tokenizer.convert_tokens_to_ids(token)
        for token in (SEG_TOKEN, FIND_TOKEN, "<p>", "</p>", "<|image_pad|>", "<|video_pad|>")
        if tokenizer.convert_tokens_to_ids(token) not in (None, tokenizer.unk_token_id)
    }
    total = sum(counts.values())
    sam2_params = counts[SAM2]
    run = [
        "[FIND] head: temporal grounding (similarity curve, moment), moment-centric keyframes"
        if FIND in plan.layout.required
        else "no [FIND] head: uniform keyframes, no moment",
        f"[SEG] head: SAM2 {plan.sam2.version} {plan.sam2.trunk} at {plan.sam2.image_size} px, "
        "bidirectional anchor-updated propagation",
    ]
    return {
        "checkpoint": str(checkpoint),
        "folder": str(plan.folder),
        "layout": plan.layout.name,
        "heads": list(plan.heads),
        "sam2": plan.sam2.to_dict(),
        "parameters": {**dict(counts), "total": total},
        "dtype_on_disk": dict(dtypes),
        "special_tokens": special,
        "vocab_size": text_config(plan.qwen_config).vocab_size,
        "memory_gb": {
            name: round(((total - sam2_params) * torch.finfo(d).bits // 8 + sam2_params * 4) / 1e9, 2)
            for name, d in DTYPES.items()
        },
        "will_run": run,
    }
