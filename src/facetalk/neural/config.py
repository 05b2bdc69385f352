"""The base model's architecture as data (config.json of a base folder), without torch.

Layer names are fixed by the architecture, so LoRA target modules can be named before a
model exists: `enc.{i}.conv1` / `conv2` (encoder level i), `dec.{i}.conv1` / `conv2`,
`mid.res1.conv1` ..., `mid.attn.qkv` / `mid.attn.proj` (the bottleneck self-attention),
`stem`, `down.{i}`, `up.{i}`, `out`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .data import COND_CHANNELS

ARCHITECTURE = "facetalk-mouth-unet"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class ModelConfig:
    """size: crop side in pixels (a multiple of 2 ** (len(channels) - 1) * 4);
    channels: per U-Net level, the first at full resolution; groups: GroupNorm groups;
    heads: attention heads at the bottleneck; residual: the output is the reference
    crop's lower half plus the network's correction (its last layer starts at zero, so
    an untrained model repaints the reference's mouth)."""

    size: int = 256
    channels: tuple[int, ...] = (32, 64, 128, 256)
    groups: int = 8
    heads: int = 4
    cond_channels: int = COND_CHANNELS
    residual: bool = True
    architecture: str = ARCHITECTURE

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        step = 2 ** (len(self.channels) - 1)
        if len(self.channels) < 2 or self.size % (4 * step):
            raise ValueError(f"size {self.size} must be a multiple of {4 * step} for {len(self.channels)} levels")
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"every channel count must be a multiple of groups={self.groups}")
        if self.channels[-1] % self.heads:
            raise ValueError(f"the last channel count must be a multiple of heads={self.heads}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def layer_names(self) -> list[tuple[str, int, int]]:
        """(name, in channels, out channels) of every conv / linear LoRA may target."""
        ch = self.channels
        out: list[tuple[str, int, int]] = []
        for i, c in enumerate(ch):
            cin = ch[0] if i == 0 else ch[i - 1]
            out += [(f"enc.{i}.conv1", cin, c), (f"enc.{i}.conv2", c, c)]
        for r in ("res1", "res2"):
            out += [(f"mid.{r}.conv1", ch[-1], ch[-1]), (f"mid.{r}.conv2", ch[-1], ch[-1])]
        out += [("mid.attn.qkv", ch[-1], 3 * ch[-1]), ("mid.attn.proj", ch[-1], ch[-1])]
        for i, c in enumerate(ch):
            out += [(f"dec.{i}.conv1", 2 * c, c), (f"dec.{i}.conv2", c, c)]
        return out

    def default_targets(self, rank: int) -> list[str]:
        """LoRA targets by default: the attention, and the block convs wide enough that a
        rank-`rank` adapter stays small next to them (at least 16 * rank output channels);
        the full-resolution levels, where a LoRA would cost a large share of a thin
        layer, keep the base's weights."""
        return [name for name, _, cout in self.layer_names() if cout >= 16 * rank or ".attn." in name]


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained (kept in config.json / the checkpoint).

    steps: optimiser steps; batch: crops per step; lr: Adam learning rate; ssim_weight:
    weight of (1 - SSIM) against L1 (both on the lower half); gan_weight: weight of the
    patch discriminator's least-squares loss (0: no discriminator); seed: every random
    choice (init, batches) follows from it, so a resumed run repeats an uninterrupted one;
    checkpoint_every / preview_every: steps between checkpoints / preview PNGs (0: never)."""

    steps: int = 2000
    batch: int = 8
    lr: float = 2e-4
    ssim_weight: float = 0.5
    gan_weight: float = 0.01
    seed: int = 0
    checkpoint_every: int = 200
    preview_every: int = 200
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
