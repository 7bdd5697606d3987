"""Checkpoint loading and saving in every layout, on tiny real-architecture checkpoints written here."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from momentseg.cli import main
from momentseg.model.checkpoint import (
    OFFICIAL,
    CheckpointError,
    describe_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    from momentseg.model.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("official") / "ck", "official", seed=1)


@pytest.fixture
def editable(official_checkpoint, tmp_path):
    folder = tmp_path / "ck"
    shutil.copytree(official_checkpoint, folder)
    return folder


def _edit_weights(folder, edit):
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors")


def _edited_weights_are_refused(folder, edit, message):
    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder, device="cpu")


def _file_tensors(folder):
    with safe_open(folder / "model.safetensors", "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def test_official_layout_round_trips_exactly(official_checkpoint, tmp_path):
    model = load_checkpoint(official_checkpoint, device="cpu", bfloat16_weights=False)
    assert model.info.layout == "official" and model.info.heads == ("seg", "find")
    assert isinstance(model.find_head[1], nn.ReLU) and model.image_projector is not None
    assert (model.info.sam2_trunk, model.info.sam2_image_size) == ("hiera_t", 128)
    on_disk = _file_tensors(official_checkpoint)
    # every tensor on disk is in a module, unchanged, and nothing else is
    loaded = {
        OFFICIAL.disk_key(part, key): tensor
        for part, module in model.parts().items()
        for key, tensor in module.state_dict().items()
    }
    assert loaded.keys() == on_disk.keys()
    assert all(torch.equal(loaded[key], on_disk[key]) for key in on_disk)
    assert any(k.startswith("model.layers.") for k in on_disk) and any(k.startswith("visual.") for k in on_disk)
    assert any(k.endswith(".g_weight") for k in on_disk) and not any(k.endswith(".gamma") for k in on_disk)
    saved = save_checkpoint(model, tmp_path / "again")
    assert _file_tensors(saved).keys() == on_disk.keys()
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "momentseg_chat" and config["mllm_config"]["hidden_size"] == config["hidden_size"]


def test_bfloat16_loads_the_lmm_and_heads_in_bfloat16_and_sam2_in_float32(official_checkpoint):
    model = load_checkpoint(official_checkpoint, device="cpu", dtype="bfloat16")
    for module in (model.lmm.model, model.seg_projector, model.find_head, model.image_projector):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.predictor.parameters()} == {torch.float32}
    assert model.info.dtype == "bfloat16"
    # nothing is left on the meta device, and the rotary frequencies stay float32 where the weights are
    tensors = [*model.lmm.model.parameters(), *model.lmm.model.buffers(), *model.predictor.parameters()]
    assert {t.device.type for t in tensors} == {"cpu"}
    assert model.lmm.model.model.language_model.rotary_emb.inv_freq.dtype == torch.float32


@pytest.mark.parametrize("layout", ["momentseg", "sa2va"])
def test_older_layouts_still_load(layout, tmp_path):
    from momentseg.model.tiny import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / layout, layout)
    model = load_checkpoint(folder, device="cpu")
    assert model.info.layout == layout
    assert any(k.startswith("model.model.language_model.") for k in load_file(folder / "model.safetensors"))
    if layout == "momentseg":
        assert isinstance(model.find_head[1], nn.GELU)
    else:
        assert model.find_head is None and model.info.heads == ("seg",)


def test_missing_key_is_named(editable):
    _edited_weights_are_refused(
        editable, lambda w: w.pop("find_hidden_fcs.2.weight"), r"missing keys: find_hidden_fcs\.2\.weight"
    )


def test_unexpected_and_unknown_keys_are_named(editable):
    _edited_weights_are_refused(
        editable, lambda w: w.update({"model.extra.weight": torch.zeros(1)}), r"unexpected keys: model\.extra\.weight"
    )
    _edited_weights_are_refused(
        editable,
        lambda w: (w.pop("model.extra.weight"), w.update({"lora.A": torch.zeros(1)})),
        r"outside every known prefix of the official layout: lora\.A",
    )


def test_wrong_shape_is_named_before_reading(editable):
    _edited_weights_are_refused(
        editable,
        lambda w: w.update({"text_hidden_fcs.2.bias": torch.zeros(3)}),
        r"wrong shapes: text_hidden_fcs\.2\.bias \[3\] \(model: \[256\]\)",
    )


def test_truncated_weights_and_bad_config_are_refused(editable):
    data = (editable / "model.safetensors").read_bytes()
    (editable / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors' cannot be read \(truncated"):
        load_checkpoint(editable, device="cpu")
    (editable / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config .*config.json' is not valid JSON"):
        load_checkpoint(editable, device="cpu")
    (editable / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_checkpoint(editable, device="cpu")


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"hidden_size": "big"}, r"does not describe a Qwen2.5-VL model: .*'hidden_size'.*expected int"),
        ({"vocab_size": None}, r"does not describe a Qwen2.5-VL model: .*'vocab_size'"),
        (
            {"hidden_size": 10**9},
            r"says vocab_size \d+ and hidden_size 1000000000, but the token embedding .* is \[\d+, 64\]",
        ),
        ({"sam2_image_size": "big"}, "sam2_image_size must be a whole number of pixels"),
        ({"sam2_image_size": 10**6}, "sam2_image_size must be a whole number of pixels from 64 to 4096"),
    ],
)
def test_a_config_of_the_wrong_type_or_size_is_refused_before_anything_is_built(editable, edit, message):
    """Types and sizes are checked against the weights' headers first: hidden_size 10⁹ allocates nothing."""
    config = json.loads((editable / "config.json").read_text())
    for key, value in edit.items():
        if key in config.get("text_config", {}):
            config["text_config"][key] = value
        config[key] = value
    (editable / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(editable, device="cpu")
    with pytest.raises(CheckpointError, match=message):
        describe_checkpoint(editable)


def _shard(folder, names_for):
    """Split model.safetensors into two shards; ``names_for(i)`` names shard i in the index."""
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(weights)
    halves = {0: keys[: len(keys) // 2], 1: keys[len(keys) // 2 :]}
    weight_map = {}
    for i, part in halves.items():
        save_file({k: weights[k] for k in part}, folder / f"model-0000{i + 1}-of-00002.safetensors")
        weight_map.update(dict.fromkeys(part, names_for(i)))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_sharded_checkpoint_loads(editable):
    _shard(editable, lambda i: f"model-0000{i + 1}-of-00002.safetensors")
    assert load_checkpoint(editable, device="cpu").info.layout == "official"


def test_index_naming_a_file_outside_the_folder_is_refused(editable, tmp_path):
    # a complete, valid weight file beside the folder: loading it would succeed, so only the name check stops it
    outside = tmp_path / "outside.safetensors"
    shutil.copy(editable / "model.safetensors", outside)
    _shard(editable, lambda i: "../outside.safetensors" if i else f"model-0000{i + 1}-of-00002.safetensors")
    with pytest.raises(
        CheckpointError, match=r"names '\.\./outside\.safetensors' .* not a file in the checkpoint folder"
    ):
        load_checkpoint(editable, device="cpu")
    index = json.loads((editable / "model.safetensors.index.json").read_text())
    index["weight_map"] = dict.fromkeys(index["weight_map"], str(outside))
    (editable / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file in the checkpoint folder"):
        load_checkpoint(editable, device="cpu")


def test_missing_shard_and_broken_index_are_named(editable):
    _shard(editable, lambda i: f"model-0000{i + 1}-of-00002.safetensors")
    (editable / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing from .*: model-00002-of-00002.safetensors"):
        load_checkpoint(editable, device="cpu")
    (editable / "model.safetensors.index.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="weight index .* is not valid JSON"):
        load_checkpoint(editable, device="cpu")


def test_unknown_layout_and_foreign_sam2_are_named(editable):
    weights = load_file(editable / "model.safetensors")
    save_file({"backbone." + k: v for k, v in weights.items()}, editable / "model.safetensors")
    config = json.loads((editable / "config.json").read_text())
    (editable / "config.json").write_text(json.dumps({**config, "model_type": "something_else"}))
    with pytest.raises(CheckpointError, match=r"unknown checkpoint layout .*backbone\."):
        load_checkpoint(editable, device="cpu")
    # a Hiera trunk with one block fewer than any sam2 size
    trunk = "grounding_encoder.sam2_model.image_encoder.trunk.blocks.11."
    save_file({k: v for k, v in weights.items() if not k.startswith(trunk)}, editable / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"stages \[1, 2, 7, 1\].*matches no packaged sam2 config"):
        load_checkpoint(editable, device="cpu")


def test_folder_without_safetensors_is_refused(editable):
    (editable / "model.safetensors").unlink()
    (editable / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="no safetensors weights"):
        load_checkpoint(editable, device="cpu")


def test_unreachable_hub_id_and_bad_path_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="ByteDance/Sa2VA-Qwen2_5-VL-3B.*could not be fetched"):
        load_checkpoint("ByteDance/Sa2VA-Qwen2_5-VL-3B", device="cpu")
    with pytest.raises(CheckpointError, match="not a folder"):
        load_checkpoint(tmp_path / "nowhere" / "deep" / "path", device="cpu")


def test_tokenizer_without_find_token_is_refused(editable):
    from momentseg.model.tiny import build_tiny_tokenizer

    for path in editable.glob("tokenizer*"):
        path.unlink()
    build_tiny_tokenizer(with_find=False).save_pretrained(editable)
    with pytest.raises(CheckpointError, match=r"no \[FIND\] token but the checkpoint has a \[FIND\] head"):
        load_checkpoint(editable, device="cpu")


def test_describe_and_info_command(official_checkpoint, tmp_path, capsys):
    from momentseg.model.tiny import write_tiny_checkpoint

    described = describe_checkpoint(official_checkpoint)
    assert described["layout"] == "official" and described["heads"] == ["seg", "find"]
    assert described["sam2"]["trunk"] == "hiera_t" and described["sam2"]["stages"] == [1, 2, 7, 2]
    weights = load_file(official_checkpoint / "model.safetensors")
    assert described["parameters"]["total"] == sum(t.numel() for t in weights.values())
    assert described["parameters"]["find_head"] == sum(
        t.numel() for k, t in weights.items() if k.startswith("find_hidden_fcs.")
    )
    assert described["dtype_on_disk"] == {"F32": described["parameters"]["total"]}
    assert set(described["special_tokens"]) >= {"[SEG]", "[FIND]", "<p>", "</p>"}
    assert main(["info", str(official_checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "official" in printed and "hiera_t" in printed and "[FIND]" in printed
    sa2va = write_tiny_checkpoint(tmp_path / "sa2va", "sa2va")
    assert main(["info", str(sa2va), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["will_run"][0] == "no [FIND] head: uniform keyframes, no moment"
    assert main(["info", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_dtype_option_reaches_the_loader(official_checkpoint, capsys):
    from momentseg.cli import build_parser

    parser = build_parser()
    segment = parser.parse_args(["segment", "clip.mp4", "--prompt", "p", "--checkpoint", "c", "--dtype", "float16"])
    annotate = parser.parse_args(
        ["cvat", "annotate", "--task", "1", "--prompt", "p", "--checkpoint", "c", "--dtype", "bfloat16"]
    )
    serve = parser.parse_args(["serve", "--checkpoint", "c", "--dtype", "float32"])
    assert (segment.dtype, annotate.dtype, serve.dtype) == ("float16", "bfloat16", "float32")
    assert main(["segment", "clip.mp4", "--prompt", "p", "--checkpoint", "c", "--dtype", "int8"]) == 2
    assert "invalid choice: 'int8'" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="unknown dtype 'half'"):
        load_checkpoint(official_checkpoint, device="cpu", dtype="half")
    model = load_checkpoint(official_checkpoint, device="cpu", dtype="float16")
    assert {p.dtype for p in model.lmm.model.parameters()} == {torch.float16}
