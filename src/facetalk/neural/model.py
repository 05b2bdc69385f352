"""The neural mouth renderer's networks (torch): a U-Net generator and a patch discriminator.

MouthUNet(config)(masked, reference, cond) -> (b, 3, s, s) in about [0, 1]:
- masked: the target face crop with its lower half zeroed (b, 3, s, s);
- reference: an unmasked crop of the same person (b, 3, s, s);
- cond: the target mouth shape drawn from landmarks (b, cond_channels, s, s) (data.draw_mouth).
Only the lower half of the output is used; with config.residual it is the reference's
lower half plus the network's correction.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the positions of a feature map (named qkv / proj)."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # (b, hw, c)
        q, k, v = self.qkv(t).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        a = a.transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj(a).transpose(1, 2).reshape(b, c, h, w)


class Mid(nn.Module):
    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.res1 = ResBlock(channels, channels, groups)
        self.attn = Attention(channels, heads, groups)
        self.res2 = ResBlock(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(x)))


class MouthUNet(nn.Module):
    """The generator; see the module docstring. Layer names: config.ModelConfig.layer_names."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.model_config = config
        ch, g = config.channels, config.groups
        self.stem = nn.Conv2d(6 + config.cond_channels, ch[0], 3, padding=1)
        self.enc = nn.ModuleList(ResBlock(ch[0] if i == 0 else ch[i - 1], c, g) for i, c in enumerate(ch))
        self.down = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in ch[:-1])
        self.mid = Mid(ch[-1], config.heads, g)
        self.dec = nn.ModuleList(ResBlock(2 * c, c, g) for c in ch)
        self.up = nn.ModuleList(nn.Conv2d(ch[i + 1], ch[i], 3, padding=1) for i in range(len(ch) - 1))
        self.out_norm = nn.GroupNorm(g, ch[0])
        self.out = nn.Conv2d(ch[0], 3, 3, padding=1)
        if config.residual:  # an untrained model repaints the reference
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, masked: torch.Tensor, reference: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([masked, reference, cond], dim=1))
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            skips.append(x)
            if i < len(self.down):
                x = self.down[i](x)
        x = self.mid(x)
        for i in range(len(self.dec) - 1, -1, -1):
            x = self.dec[i](torch.cat([x, skips[i]], dim=1))
            if i > 0:
                x = self.up[i - 1](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        delta = self.out(F.silu(self.out_norm(x)))
        if self.model_config.residual:
            return reference + delta
        return torch.sigmoid(delta)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN over the lower half of a crop: a map of real/fake scores."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


def masked_input(target: torch.Tensor, row: int) -> torch.Tensor:
    """The target crops with rows from `row` down set to 0."""
    out = target.clone()
    out[:, :, row:] = 0.0
    return out


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two image batches (b, c, h, w) in [0, 1] (Gaussian window, per channel)."""
    c = a.shape[1]
    x = torch.arange(window, dtype=a.dtype, device=a.device) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
