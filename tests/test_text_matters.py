"""Training makes the text matter: on clips holding a red and a white square that move apart, `momentseg
train` from a tiny random Sa2VA-layout base learns to segment the square the sentence names. A model that
ignores the sentence scores about 0.5 J at best (it can only pick one square, or both); the trained model is
scored against the untrained base and against itself prompted with the other square's expression."""

import numpy as np
import pytest
import torch

from momentseg.cli import main
from momentseg.data.synthetic import BACKGROUND, COLOURS, Clip, Referent, draw, write_split
from momentseg.evaluate import EvalOptions, evaluate
from momentseg.model.tiny import MINI_SAM2_CONFIG, write_tiny_checkpoint

FRAMES, SIZE, RADIUS = 8, 64, 9
STEPS = 300
TRAIN = [
    "--device",
    "cpu",
    "--batch-size",
    "2",
    "--lr",
    "1e-3",
    "--lora-rank",
    "32",
    "--lora-alpha",
    "64",
    "--warmup-ratio",
    "0.05",
    "--num-workers",
    "0",
    "--keyframes",
    "3",
    "--temporal-frames",
    "4",
    "--answer-variants",
    "first",
    "--quiet",
]
PIXELS = 56 * 56


def squares_moving_apart(rng: np.random.Generator, name: str) -> Clip:
    """A red and a white square that start close together and move apart in a random direction."""
    middle = rng.uniform(26, 38, 2)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    colours = ["red", "white"]
    rng.shuffle(colours)
    frames, masks = [], [[], []]
    for t in range(FRAMES):
        frame = np.full((SIZE, SIZE, 3), BACKGROUND, np.uint8)
        for index, sign in enumerate((1, -1)):
            centre = np.clip(middle + sign * direction * (7 + 2.5 * t), RADIUS + 1, SIZE - RADIUS - 1)
            draw(frame, "square", COLOURS[colours[index]], centre, RADIUS)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            draw(mask, "square", 1, centre, RADIUS)
            masks[index].append(mask.astype(bool))
        frames.append(frame)
    return Clip(name, frames, [Referent(f"the {colour} square", m) for colour, m in zip(colours, masks, strict=True)])


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(7)
    write_split(root, [squares_moving_apart(rng, f"train_{i:03d}") for i in range(40)], "train", "train")
    write_split(root, [squares_moving_apart(rng, f"test_{i:03d}") for i in range(6)], "valid_u", "test")
    return root / "mevis"


def held_out_j(checkpoint, mevis, out) -> dict:
    method = dict(keyframes=FRAMES, image_pixels=PIXELS, image_min_pixels=PIXELS, force_answer=True)
    options = EvalOptions(method=method, device="cpu", progress=False, text_check=True)
    summary = evaluate(str(checkpoint), f"mevis={mevis}", out, options)["summary"]
    return {"J": summary["J"] / 100, "J other": summary["text check"]["J other object's expression"] / 100}


@pytest.fixture
def one_thread():
    """On a shared, loaded machine two OpenMP threads spin against each other: a step takes 3 s instead of 0.4 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_makes_the_sentence_pick_the_square(squares, tmp_path, one_thread):
    # a base whose words reach [SEG] from the start: text layers of std 0.3, [SEG] projection at SAM2's scale
    base = write_tiny_checkpoint(
        tmp_path / "base", "sa2va", sam2_config=MINI_SAM2_CONFIG, initializer_range=0.3, seg_prompt_std=1.0
    )
    pixels = [f"--{kind}-{bound}pixels" for kind in ("tsg", "temporal", "image") for bound in ("min-", "")]
    sizes = [value for flag in pixels for value in (flag, str(PIXELS))]
    config = tmp_path / "train.yaml"
    # the loss on the uncertain points (where the two squares compete); each optimizer step holds both squares'
    # sentences of one clip on the same keyframes, so ignoring the sentence cannot lower the step's mask loss
    config.write_text("mask_points: 1024\ngroup_expressions: true\n")
    assert (
        main(
            [
                "train",
                "--base",
                str(base),
                "--data",
                f"mevis={squares}",
                "--out",
                str(tmp_path / "run"),
                "--config",
                str(config),
                "--max-steps",
                str(STEPS),
                "--save-every",
                str(STEPS),
                *TRAIN,
                *sizes,
            ]
        )
        == 0
    )

    before = held_out_j(base, squares, tmp_path / "eval_base")
    after = held_out_j(tmp_path / "run" / "checkpoint", squares, tmp_path / "eval_trained")
    assert before["J"] < 0.5  # a random model does not know which square
    assert after["J"] >= 0.6 and after["J"] >= before["J"] + 0.3, (before, after)
    # the sentence decides: prompted with the other square's words, it segments the other square
    assert after["J other"] <= after["J"] - 0.3, after


def test_the_video_token_scale_multiplies_what_the_vision_tower_hands_the_text_layers():
    from momentseg.model.lmm import normalized_frame, vision_patches
    from momentseg.model.tiny import build_tiny_model

    frames = [np.random.default_rng(i).integers(0, 255, (SIZE, SIZE, 3), np.uint8) for i in range(2)]
    patches, grid = vision_patches([normalized_frame(f, PIXELS, PIXELS) for f in frames])
    tokens = []
    for scale in (1.0, 10.0):
        qwen = build_tiny_model("sa2va", 0, initializer_range=0.15, video_token_scale=scale).lmm.model
        with torch.no_grad():
            features = qwen.model.get_video_features(torch.as_tensor(patches), torch.tensor([grid]))
        tokens.append(torch.cat(list(features.pooler_output)))
    assert torch.allclose(tokens[1], 10 * tokens[0], rtol=1e-4, atol=1e-5)


def test_the_attention_initializer_range_sets_only_the_queries_and_keys():
    from momentseg.model.tiny import build_tiny_model

    layers = build_tiny_model("sa2va", 0, initializer_range=0.15, attention_initializer_range=0.02).lmm.model
    for layer in layers.model.language_model.layers:
        attention = layer.self_attn
        assert abs(attention.q_proj.weight.std().item() - 0.02) < 0.005
        assert abs(attention.k_proj.weight.std().item() - 0.02) < 0.005
        assert abs(attention.v_proj.weight.std().item() - 0.15) < 0.03
        assert abs(layer.mlp.up_proj.weight.std().item() - 0.15) < 0.03
