import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from momentseg.model.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture
def editable_checkpoint(tiny_checkpoint, tmp_path):
    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    return folder


def _edit_weights(folder, edit):
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors")


def test_missing_key_is_named(editable_checkpoint):
    _edit_weights(editable_checkpoint, lambda w: w.pop("text_hidden_fcs.2.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys: text_hidden_fcs\.2\.weight"):
        load_checkpoint(editable_checkpoint, device="cpu")


def test_unexpected_key_is_named(editable_checkpoint):
    _edit_weights(editable_checkpoint, lambda w: w.update({"model.extra.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys: model\.extra\.weight"):
        load_checkpoint(editable_checkpoint, device="cpu")
    _edit_weights(editable_checkpoint, lambda w: (w.pop("model.extra.weight"), w.update({"lora.A": torch.zeros(1)})))
    with pytest.raises(CheckpointError, match=r"outside every known prefix: lora\.A"):
        load_checkpoint(editable_checkpoint, device="cpu")


def test_sam2_keys_use_sa2va_names_on_disk(tiny_checkpoint):
    keys = load_file(tiny_checkpoint / "model.safetensors").keys()
    assert any(k.startswith("grounding_encoder.sam2_model.") and k.endswith(".g_weight") for k in keys)
    assert not any(k.endswith(".gamma") for k in keys)
    assert any(k.startswith("model.model.language_model.") for k in keys)
    assert any(k.startswith("find_head.") for k in keys)


def test_sharded_checkpoint_loads(editable_checkpoint):
    weights = load_file(editable_checkpoint / "model.safetensors")
    (editable_checkpoint / "model.safetensors").unlink()
    names = sorted(weights)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, editable_checkpoint / shard)
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (editable_checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_checkpoint(editable_checkpoint, device="cpu")
    assert model.info.layout == "momentseg"


def test_folder_without_safetensors_is_refused(editable_checkpoint):
    (editable_checkpoint / "model.safetensors").unlink()
    (editable_checkpoint / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="no safetensors weights"):
        load_checkpoint(editable_checkpoint, device="cpu")


def test_unreachable_hub_id_and_bad_path_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="ByteDance/Sa2VA-Qwen2_5-VL-3B.*could not be fetched"):
        load_checkpoint("ByteDance/Sa2VA-Qwen2_5-VL-3B", device="cpu")
    with pytest.raises(CheckpointError, match="not a folder"):
        load_checkpoint(tmp_path / "nowhere" / "deep" / "path", device="cpu")


def test_tokenizer_without_seg_token_is_refused(editable_checkpoint):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from momentseg.model.tiny import QWEN_SPECIAL_TOKENS

    for path in editable_checkpoint.glob("tokenizer*"):
        path.unlink()
    plain = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab={"<unk>": 0}, unk_token="<unk>")),
        unk_token="<unk>", additional_special_tokens=QWEN_SPECIAL_TOKENS,
    )
    plain.save_pretrained(editable_checkpoint)
    with pytest.raises(CheckpointError, match=r"no \[SEG\] token"):
        load_checkpoint(editable_checkpoint, device="cpu")
