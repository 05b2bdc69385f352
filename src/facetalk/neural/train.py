"""Training: the base model on several people, a LoRA adapter for one, or a small model
for one person from scratch.

One loop for all three (Trainer): per step a batch of random crops, each with a random
other crop of the same person as its reference; the generator repaints the lower half
from (masked target, reference, mouth drawing); loss = L1 + ssim_weight * (1 - SSIM) on
the lower half, + gan_weight * a least-squares patch-discriminator loss. Every random
choice follows from (seed, step), and checkpoints hold the weights, the optimiser state
and the step (safetensors + JSON metadata), so a run resumed after an interruption ends
with the same weights as one that never stopped. On a GPU the forward runs under bf16
autocast (mixed precision; no loss scaling needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .check import ModelError
from .config import ModelConfig, TrainSettings
from .data import Samples, batch_arrays, mask_row, pick_batch
from .model import MouthUNet, PatchDiscriminator, masked_input, ssim

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.safetensors"
PREVIEW_DIR = "previews"


@dataclass
class StepInfo:
    """What the progress callback is told after each step."""

    step: int  # steps done
    steps: int  # steps in all
    losses: dict[str, float]
    seconds: float  # since this run (not the resumed one) started
    resumed_from: int


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float  # this run's wall time
    seconds_per_step: float
    losses: dict[str, float] = field(default_factory=dict)  # mean of the last 50 steps


def data_fingerprint(samples: Samples) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(samples.crops).tobytes())
    h.update(np.ascontiguousarray(samples.landmarks).tobytes())
    h.update(np.ascontiguousarray(samples.person).tobytes())
    return h.hexdigest()


class Trainer:
    """Trains `model`'s trainable parameters on samples; see the module docstring.

    work: folder for checkpoint/ and previews/; what: a dict stored in the checkpoint
    that must match on resume (architecture, adapter settings)."""

    def __init__(self, model: torch.nn.Module, samples: Samples, settings: TrainSettings, work: Path, what: dict,
                 device: str = "cpu", amp: bool = True) -> None:
        if len(samples) < 2:
            raise ModelError(f"only {len(samples)} usable face crops to train on: give more footage with a clear face")
        self.model = model.to(device)
        self.samples = samples
        self.settings = settings
        self.work = Path(work)
        self.device = device
        self.amp = amp and device.startswith("cuda")
        self.row = mask_row(samples.size)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        torch.manual_seed(settings.seed + 1)
        self.disc = PatchDiscriminator().to(device) if settings.gan_weight > 0 else None
        self.opt = torch.optim.Adam(self.params, lr=settings.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=settings.lr, betas=(0.5, 0.999)) if self.disc else None
        self.what = what | {"settings": {k: v for k, v in settings.to_dict().items()
                                         if k not in ("checkpoint_every", "preview_every", "steps")},
                            "data": data_fingerprint(samples)}
        self.step = 0

    # -- checkpoints ---------------------------------------------------------------------

    @property
    def checkpoint(self) -> Path:
        return self.work / CHECKPOINT_DIR / CHECKPOINT_FILE

    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        named = dict(self.model.named_parameters())
        for n in self.names:
            tensors[f"model.{n}"] = named[n].detach().to("cpu").contiguous()
        groups = {"opt": _optimizer_tensors(self.opt, tensors, "opt")}
        if self.disc is not None:
            for n, v in self.disc.state_dict().items():
                tensors[f"disc.{n}"] = v.detach().to("cpu").contiguous()
            groups["opt_d"] = _optimizer_tensors(self.opt_d, tensors, "opt_d")
        meta = {"step": self.step, "what": self.what, "groups": groups}
        folder = self.checkpoint.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
        save_file(tensors, str(tmp), metadata={"facetalk": json.dumps(meta, sort_keys=True)})
        os.replace(tmp, self.checkpoint)

    def load_checkpoint(self) -> bool:
        """Resume from work/checkpoint if there is one for the same model, data and
        settings; False when there is none. Raises ModelError when it is for another run."""
        from safetensors import safe_open

        if not self.checkpoint.is_file():
            return False
        try:
            with safe_open(str(self.checkpoint), framework="pt", device="cpu") as f:
                meta = json.loads((f.metadata() or {})["facetalk"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"checkpoint {self.checkpoint} is unreadable ({' '.join(str(e).split())[:120]}): "
                             "remove it, or pass --restart to start over") from None
        if meta.get("what") != json.loads(json.dumps(self.what)):
            diff = sorted(k for k in set(meta.get("what", {})) | set(self.what)
                          if meta.get("what", {}).get(k) != json.loads(json.dumps(self.what)).get(k))
            raise ModelError(f"checkpoint {self.checkpoint} is of another run (its {', '.join(diff)} differ): "
                             "pass --restart to start over, or give the same footage and settings")
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                named[n].copy_(tensors[f"model.{n}"])
        _load_optimizer(self.opt, tensors, "opt", meta["groups"]["opt"], self.device)
        if self.disc is not None:
            self.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
            _load_optimizer(self.opt_d, tensors, "opt_d", meta["groups"]["opt_d"], self.device)
        self.step = int(meta["step"])
        return True

    # -- the loop ------------------------------------------------------------------------

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.settings.seed, step])
        index, reference = pick_batch(self.samples, rng, self.settings.batch)
        arrays = batch_arrays(self.samples, index, reference)
        return {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}

    def train_step(self, step: int) -> dict[str, float]:
        s = self.settings
        b = self.batch(step)
        target, row = b["target"], self.row
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(masked_input(target, row), b["reference"], b["cond"])
        out = out.float()
        lower, truth = out[:, :, row:], target[:, :, row:]
        l1 = F.l1_loss(lower, truth)
        s_val = ssim(lower, truth)
        loss = l1 + s.ssim_weight * (1.0 - s_val)
        losses = {"l1": l1.item(), "ssim": s_val.item()}
        if self.disc is not None:
            self.disc.requires_grad_(False)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                g_adv = ((self.disc(lower).float() - 1.0) ** 2).mean()
            loss = loss + s.gan_weight * g_adv
            losses["g_adv"] = g_adv.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.disc is not None:
            self.disc.requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                d_real = self.disc(truth).float()
                d_fake = self.disc(lower.detach()).float()
            d_loss = ((d_real - 1.0) ** 2).mean() + (d_fake**2).mean()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            losses["d"] = d_loss.item()
        losses["loss"] = loss.item()
        return losses

    def run(self, on_step: Callable[[StepInfo], None] | None = None, resume: bool = True) -> TrainResult:
        s = self.settings
        resumed = self.load_checkpoint() if resume else False
        start = self.step if resumed else 0
        self.step = start
        t0 = time.perf_counter()
        recent: list[dict[str, float]] = []
        self.model.train()
        try:
            while self.step < s.steps:
                losses = self.train_step(self.step)
                self.step += 1
                recent = (recent + [losses])[-50:]
                if s.checkpoint_every and self.step % s.checkpoint_every == 0 and self.step < s.steps:
                    self.save_checkpoint()
                if s.preview_every and (self.step % s.preview_every == 0 or self.step == s.steps):
                    self.preview(self.work / PREVIEW_DIR / f"step_{self.step:07d}.png")
                    self.model.train()
                if on_step is not None:
                    on_step(StepInfo(self.step, s.steps, losses, time.perf_counter() - t0, start))
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM through facetalk.cli
            if self.step > start:
                self.save_checkpoint()  # resume from here
            raise
        self.model.eval()
        seconds = time.perf_counter() - t0
        done = self.step - start
        mean = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]} if recent else {}
        return TrainResult(self.step, start, seconds, seconds / done if done else float("nan"), mean)

    def remove_checkpoint(self) -> None:
        self.checkpoint.unlink(missing_ok=True)
        try:
            self.checkpoint.parent.rmdir()
        except OSError:
            pass

    # -- previews ------------------------------------------------------------------------

    @torch.no_grad()
    def preview(self, path: Path, count: int = 4) -> Path:
        """A PNG grid, one row per sample: masked input | reference | mouth drawing | output | truth."""
        import cv2

        n = len(self.samples)
        index = np.round(np.linspace(0, n - 1, min(count, n))).astype(int)
        groups = self.samples.by_person()
        reference = np.array([groups[self.samples.person[i]][0] for i in index])
        arrays = batch_arrays(self.samples, index, reference)
        b = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        self.model.eval()
        out = self.model(masked_input(b["target"], self.row), b["reference"], b["cond"]).float()
        comp = b["target"].clone()
        comp[:, :, self.row:] = out[:, :, self.row:]
        tiles = [masked_input(b["target"], self.row), b["reference"], b["cond"], comp, b["target"]]
        grid = torch.cat([torch.cat(list(t.clamp(0, 1)), dim=1) for t in tiles], dim=2)  # (3, rows*s, 5*s)
        img = (grid.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img[..., ::-1])
        return path


def _optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict, prefix: str) -> dict:
    """Put opt's tensor state into tensors (prefix.index.key); returns the rest as JSON data."""
    sd = opt.state_dict()
    plain: dict = {"param_groups": sd["param_groups"], "state": {}}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{i}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                plain["state"].setdefault(str(i), {})[k] = v
    return plain


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, prefix: str, plain: dict, device: str) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, i, k = key.split(".", 2)
            if not i.isdigit():
                continue
            state.setdefault(int(i), {})[k] = v if k == "step" else v.to(device)
    for i, st in plain.get("state", {}).items():
        state.setdefault(int(i), {}).update(st)
    groups = plain["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


# -- the three kinds of training ------------------------------------------------------------


def train_base(samples: Samples, folder: Path, config: ModelConfig, settings: TrainSettings, device: str = "cpu",
               amp: bool = True, name: str | None = None, resume: bool = True,
               on_step: Callable[[StepInfo], None] | None = None, data_names: list[str] | None = None) -> TrainResult:
    """Train a base model (every parameter) and save it into folder (store.save_base)."""
    from .store import save_base

    if samples.size != config.size:
        raise ModelError(f"the crops are {samples.size} px but the model is for {config.size} px")
    torch.manual_seed(settings.seed)
    model = MouthUNet(config)
    trainer = Trainer(model, samples, settings, folder, {"kind": "base", "model": config.to_dict()}, device, amp)
    result = trainer.run(on_step, resume=resume)
    training = settings.to_dict() | {"data": data_names or samples.names, "crops": len(samples),
                                     "seconds": round(result.seconds, 1), "device": device,
                                     "resumed_from": result.resumed_from, "final_losses": result.losses}
    save_base(model.to("cpu"), folder, name=name, training=training)
    trainer.remove_checkpoint()
    return result


def train_adapter(base, samples: Samples, work: Path, rank: int, alpha: float, targets: list[str],
                  settings: TrainSettings, name: str = "default", amp: bool = True, resume: bool = True,
                  on_step: Callable[[StepInfo], None] | None = None):
    """Fit a LoRA adapter for one person on a frozen base (store.LoadedBase). Returns
    (peft model, TrainResult); save it with adapters.save_adapter. The base module is
    wrapped in place: load a fresh base for anything else."""
    from .adapters import attach, lora_config

    if samples.size != base.config.size:
        raise ModelError(f"the crops are {samples.size} px but the base model is for {base.config.size} px")
    known = {n for n, _ in base.module.named_modules()}
    unknown = [t for t in targets if t not in known and not any(n.endswith("." + t) for n in known)]
    if unknown:
        raise ModelError(f"--target-modules {', '.join(unknown)}: the base model has no such layer "
                         f"(its layers: {', '.join(n for n, _, _ in base.config.layer_names()[:4])}, ...)")
    torch.manual_seed(settings.seed)
    module = base.module.to(base.device)
    module.requires_grad_(False)
    peft_model = attach(module, lora_config(rank, alpha, targets), name)
    what = {"kind": "adapter", "base": base.sha256, "rank": rank, "alpha": alpha, "targets": sorted(targets)}
    trainer = Trainer(peft_model, samples, settings, work, what, base.device, amp)
    result = trainer.run(on_step, resume=resume)
    trainer.remove_checkpoint()
    peft_model.eval()
    return peft_model, result


def train_scratch(samples: Samples, folder: Path, config: ModelConfig, settings: TrainSettings, device: str = "cpu",
                  amp: bool = True, name: str | None = None, resume: bool = True,
                  on_step: Callable[[StepInfo], None] | None = None) -> TrainResult:
    """A small model for one person, trained from scratch (no base): a base folder of its own."""
    return train_base(samples, folder, config, settings, device, amp, name, resume, on_step)
