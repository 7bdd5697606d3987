"""The tiny checkpoint the authors' own model class saved (the parity reference, docs/official.md) loads into ours."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from momentseg.model.checkpoint import OFFICIAL, load_checkpoint, plan_checkpoint, save_checkpoint
from momentseg.model.official import TEXT_FIELDS, VISION_FIELDS, qwen_config_from_official


@pytest.fixture(scope="module")
def model(official_reference):
    return load_checkpoint(official_reference, device="cpu", dtype="float32")


def _shapes(folder):
    with safe_open(folder / "model.safetensors", "pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


def test_every_weight_is_translated_and_loaded_unchanged(official_reference):
    model = load_checkpoint(official_reference, device="cpu", dtype="float32", bfloat16_weights=False)
    with safe_open(official_reference / "model.safetensors", "pt") as handle:
        on_disk = {key: handle.get_tensor(key) for key in handle.keys()}
    loaded = {
        OFFICIAL.disk_key(part, key): tensor
        for part, module in model.parts().items()
        for key, tensor in module.state_dict().items()
    }
    assert loaded.keys() == on_disk.keys()
    assert all(torch.equal(loaded[key], on_disk[key]) for key in on_disk)
    # the 4.51 names become transformers 5's
    qwen_keys = set(model.lmm.model.state_dict())
    assert "model.language_model.layers.0.self_attn.q_proj.weight" in qwen_keys
    assert "model.visual.blocks.0.attn.qkv.weight" in qwen_keys and "lm_head.weight" in qwen_keys
    gamma = model.predictor.memory_encoder.fuser.layers[0].gamma
    assert torch.equal(gamma, on_disk["grounding_encoder.sam2_model.memory_encoder.fuser.layers.0.g_weight"])


def test_layout_heads_tokens_and_sam2_trunk(model, official_reference):
    plan = plan_checkpoint(official_reference)
    assert plan.layout is OFFICIAL and model.info.layout == "official"
    assert model.info.heads == ("seg", "find")
    assert (model.lmm.seg_token_id, model.lmm.find_token_id) == (300, 301)
    assert isinstance(model.find_head[1], nn.ReLU) and model.image_projector is not None
    assert model.lmm.model.config.text_config.vocab_size == 320  # tokens added without resizing
    sam2 = plan.sam2
    assert (sam2.version, sam2.trunk, sam2.image_size) == ("2.0", "hiera_t", 1024)
    assert (sam2.embed_dim, sam2.stages, sam2.global_att_blocks) == (96, (1, 2, 7, 2), (5, 7, 9))
    trunk = model.predictor.image_encoder.trunk
    assert len(trunk.blocks) == 12 and list(trunk.global_att_blocks) == [5, 7, 9]
    assert model.predictor.image_size == 1024


def test_bfloat16_load(official_reference):
    model = load_checkpoint(official_reference, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.lmm.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.find_head.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.predictor.parameters()} == {torch.float32}


def test_sam2_gives_the_official_keyframe_decode(model, official_reference):
    """The first SAM2 call of the official run through our ``Sam2Tracker``: frame 18 with the official [SEG]
    prompt, no memory, multimask: the same predicted IoU, object score and mask (a keyframe's output is
    its own decode)."""
    from momentseg.model.sam2_tracker import Sam2Tracker

    outputs = official_reference / "outputs"
    arrays = np.load(outputs / "official_reference_tiny_fp32.npz")
    event = json.loads((outputs / "official_reference_tiny_fp32.json").read_text())["sam2_events"][0]
    assert (event["phase"], event["frame"], event["multimask"]) == ("keyframe_decode", 18, True)
    prompt = torch.from_numpy(arrays["seg_embedding"][0])
    tracker = Sam2Tracker(model.predictor, list(arrays["frames"]), prompt=prompt, dtype=torch.float32)
    decoded = tracker.decode_prompt(18, prompt)
    assert decoded.iou == pytest.approx(max(event["ious"]), abs=2e-3)
    assert decoded.object_score_logit == pytest.approx(event["object_score_logit"], abs=5e-3)
    official = arrays["masks"][18]
    assert (decoded.mask & official).sum() / max((decoded.mask | official).sum(), 1) >= 0.99


def test_our_official_tiny_has_the_reference_keys_and_config(tmp_path, official_reference):
    from momentseg.model.tiny import write_tiny_checkpoint

    ours = write_tiny_checkpoint(tmp_path / "ours", "official", sam2_image_size=1024)
    assert _shapes(ours) == _shapes(official_reference)
    reference_config = json.loads((official_reference / "config.json").read_text())
    our_config = json.loads((ours / "config.json").read_text())
    assert our_config["model_type"] == reference_config["model_type"] == "momentseg_chat"
    assert set(our_config) - set(reference_config) == set()
    reference_qwen, our_qwen = qwen_config_from_official(reference_config), qwen_config_from_official(our_config)
    fields = {"text_config": [*TEXT_FIELDS, "rope_parameters"], "vision_config": [*VISION_FIELDS, "in_channels"]}
    for part, names in fields.items():
        names = [n for n in names if not n.endswith("token_id")]
        reference_part, our_part = getattr(reference_qwen, part), getattr(our_qwen, part)
        assert {n: getattr(our_part, n) for n in names} == {n: getattr(reference_part, n) for n in names}


def test_saving_the_reference_in_the_official_layout_keeps_every_key(model, tmp_path, official_reference):
    saved = save_checkpoint(model, tmp_path / "again")
    assert _shapes(saved) == _shapes(official_reference)
    again = load_checkpoint(saved, device="cpu")
    assert again.info.layout == "official" and (again.lmm.seg_token_id, again.lmm.find_token_id) == (300, 301)
