"""Which SAM2 a checkpoint holds, read from its weight shapes.

The official MomentSeg checkpoints carry SAM2 2.0 Hiera-L at 1024 px, Sa2VA the same; smaller test
checkpoints swap the trunk. The trunk's embedding width, blocks per stage and window sizes are in the
weight shapes; its head count and global-attention blocks are not, so they come from the packaged sam2
config whose trunk has the same shapes (sam2's own model sizes: tiny, small, base+, large; and this
project's own, declared as YAML files in ``momentseg/model/sam2_configs/`` and named ``momentseg:…``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise

import yaml
from sam2.modeling.backbones.hieradet import Hiera

TRUNK_PREFIX = "image_encoder.trunk."
# keys only SAM2.1 has (object-pointer temporal projection, spatial no-object embedding)
SAM2_1_ONLY_KEYS = ("obj_ptr_tpos_proj.", "no_obj_embed_spatial")
PACKAGED_CONFIG_DIRS = {"2.0": "configs/sam2", "2.1": "configs/sam2.1"}
# this project's SAM2 sizes (SAM2 2.0 architecture): config names "momentseg:sam2_configs/<file>.yaml"
PROJECT_CONFIG_PREFIX = "momentseg:"
PROJECT_CONFIG_DIR = "model/sam2_configs"


class Sam2VariantError(ValueError):
    """The SAM2 weights match no SAM2 model this sam2 package can build."""


@dataclass(frozen=True)
class Sam2Variant:
    """A SAM2 model size and version, with the Hiera trunk parameters it is built with."""

    config: str
    version: str
    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...]
    window_pos_embed_bkg_spatial_size: tuple[int, int]
    image_size: int

    @property
    def trunk(self) -> str:
        """The trunk's name as sam2 spells its configs, e.g. ``hiera_l``."""
        match = re.search(r"(hiera_[a-z+]+)\.yaml$", self.config)
        if match is None:
            raise Sam2VariantError(f"'{self.config}' is not a Hiera config (hiera_*.yaml)")
        return match.group(1)

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "version": self.version,
            "trunk": self.trunk,
            "image_size": self.image_size,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "stages": list(self.stages),
            "global_att_blocks": list(self.global_att_blocks),
            "window_spec": list(self.window_spec),
        }


def _hiera_defaults() -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(Hiera.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def project_config_file(config: str):
    """The YAML file of a project config name ("momentseg:sam2_configs/sam2_hiera_mini.yaml")."""
    name = config.removeprefix(PROJECT_CONFIG_PREFIX).split("/")[-1]
    return resources.files("momentseg").joinpath(PROJECT_CONFIG_DIR, name)


def _config_files(version: str):
    """(config name, file) of every SAM2 config of ``version``: sam2's packaged ones, then this project's."""
    packaged = resources.files("sam2").joinpath(PACKAGED_CONFIG_DIRS[version])
    yield from (
        (f"{PACKAGED_CONFIG_DIRS[version]}/{e.name}", e) for e in sorted(packaged.iterdir(), key=lambda e: e.name)
    )
    if version == "2.0":
        own = resources.files("momentseg").joinpath(PROJECT_CONFIG_DIR)
        yield from (
            (f"{PROJECT_CONFIG_PREFIX}sam2_configs/{e.name}", e) for e in sorted(own.iterdir(), key=lambda e: e.name)
        )


@cache
def packaged_trunks(version: str) -> tuple[tuple[str, dict], ...]:
    """(config name, trunk parameters) for every SAM2 config of ``version`` (sam2's and this project's)."""
    defaults = _hiera_defaults()
    found = []
    for config, entry in _config_files(version):
        if not entry.name.endswith(".yaml"):
            continue
        trunk = yaml.safe_load(entry.read_text())["model"]["image_encoder"]["trunk"]
        found.append((config, {**defaults, **trunk}))
    return tuple(found)


def _trunk_shape(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, tuple[int, ...], int, tuple[int, int]]:
    """Embedding width, blocks per stage, first window size and background pos-embed size, from weights."""
    try:
        embed_dim = shapes[TRUNK_PREFIX + "patch_embed.proj.weight"][0]
        window = shapes[TRUNK_PREFIX + "pos_embed_window"][-1]
        background_height, background_width = shapes[TRUNK_PREFIX + "pos_embed"][-2:]
    except KeyError as error:
        raise Sam2VariantError(f"the SAM2 weights have no {error.args[0]!r}: not a Hiera trunk") from error
    blocks = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(TRUNK_PREFIX) + r"blocks\.(\d+)\.", k))}
    # the first block of each later stage widens the features, so it alone has a projection
    starts = sorted(i for i in blocks if TRUNK_PREFIX + f"blocks.{i}.proj.weight" in shapes)
    bounds = [0, *starts, len(blocks)]
    stages = tuple(b - a for a, b in pairwise(bounds))
    return embed_dim, stages, window, (background_height, background_width)


def infer_sam2_variant(shapes: Mapping[str, tuple[int, ...]], image_size: int) -> Sam2Variant:
    """The SAM2 variant whose trunk has these weight shapes (keys in sam2's own names, no prefix)."""
    version = "2.1" if any(k.startswith(SAM2_1_ONLY_KEYS) for k in shapes) else "2.0"
    embed_dim, stages, window, background = _trunk_shape(shapes)
    for config, trunk in packaged_trunks(version):
        if (
            trunk["embed_dim"],
            tuple(trunk["stages"]),
            trunk["window_spec"][0],
            tuple(trunk["window_pos_embed_bkg_spatial_size"]),
        ) == (embed_dim, stages, window, background):
            return Sam2Variant(
                config=config,
                version=version,
                embed_dim=embed_dim,
                num_heads=trunk["num_heads"],
                stages=stages,
                global_att_blocks=tuple(trunk["global_att_blocks"]),
                window_spec=tuple(trunk["window_spec"]),
                window_pos_embed_bkg_spatial_size=background,
                image_size=image_size,
            )
    known = ", ".join(f"{c} (embed {t['embed_dim']}, stages {list(t['stages'])})" for c, t in packaged_trunks(version))
    raise Sam2VariantError(
        f"the SAM2 {version} trunk in the checkpoint (embed dim {embed_dim}, stages {list(stages)}, window "
        f"{window}, background pos-embed {list(background)}) matches no packaged sam2 config: {known}"
    )
