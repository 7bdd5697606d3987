"""``momentseg train``: the training loop on ``accelerate`` (DDP; one or many GPUs and nodes, or CPU processes
with gloo), bf16, gradient accumulation, resumable checkpoints, a progress bar and ``train_log.jsonl``.

Every micro-step's sample is a pure function of (seed, process rank, micro-step): resuming from step k
draws exactly the samples an uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from momentseg.data import load_entries, parse_data_spec
from momentseg.data.entries import DataError
from momentseg.devices import default_device
from momentseg.errors import plain_reason
from momentseg.train.config import TrainConfig
from momentseg.train.samples import PreparedSample, SampleBuilder

LOSS_NAMES = ("loss", "loss_find", "loss_text", "loss_mask")
STATE_FILE = "training_state.pt"


@dataclass(frozen=True)
class SampleFailure:
    """A sample that could not be built in a worker, carried back so the main process reports it plainly."""

    message: str


class MixtureOfDatasets(torch.utils.data.Dataset):
    """Indexed by micro-step: picks a dataset by its weight, then an entry, with a per-(rank, step) RNG.

    With ``group`` > 1, the ``group`` consecutive micro-steps of one optimizer step share that draw and its
    RNG (so the same keyframes) and take the clip's expressions in turn, starting from the drawn one."""

    def __init__(
        self, datasets: list[tuple[list, float]], builder: SampleBuilder, seed: int, rank: int, group: int = 1
    ):
        self.datasets = [entries for entries, _ in datasets]
        weights = np.array([w for _, w in datasets], float)
        self.weights = weights / weights.sum()
        self.builder = builder
        self.seed = seed
        self.rank = rank
        self.group = group
        self.siblings = [_siblings(entries) for entries in self.datasets]

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> PreparedSample | SampleFailure:
        rng = np.random.default_rng([self.seed, self.rank, step // self.group if self.group > 1 else step])
        dataset = rng.choice(len(self.datasets), p=self.weights)
        index = int(rng.integers(len(self.datasets[dataset])))
        if self.group > 1:
            clip = self.siblings[dataset][index]
            index = clip[(clip.index(index) + step % self.group) % len(clip)]
        entry = self.datasets[dataset][index]
        try:
            return self.builder.build(entry, rng)
        except DataError as error:
            return SampleFailure(str(error))
        except (OSError, ValueError) as error:  # an unreadable or damaged frame or mask file
            name = getattr(entry, "name", None) or getattr(entry, "video_id", "a sample")
            return SampleFailure(f"{name}: {plain_reason(error)}")


def _siblings(entries: list) -> list[list[int]]:
    """For each entry, the indices of the entries of the same video (itself included), in order."""
    by_video: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        by_video.setdefault(entry.video_id, []).append(index)
    return [by_video[entry.video_id] for entry in entries]


def _identity(sample):
    return sample


def _failure_on_any_rank(sample, accelerator) -> str | None:
    """The first failed sample of this micro-step on any rank, the same text on every rank: the ranks stop
    together with one error instead of waiting in a collective for the one that stopped."""
    mine = sample.message if isinstance(sample, SampleFailure) else None
    if accelerator.num_processes == 1:
        return mine
    from accelerate.utils import gather_object

    failed = [(rank, message) for rank, message in enumerate(gather_object([mine])) if message]
    return f"rank {failed[0][0]}: {failed[0][1]}" if failed else None


def _rank_checksums(parameters: Sequence[torch.Tensor], accelerator) -> list[float]:
    """Σ of every trainable value, from each rank: DDP keeps them equal, so a difference is a desync."""
    from accelerate.utils import gather_object

    total = float(sum(p.detach().double().sum() for p in parameters))
    return gather_object([total]) if accelerator.num_processes > 1 else [total]


def _checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in (out / "checkpoints").glob("step_*") if (p / STATE_FILE).exists())


def _save_state(out: Path, step: int, module, optimizer, keep: int) -> None:
    folder = out / "checkpoints" / f"step_{step:08d}"
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"step": step, "trainable": module.trainable_state(), "optimizer": optimizer.state_dict()}, partial / STATE_FILE
    )
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)  # a crash mid-write never leaves a checkpoint that looks complete
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old)


def _mixed_precision(config: TrainConfig, device: str) -> str:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "no"


def _summarise(sums: dict[str, torch.Tensor], accelerator) -> dict[str, float | None]:
    """Mean of each loss over the micro-steps (and processes) where it occurred; None where it never did."""
    stacked = torch.stack([sums[n] for n in LOSS_NAMES])  # [4, 2]: (sum, count)
    total = accelerator.reduce(stacked.to(accelerator.device), reduction="sum").cpu()
    return {
        n: (round(float(s / c), 6) if c > 0 else None) for n, (s, c) in zip(LOSS_NAMES, total.tolist(), strict=True)
    }


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path | None:
    """Train from ``config.base`` on ``config.data``; returns the final checkpoint's folder (None on ranks > 0)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from momentseg.model.checkpoint import load_checkpoint, save_checkpoint
    from momentseg.train.model import TrainableMomentSeg, add_find_token

    config.validate()
    out = Path(config.out)
    device = config.device or default_device()
    micro_steps = config.batch_size * config.grad_accumulation
    accelerator = Accelerator(
        cpu=device == "cpu",
        mixed_precision=_mixed_precision(config, device),
        gradient_accumulation_steps=micro_steps,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(config.seed)
    specs = [parse_data_spec(text) for text in config.data]
    datasets = [(load_entries(spec), spec.weight) for spec in specs]

    # frozen weights in the compute dtype, trainable parts in float32 (autocast does the rest)
    weights_dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    model = add_find_token(load_checkpoint(config.base, device=accelerator.device, dtype=weights_dtype))
    module = TrainableMomentSeg(model, config.parts())
    for part in (module.seg_projector, module.find_head, module.predictor):
        part.float()
    builder = SampleBuilder.for_model(model, config.recipe())

    trainable = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.999),
    )
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * config.max_steps), config.max_steps
    )
    start_step = 0
    if resume:
        saved = _checkpoints(out)
        if not saved:
            raise DataError(f"--resume: no saved training state under '{out / 'checkpoints'}'")
        state = torch.load(saved[-1] / STATE_FILE, map_location="cpu", weights_only=True)
        module.load_trainable_state(state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        with warnings.catch_warnings():  # replaying the schedule (for this run's max_steps) steps no optimizer
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_step):
                scheduler.step()
    wrapped, optimizer = accelerator.prepare(module, optimizer)
    wrapped.train()
    module.predictor.eval()  # SAM2 has no dropout to train with; keep its batch-independent behaviour

    mixture = MixtureOfDatasets(
        datasets, builder, config.seed, accelerator.process_index, micro_steps if config.group_expressions else 1
    )
    loader = torch.utils.data.DataLoader(
        mixture,
        sampler=range(start_step * micro_steps, config.max_steps * micro_steps),
        batch_size=None,
        collate_fn=_identity,
        num_workers=config.num_workers,
        persistent_workers=False,
        prefetch_factor=2 if config.num_workers else None,
    )
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    log_path = out / "train_log.jsonl"
    bar = tqdm(
        total=config.max_steps,
        initial=start_step,
        desc="train",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    step = start_step
    sums = {n: torch.zeros(2) for n in LOSS_NAMES}
    started = time.perf_counter()
    for sample in loader:
        failure = _failure_on_any_rank(sample, accelerator)
        if failure:
            raise DataError(failure)
        with accelerator.accumulate(wrapped):
            losses = wrapped(sample)
            accelerator.backward(losses["loss"])
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        for name in LOSS_NAMES:
            if losses[name] is not None:
                sums[name] += torch.tensor([float(losses[name].detach()), 1.0])
        if not accelerator.sync_gradients:
            continue
        step += 1
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        row = {
            "step": step,
            **_summarise(sums, accelerator),
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 3),
            "processes": accelerator.num_processes,
            "rank_checksums": _rank_checksums(trainable, accelerator),
        }
        sums = {n: torch.zeros(2) for n in LOSS_NAMES}
        if accelerator.is_main_process:
            with log_path.open("a") as log:
                log.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=row["loss"])
        bar.update(1)
        if step % config.save_every == 0 or step == config.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_state(out, step, module, optimizer, config.keep_checkpoints)
    bar.close()
    accelerator.wait_for_everyone()
    final = out / "checkpoint"
    if accelerator.is_main_process:
        trained = module.merged_model()
        save_checkpoint(trained, final, layout="official")
    accelerator.wait_for_everyone()
    return final if accelerator.is_main_process else None
