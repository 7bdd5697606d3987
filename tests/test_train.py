"""momentseg train on tiny random-weight models and tiny synthetic datasets in the official layouts."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from momentseg.cli import main
from momentseg.data.synthetic import SyntheticOptions, generate
from momentseg.train.config import TrainConfig, load_config
from momentseg.train.loop import train

SMALL = dict(
    device="cpu",
    batch_size=1,
    lr=3e-3,
    warmup_ratio=0.0,
    lora_rank=8,
    lora_alpha=16,
    num_workers=0,
    tsg_frames=8,
    temporal_frames=4,
    tsg_min_pixels=3136,
    tsg_pixels=3136,
    temporal_min_pixels=3136,
    temporal_pixels=3136,
    image_min_pixels=3136,
    image_pixels=3136,
    mask_points=1024,
    keyframes=3,
    answer_variants="first",
)
STEPS = 30


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("synth"),
        train_clips=6,
        test_clips=2,
        seed=3,
        options=SyntheticOptions(frames=8, actions=("appears",)),
    )


def data_args(root):
    return [f"charades-sta={root / 'charades-sta'}", f"mevis={root / 'mevis'}"]


@pytest.fixture(scope="module")
def trained(synth, sa2va_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    config = TrainConfig(
        base=str(sa2va_checkpoint), data=data_args(synth), out=str(out), max_steps=STEPS, save_every=STEPS, **SMALL
    )
    final = train(config, progress=False)
    return out, final


def read_log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def mean(rows, key):
    values = [r[key] for r in rows if r[key] is not None]
    return sum(values) / len(values)


def test_the_logged_losses_fall(trained):
    out, _ = trained
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert set(log[0]) >= {"step", "loss", "loss_find", "loss_text", "loss_mask", "lr"}
    head, tail = log[:8], log[-8:]
    for key in ("loss", "loss_text", "loss_find", "loss_mask"):
        assert mean(tail, key) < mean(head, key), key


def test_the_trained_checkpoint_is_official_and_grounds_a_moment(trained, synth, sa2va_checkpoint, tmp_path):
    from momentseg.data import load_entries, parse_data_spec
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.model.tiny import write_tiny_checkpoint
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions

    _, final = trained
    official = write_tiny_checkpoint(tmp_path / "official", "official")

    def keys(folder):
        with safe_open(str(folder / "model.safetensors"), "pt") as handle:
            return set(handle.keys())

    assert keys(final) == keys(official)
    model = load_checkpoint(final, device="cpu")
    assert model.find_head is not None and model.info.layout == "official"
    entry = load_entries(parse_data_spec(f"mevis={synth / 'mevis'}"), "valid_u")[0]
    # the answers teacher-forced (the spec's design): a tiny random LM does not learn in 30 steps to tell
    # the TSG question from the RefVOS one when generating
    options = SegmentOptions(
        keyframes=4, tsg_pixels=3136, tsg_min_pixels=3136, image_pixels=3136, image_min_pixels=3136, force_answer=True
    )
    result = MomentSegPipeline(model).run(entry.open_frames(), entry.expression, options)
    assert result.moment is not None and 0 <= result.moment.start_frame <= result.moment.end_frame < 8
    assert len(result.similarity) == 8
    untrained = MomentSegPipeline(load_checkpoint(sa2va_checkpoint, device="cpu"))
    assert untrained.run(entry.open_frames(), entry.expression, options).moment is None


def test_the_trained_model_finds_the_moment_the_data_puts_in_each_clip(trained, synth, sa2va_checkpoint):
    """L_find against the moments synth wrote: on the clips it trained on, S is higher inside each clip's
    moment than outside it, on most clips and by more than the same model before training."""
    from momentseg.data import load_entries, parse_data_spec
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions
    from momentseg.train.model import add_find_token

    options = SegmentOptions(tsg_pixels=3136, tsg_min_pixels=3136, force_answer=True)
    entries = load_entries(parse_data_spec(f"charades-sta={synth / 'charades-sta'}"), "train")

    def contrasts(model):
        pipeline, values = MomentSegPipeline(model), []
        for entry in entries:
            similarity = pipeline.ground(entry.open_frames(), entry.query, options).similarity  # 1 FPS
            inside = np.zeros(len(similarity), bool)
            inside[int(entry.start) : int(np.ceil(entry.end))] = True
            assert inside.any() and not inside.all(), "the data must put the moment somewhere specific"
            values.append(similarity[inside].mean() - similarity[~inside].mean())
        return np.array(values)

    torch.manual_seed(0)  # the [FIND] head training starts from (train seeds 0 before adding it)
    before = contrasts(add_find_token(load_checkpoint(sa2va_checkpoint, device="cpu")))
    after = contrasts(load_checkpoint(trained[1], device="cpu"))
    assert len(after) >= 4
    assert after.mean() > 0.05 and after.mean() > before.mean() + 0.05 and (after > 0).mean() > 0.5, (before, after)


def test_lora_attaches_to_the_language_layers_only(synth):
    """Every LoRA adapter sits on a projection of a text decoder layer, all seven of them in each layer;
    the vision tower, SAM2 and the heads get none."""
    from momentseg.model.tiny import build_tiny_model
    from momentseg.train.config import TrainableParts
    from momentseg.train.model import TrainableMomentSeg, add_find_token

    module = TrainableMomentSeg(add_find_token(build_tiny_model("sa2va")), TrainableParts(lora_rank=4, lora_alpha=8))
    adapted = sorted({name.rsplit(".lora_", 1)[0] for name, _ in module.named_parameters() if ".lora_" in name})
    layers = module.inner.config.get_text_config().num_hidden_layers
    projections = {
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    }
    expected = sorted(
        f"qwen.base_model.model.model.language_model.layers.{i}.{p}" for i in range(layers) for p in projections
    )
    assert adapted == expected
    trainable_lora = [n for n, p in module.named_parameters() if p.requires_grad and ".lora_" in n]
    assert trainable_lora and all("language_model.layers." in n for n in trainable_lora)
    assert not any("visual" in n or n.startswith(("predictor", "base.")) for n in trainable_lora)


def test_the_vision_tower_trains_only_when_asked():
    from momentseg.model.tiny import build_tiny_model
    from momentseg.train.config import TrainableParts
    from momentseg.train.model import TrainableMomentSeg, add_find_token

    for asked in (False, True):
        parts = TrainableParts(lora_rank=4, lora_alpha=8, train_vision_tower=asked)
        module = TrainableMomentSeg(add_find_token(build_tiny_model("sa2va")), parts)
        trainable = {n for n, p in module.named_parameters() if p.requires_grad}
        visual = {n for n, _ in module.named_parameters() if ".visual." in n}
        assert visual and (visual <= trainable if asked else not visual & trainable)


def test_a_base_with_tied_embeddings_is_untied_and_its_special_rows_train(synth, tmp_path, caplog):
    """A base whose LM head shares the input embedding (Qwen2.5-VL-3B's config) trains and saves: the two
    are untied with a note, and the [SEG]/[FIND] rows trained in each stay in the checkpoint."""
    from safetensors.torch import load_file, save_file

    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.model.tiny import write_tiny_checkpoint

    base = write_tiny_checkpoint(tmp_path / "tied", "sa2va")
    config = json.loads((base / "config.json").read_text())
    config["tie_word_embeddings"] = config["text_config"]["tie_word_embeddings"] = True
    (base / "config.json").write_text(json.dumps(config))
    weights = load_file(base / "model.safetensors")
    embedding = weights["model.model.language_model.embed_tokens.weight"]
    weights["model.lm_head.weight"] = embedding.clone()
    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})

    with caplog.at_level("WARNING", logger="momentseg.train.model"):
        final = train(
            TrainConfig(
                base=str(base), data=data_args(synth), out=str(tmp_path / "out"), max_steps=3, save_every=3, **SMALL
            ),
            progress=False,
        )
    assert "unties them" in caplog.text
    saved = json.loads((final / "config.json").read_text())
    assert saved["tie_word_embeddings"] is False
    model = load_checkpoint(final, device="cpu")
    qwen = model.lmm.model
    tokenizer = model.lmm.processor.tokenizer
    seg = tokenizer.convert_tokens_to_ids("[SEG]")
    rows_in, rows_out = qwen.get_input_embeddings().weight, qwen.get_output_embeddings().weight
    assert rows_in.data_ptr() != rows_out.data_ptr()
    assert not torch.equal(rows_in[seg], embedding[seg].to(rows_in.dtype))  # the input row trained, not overwritten
    assert not torch.equal(rows_in[seg], rows_out[seg])


def test_resume_continues_from_the_saved_step(synth, sa2va_checkpoint, tmp_path):
    from transformers import get_cosine_schedule_with_warmup

    common = dict(
        base=str(sa2va_checkpoint),
        data=data_args(synth),
        out=str(tmp_path),
        save_every=2,
        **{**SMALL, "warmup_ratio": 0.25},
    )
    train(TrainConfig(max_steps=2, **common), progress=False)
    state = torch.load(tmp_path / "checkpoints" / "step_00000002" / "training_state.pt", weights_only=True)
    assert state["step"] == 2
    train(TrainConfig(max_steps=4, **common), resume=True, progress=False)
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=SMALL["lr"])
    schedule = get_cosine_schedule_with_warmup(optimizer, 1, 4)
    expected = []
    for _ in range(4):
        expected.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert [r["lr"] for r in log[2:]] == pytest.approx(expected[2:])
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == ["step_00000002", "step_00000004"]


def test_resume_without_saved_state_is_a_clear_error(synth, sa2va_checkpoint, tmp_path, capsys):
    code = main(
        [
            "train",
            "--base",
            str(sa2va_checkpoint),
            "--data",
            f"mevis={synth / 'mevis'}",
            "--out",
            str(tmp_path),
            "--max-steps",
            "1",
            "--device",
            "cpu",
            "--resume",
            "--quiet",
        ]
    )
    assert code == 2
    assert "no saved training state" in capsys.readouterr().err


def test_bad_data_is_a_one_line_error(sa2va_checkpoint, tmp_path, capsys):
    code = main(
        [
            "train",
            "--base",
            str(sa2va_checkpoint),
            "--data",
            f"mevis={tmp_path / 'absent'}",
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "absent" in err and len(err.splitlines()) == 1


def test_yaml_config_then_flags(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.001\nlora_rank: 16\nkeyframes: 3\n")
    config = load_config(path, {"lr": 0.002, "max_steps": None})
    assert (config.lr, config.lora_rank, config.keyframes, config.max_steps) == (0.002, 16, 3, TrainConfig().max_steps)
    assert (TrainConfig().lr, TrainConfig().tau, TrainConfig().positive_weight) == (4e-5, 0.07, 2.0)
    path.write_text("learning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown option.*learning_rate"):
        load_config(path, {})


def test_a_switch_in_the_config_file_holds_unless_the_flag_is_given(tmp_path):
    from momentseg.cli import build_parser
    from momentseg.train.cli import train_config

    path = tmp_path / "config.yaml"
    path.write_text("train_vision_tower: true\ntrain_image_encoder: true\n")
    parse = build_parser().parse_args
    config = train_config(parse(["train", "--config", str(path)]))
    assert (config.train_vision_tower, config.train_image_encoder, config.gradient_checkpointing) == (True, True, False)
    config = train_config(parse(["train", "--gradient-checkpointing"]))
    assert (config.train_vision_tower, config.gradient_checkpointing) == (False, True)


def test_find_targets_mark_the_patches_inside_the_moment():
    from momentseg.train.samples import find_targets

    # 1 FPS, frames 0..7, moment [2, 6) s → frames 2..5 → patches (2,3), (4,5)
    assert find_targets(np.arange(8), 1.0, 2.0, 6.0).tolist() == [0, 1, 1, 0]
    # odd count: the last frame is repeated into the final patch
    assert find_targets(np.arange(5), 1.0, 4.0, 5.0).tolist() == [0, 0, 1]


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(synth):
    from momentseg.data import load_entries, parse_data_spec
    from momentseg.model.tiny import build_tiny_model
    from momentseg.train.config import SampleRecipe, TrainableParts
    from momentseg.train.model import TrainableMomentSeg, add_find_token
    from momentseg.train.samples import SampleBuilder

    entry = load_entries(parse_data_spec(f"charades-sta={synth / 'charades-sta'}"))[0]
    results = []
    for checkpointing in (False, True):
        model = add_find_token(build_tiny_model("sa2va", seed=1))
        module = TrainableMomentSeg(
            model, TrainableParts(lora_rank=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=checkpointing)
        ).train()
        recipe = SampleRecipe(tsg_frames=8, tsg_min_pixels=3136, tsg_pixels=3136)
        sample = SampleBuilder.for_model(model, recipe).build(entry, np.random.default_rng(0))
        torch.manual_seed(0)
        loss = module(sample)["loss"]
        loss.backward()
        results.append((loss.item(), module.find_head[0].weight.grad.clone()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


def test_mrope_positions_of_a_sample_mixing_a_video_and_an_image():
    """A RefVOS sample: text, the video, text, a keyframe image, text. The video's temporal ids step by
    tokens_per_second; the image's are 0 within it; each text run continues after the largest id so far."""
    import torch

    from momentseg.train.samples import VisionBlock, position_ids

    video, image = 7, 8
    ids = torch.tensor([5, *[video] * 8, 9, 9, *[image] * 4, 9])  # video (t=2, h=4, w=4): 8 tokens; image: 4
    blocks = [VisionBlock(None, [2, 4, 4], True), VisionBlock(None, [1, 4, 4], False)]
    positions = position_ids(ids, blocks, video, image, tokens_per_second=2.0)[:, 0]
    assert positions.shape == (3, len(ids))
    assert positions[:, 0].tolist() == [0, 0, 0]
    assert positions[0, 1:9].tolist() == [1, 1, 1, 1, 3, 3, 3, 3]  # 1 + 2t
    assert positions[1, 1:9].tolist() == [1, 1, 2, 2, 1, 1, 2, 2]  # 1 + h
    assert positions[2, 1:9].tolist() == [1, 2, 1, 2, 1, 2, 1, 2]  # 1 + w
    assert positions[:, 9:11].tolist() == [[4, 5]] * 3  # after the video's largest id 3
    assert positions[0, 11:15].tolist() == [6, 6, 6, 6]  # an image has one temporal id
    assert positions[1, 11:15].tolist() == [6, 6, 7, 7] and positions[2, 11:15].tolist() == [6, 7, 6, 7]
    assert positions[:, 15].tolist() == [8, 8, 8]


def test_grouped_expressions_give_one_optimizer_step_every_object_of_a_clip(synth, sa2va_checkpoint):
    from momentseg.data import load_entries, parse_data_spec
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.train.loop import MixtureOfDatasets
    from momentseg.train.samples import SampleBuilder

    entries = load_entries(parse_data_spec(f"mevis={synth / 'mevis'}"))
    objects = {e.video_id: {x.expression for x in entries if x.video_id == e.video_id} for e in entries}
    assert min(len(names) for names in objects.values()) == 2  # a target and a distractor per clip
    config = TrainConfig(**SMALL)
    builder = SampleBuilder.for_model(load_checkpoint(str(sa2va_checkpoint), device="cpu"), config.recipe())
    grouped = MixtureOfDatasets([(entries, 1.0)], builder, seed=0, rank=0, group=2)
    for step in range(0, 16, 2):
        first, second = grouped[step], grouped[step + 1]
        video = first.name.split("/")[0]
        assert second.name.split("/")[0] == video and second.name != first.name
        assert first.kind == second.kind
        if first.kind == "refvos":  # the same keyframes, so only the sentence tells the two samples apart
            assert torch.equal(first.sam_images, second.sam_images)
            assert not torch.equal(first.masks, second.masks)
    single = MixtureOfDatasets([(entries, 1.0)], builder, seed=0, rank=0)
    pairs = [(single[s].name.split("/")[0], single[s + 1].name.split("/")[0]) for s in range(0, 16, 2)]
    assert any(a != b for a, b in pairs)  # ungrouped, consecutive micro-steps draw clips independently
