"""`facetalk lipsync train`: the lip model in torch, trained on prepared footage.

The torch module is the numpy model's twin (lips.model): the same causal dilated
convolutions, named alike, so its state_dict saves straight into model.safetensors.
Sampling weighs speakers, not clips; each example is a random crop of one clip through one
of the stored augmentations, at a random level and speed (+-10%: features and targets are
stretched together). Seeded and reproducible; checkpoints are safetensors + JSON (model,
optimiser and the sampler's state), so a run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import LipClip, lagged_r
from .model import ARCHITECTURE, CONFIG_FILE, OUTPUTS, WEIGHTS_FILE, Arch, Norm, running_normalise, sha256_file

CROP = 300  # rows (3 s) per training example
CARD_FILE = "MODEL_CARD.md"


class LipNet(nn.Module):
    def __init__(self, arch: Arch, dropout: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.inp = _Conv(arch.n_mels, arch.channels, arch.first_kernel, 1)
        self.blocks = nn.ModuleList(_Conv(arch.channels, arch.channels, arch.kernel, d) for d in arch.dilations)
        self.out = nn.Conv1d(arch.channels, len(OUTPUTS), 1)
        self.drop = nn.Dropout1d(dropout)  # whole channels: minutes of data overfit fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, n_mels, t) normalised input -> (b, 2, t); row i + lookahead predicts time i."""
        h = self.drop(self.inp(x))
        for block in self.blocks:
            h = h + self.drop(block(h))
        return self.out(h)


class _Conv(nn.Module):
    """Causal dilated convolution + GELU (left padding only: row i sees rows <= i)."""

    def __init__(self, c_in: int, c_out: int, k: int, d: int) -> None:
        super().__init__()
        self.pad = (k - 1) * d
        self.conv = nn.Conv1d(c_in, c_out, k, dilation=d)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(nn.functional.pad(x, (self.pad, 0))))


@dataclass
class TrainSettings:
    steps: int = 1000
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-2
    seed: int = 0
    width_weight: float = 0.5
    corr_weight: float = 0.5  # (1 - r) of the opening per example: timing matters more than level
    clean_share: float = 0.4  # share of examples from the audio as recorded
    eval_every: int = 250
    dropout: float = 0.2
    freq_masks: int = 2  # SpecAugment: bands of up to 5 mel rows and spans of up to 200 ms hidden per example
    time_masks: int = 2


def input_norm(clips: list[LipClip], arch: Arch) -> Norm:
    """The normalisation's prior mean (the clean training audio's mean log-mel) and scale
    (spread of the input once normalised by it)."""
    mel = np.concatenate([c.mel["clean"] for c in clips])
    norm = Norm(mel.mean(axis=0).astype(np.float32), np.ones(arch.n_mels, np.float32))
    normed = np.concatenate([running_normalise(c.mel["clean"], norm)[0] for c in clips])
    return Norm(norm.mean, normed.std(axis=0).astype(np.float32) + 1e-3, norm.prior, norm.memory)


class Sampler:
    """Random examples, speakers weighed equally; state is the numpy generator's."""

    def __init__(self, clips: list[LipClip], norm: Norm, settings: TrainSettings, arch: Arch) -> None:
        self.clips, self.settings, self.arch = clips, settings, arch
        self.rng = np.random.default_rng(settings.seed)
        speakers = sorted({c.speaker for c in clips})
        self.by_speaker = [[i for i, c in enumerate(clips) if c.speaker == s] for s in speakers]
        # normalised features of every clip and variant, computed once (the normalisation
        # runs from each clip's start, as it does from a recording's start)
        self.feats = [{v: running_normalise(m, norm)[0] for v, m in c.mel.items()} for c in clips]
        self.level_norm = norm

    def example(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_mels, CROP) input, (2, CROP) target rows (NaN where none), (CROP,) weight."""
        rng, arch = self.rng, self.arch
        group = self.by_speaker[rng.integers(len(self.by_speaker))]
        lengths = np.array([len(self.clips[i].open) for i in group], float)
        ci = group[rng.choice(len(group), p=lengths / lengths.sum())]
        clip, feats = self.clips[ci], self.feats[ci]
        others = [v for v in feats if v != "clean"]
        variant = "clean" if (rng.random() < self.settings.clean_share or not others) else others[rng.integers(len(others))]
        x = feats[variant]
        speed = rng.uniform(0.9, 1.1)
        span = CROP * speed
        start = rng.uniform(0, max(0.0, len(x) - span))
        src = start + np.arange(CROP) * speed  # source row of each crop row
        i0 = np.clip(np.floor(src).astype(int), 0, len(x) - 1)
        i1 = np.clip(i0 + 1, 0, len(x) - 1)
        frac = (src - np.floor(src))[:, None]
        crop = (1 - frac) * x[i0] + frac * x[i1]
        crop[src > len(x) - 1] = x.min(axis=0)  # past the end: the clip's quietest row
        # noise floor raised a little at random (steady hiss the stored variants lack)
        if rng.random() < 0.3:
            crop = np.logaddexp(crop, x.min(axis=0) + rng.uniform(0, 3))
        for _ in range(self.settings.freq_masks):  # masked to 0: the running mean's level
            f0 = rng.integers(0, arch.n_mels)
            crop[:, f0:f0 + rng.integers(0, 6)] = 0.0
        for _ in range(self.settings.time_masks):
            t0 = rng.integers(0, CROP)
            crop[t0:t0 + rng.integers(0, 21)] = 0.0
        target = np.full((2, CROP), np.nan, np.float32)
        rows = (clip.frame_rows() - start) / speed + arch.lookahead
        k = np.round(rows).astype(int)
        ok = (k >= 0) & (k < CROP) & clip.usable
        target[:, k[ok]] = clip.target[ok].T
        return crop.T.astype(np.float32), target, np.isfinite(target[0]).astype(np.float32)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ts, ws = zip(*(self.example() for _ in range(n)))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts)), torch.from_numpy(np.stack(ws))


def loss_fn(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, s: TrainSettings) -> torch.Tensor:
    t = torch.nan_to_num(target)
    w = weight[:, None]
    mse = ((pred - t) ** 2 * w).sum(dim=(0, 2)) / w.sum().clamp(min=1)
    loss = mse[0] + s.width_weight * mse[1]
    # correlation of the opening per example, over its target rows
    p, q, m = pred[:, 0], t[:, 0], weight
    cnt = m.sum(dim=1).clamp(min=1)
    pc = (p - (p * m).sum(1, keepdim=True) / cnt[:, None]) * m
    qc = (q - (q * m).sum(1, keepdim=True) / cnt[:, None]) * m
    r = (pc * qc).sum(1) / ((pc**2).sum(1).sqrt() * (qc**2).sum(1).sqrt() + 1e-6)
    has = (cnt > 10).float()
    return loss + s.corr_weight * ((1 - r) * has).sum() / has.sum().clamp(min=1)


def predict_clip(net: LipNet, mel: np.ndarray, norm: Norm) -> np.ndarray:
    """(m, 2) predictions for a whole recording's log-mel (m, n_mels), in torch: the
    numpy LipModel.predict's twin (the end padded with the quietest row, then normalised)."""
    la = net.arch.lookahead
    x = running_normalise(np.concatenate([mel, np.repeat(mel.min(axis=0)[None], la, axis=0)]), norm)[0]
    was_training = net.training
    net.eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x.T[None].astype(np.float32)))[0].numpy().T
    net.train(was_training)
    return y[la:]


def frame_values(pred_rows: np.ndarray, clip: LipClip) -> np.ndarray:
    """(n, 2) model rows read at each video frame's time (linear interpolation)."""
    rows = clip.frame_rows()
    idx = np.arange(len(pred_rows))
    return np.stack([np.interp(rows, idx, pred_rows[:, j]) for j in range(pred_rows.shape[1])], axis=1)


def validation_r(net: LipNet, clips: list[LipClip], norm: Norm) -> float:
    """Mean over speakers of the mean r (opening, lag 0) of their clips."""
    per: dict[str, list[float]] = {}
    net.eval()
    for c in clips:
        r = lagged_r(frame_values(predict_clip(net, c.mel["clean"], norm), c)[:, 0], c.target[:, 0], 0)
        if np.isfinite(r):
            per.setdefault(c.speaker, []).append(r)
    net.train()
    return float(np.mean([np.mean(v) for v in per.values()])) if per else float("nan")


def _save_checkpoint(path: Path, net: LipNet, opt: torch.optim.Optimizer, step: int, sampler: Sampler) -> None:
    from safetensors.torch import save_file

    from ..atomic import replacing

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for i, group_state in enumerate(opt.state.values()):
        for k, v in group_state.items():
            tensors[f"opt.{i}.{k}"] = v.detach().reshape(-1).contiguous() if torch.is_tensor(v) else torch.tensor([float(v)])
    tensors["torch_rng"] = torch.get_rng_state()  # dropout's masks: a resumed run draws the same ones
    meta = {"step": str(step), "rng": json.dumps(sampler.rng.bit_generator.state)}
    with replacing(path, keep_suffix=True) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(path: Path, net: LipNet, opt: torch.optim.Optimizer, sampler: Sampler) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if st:
            opt.state[p] = {"step": st["step"].reshape(()), "exp_avg": st["exp_avg"].reshape(p.shape),
                            "exp_avg_sq": st["exp_avg_sq"].reshape(p.shape)}
    sampler.rng.bit_generator.state = json.loads(meta["rng"])
    if "torch_rng" in tensors:
        torch.set_rng_state(tensors["torch_rng"])
    return int(meta["step"])


def train(clips: list[LipClip], settings: TrainSettings, arch: Arch = Arch(), val: list[LipClip] | None = None,
          checkpoint: Path | None = None,
          progress: Callable[[int, float, float], None] | None = None) -> tuple[LipNet, Norm, dict]:
    """Train on clips; returns the net, its input normalisation and a log (steps, seconds,
    validation r by step). With checkpoint, state is saved there every eval_every steps
    and a run resumes from it."""
    torch.manual_seed(settings.seed)
    norm = input_norm(clips, arch)
    net = LipNet(arch, settings.dropout)
    sampler = Sampler(clips, norm, settings, arch)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    step = 0
    if checkpoint is not None and checkpoint.is_file():
        step = _load_checkpoint(checkpoint, net, opt, sampler)
    log: dict = {"val_r": {}}
    t0 = time.time()
    loss_avg = float("nan")
    while step < settings.steps:
        lr = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x, t, w = sampler.batch(settings.batch)
        loss = loss_fn(net(x), t, w, settings)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        value = float(loss.detach())
        loss_avg = value if not math.isfinite(loss_avg) else 0.95 * loss_avg + 0.05 * value
        val_r = float("nan")
        if step % settings.eval_every == 0 or step == settings.steps:
            if val:
                val_r = validation_r(net, val, norm)
                log["val_r"][step] = round(val_r, 4)
            if checkpoint is not None:
                _save_checkpoint(checkpoint, net, opt, step, sampler)
        if progress:
            progress(step, loss_avg, val_r)
    log.update(steps=step, seconds=round(time.time() - t0, 1), final_loss=round(loss_avg, 4))
    net.eval()
    return net, norm, log


def save_model(net: LipNet, norm: Norm, folder: Path, clips: list[LipClip], settings: TrainSettings,
               log: dict, metrics: dict | None = None) -> str:
    """Write the model folder (config.json + model.safetensors) atomically; returns the
    weights' sha256."""
    import os
    import shutil
    import tempfile

    from safetensors.torch import save_file

    from .. import __version__

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"architecture": ARCHITECTURE})
        sha = sha256_file(tmp / WEIGHTS_FILE)
        speakers = sorted({c.speaker for c in clips})
        config = {
            "architecture": ARCHITECTURE,
            "outputs": list(OUTPUTS),
            "arch": net.arch.to_dict(),
            "norm": norm.to_dict(),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha, "size": (tmp / WEIGHTS_FILE).stat().st_size},
            "parameters": int(sum(p.numel() for p in net.parameters())),
            "training": {"settings": asdict(settings), "speakers": len(speakers), "clips": len(clips),
                         "minutes": round(sum(len(c.open) / c.fps for c in clips) / 60, 1),
                         "languages": sorted({c.language for c in clips}),
                         "files": sorted(Path(c.file).name for c in clips), **log},
            "metrics": metrics or {},
            "facetalk": __version__,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(config, clips), encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp's 0700 would ship a folder only its builder can read
        for p in tmp.iterdir():
            p.chmod(0o644)
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        if folder.exists():
            os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sha


def estimate_offsets(net: LipNet, norm: Norm, clips: list[LipClip], max_offset: int = 3, gain: float = 0.02
                     ) -> dict[str, int]:
    """Each clip's audio-video offset as a trained model sees it, undone in place.

    The model has learnt how far mouths typically lead their sound, so the lag at which its
    prediction best matches a clip's real opening is that clip's own sync error. A shift is
    applied only where it raises r by at least `gain` (a flat peak says nothing)."""
    out = {}
    for c in clips:
        pred = frame_values(predict_clip(net, c.mel["clean"], norm), c)[:, 0]
        rs = {k: lagged_r(pred, c.target[:, 0], k) for k in range(-max_offset, max_offset + 1)}
        rs = {k: r for k, r in rs.items() if np.isfinite(r)}
        if not rs or 0 not in rs:
            continue
        best = max(sorted(rs, key=abs), key=lambda k: rs[k])
        if best == 0 or rs[best] - rs[0] < gain:
            continue
        # the prediction at frame t + best matches the picture at t: move the picture later
        shifted = np.full_like(c.target, np.nan)
        if best > 0:
            shifted[best:] = c.target[:-best]
        else:
            shifted[:best] = c.target[-best:]
        c.target = shifted
        c.offset += best
        out[c.key] = best
    return out


def fit_model(clips: list[LipClip], settings: TrainSettings, arch: Arch = Arch(), val: list[LipClip] | None = None,
              checkpoint: Path | None = None, offsets: bool = True,
              progress: Callable[[str, int, int, float, float], None] | None = None) -> tuple[LipNet, Norm, dict]:
    """The whole recipe: a first model on a third of the steps finds each clip's sync error
    (estimate_offsets), then the model is trained on the corrected clips. The clips'
    targets are shifted in place."""
    log: dict = {}
    if offsets:
        first = TrainSettings(**{**asdict(settings), "steps": max(1, settings.steps // 3)})
        net, norm, _ = train(clips, first, arch, progress=(lambda s, lo, r: progress("sync", s, first.steps, lo, r))
                             if progress else None)
        moved = estimate_offsets(net, norm, clips)
        log["offsets"] = {"clips_moved": len(moved), "frames": {str(k): int(sum(1 for v in moved.values() if v == k))
                                                                 for k in sorted(set(moved.values()))}}
    net, norm, main_log = train(clips, settings, arch, val, checkpoint,
                                progress=(lambda s, lo, r: progress("train", s, settings.steps, lo, r)) if progress else None)
    log.update(main_log)
    return net, norm, log


def torch_predictor(net: LipNet, norm: Norm) -> Callable[[LipClip], np.ndarray]:
    """predict(clip) -> (n, 2) per-frame open and width, for cross-validation."""
    return lambda c: frame_values(predict_clip(net, c.mel["clean"], norm), c)


def model_card(config: dict, clips: list[LipClip]) -> str:
    """MODEL_CARD.md of a trained model: what it is, what it was trained on, under which
    licences, and how to train one of your own."""
    t = config["training"]
    groups: dict[tuple[str, str], list[LipClip]] = {}
    for c in clips:
        groups.setdefault((c.source or "?", c.licence or "not stated"), []).append(c)
    lines = [
        "# facetalk lip model", "",
        "Speech (log-mel, 100 rows a second) to the mouth's opening and width, normalised per speaker; "
        f"a causal dilated convolution stack of {config['parameters']:,} parameters that hears "
        f"{(config['arch']['lookahead']) * 10} ms ahead. Run by facetalk in numpy (no torch at render time).", "",
        "## Training data", "",
        f"{t['clips']} clips of {t['speakers']} speakers talking to camera with their own sound, {t['minutes']} minutes; "
        f"languages: {', '.join(t['languages'])}. Speakers were weighed equally. Mouth targets come from dlib's 68 "
        "landmarks tracked on the footage; the audio was augmented (phone band, MP3/AAC, rooms, noise, level, speed).", "",
        "| source | licence | clips | minutes |", "|---|---|---|---|",
    ]
    for (source, licence), cs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        minutes = sum(len(c.open) / c.fps for c in cs) / 60
        lines.append(f"| {source} | {licence} | {len(cs)} | {minutes:.1f} |")
    lines += [
        "", "## Rights", "",
        "Most of this footage is research material (VoxCeleb2, LRS2/LRS3, MEAD and similar, for research use), "
        "some is broadcast or press footage whose rights were never cleared; GRID is CC BY 4.0 and CREMA-D ODbL. "
        "The weights are shipped as a research default. If you need clean rights, train your own model on footage "
        "you may use: `facetalk lipsync prepare YOUR_CORPUS -o data/` then "
        "`facetalk lipsync train --corpus data/ -o my-lips/`, and render with `--lip-model my-lips/`.", "",
        "## Measured", "", "```", json.dumps(config.get("metrics", {}), indent=1), "```", "",
    ]
    return "\n".join(lines)
