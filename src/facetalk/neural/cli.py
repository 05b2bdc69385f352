"""`facetalk base train|show` and `facetalk identity train`: click commands, registered by
facetalk.cli. torch and peft are imported inside the commands, never when the CLI starts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..errors import InputError
from ..identity.cli import identity_group

DEFAULT_CHANNELS = "32,64,128,256"


def _channels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--channels {text!r}: give channel counts per level, e.g. {DEFAULT_CHANNELS}") from None
    if len(values) < 2 or min(values) < 1:
        raise InputError(f"--channels {text!r}: give at least two positive channel counts")
    return values


def _model_config(size: int, channels: str):
    from .config import ModelConfig

    try:
        return ModelConfig(size=size, channels=_channels(channels), groups=8 if min(_channels(channels)) >= 8 else 4)
    except ValueError as e:
        raise InputError(f"--size {size} --channels {channels}: {e}") from None


def _settings(steps, batch, lr, ssim_weight, gan_weight, seed, checkpoint_every, preview_every):
    from .config import TrainSettings

    if steps < 1 or batch < 1 or lr <= 0:
        raise InputError("--steps, --batch and --lr must be positive")
    return TrainSettings(steps=steps, batch=batch, lr=lr, ssim_weight=ssim_weight, gan_weight=gan_weight, seed=seed,
                         checkpoint_every=checkpoint_every, preview_every=preview_every)


def _threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise InputError(f"--threads {n} must be at least 1")
        import torch

        torch.set_num_threads(n)


class _Bar:
    """A progress bar with the loss and the ETA (tqdm), or one JSON line per step."""

    def __init__(self, label: str, json_progress: bool, quiet: bool) -> None:
        self.label, self.json, self.quiet = label, json_progress, quiet
        self.bar = None

    def __call__(self, info) -> None:
        if self.json:
            if info.step % 10 == 0 or info.step == info.steps:
                sys.stderr.write(json.dumps({"event": "progress", "stage": self.label, "step": info.step,
                                             "steps": info.steps, "fraction": round(info.step / info.steps, 4),
                                             "losses": {k: round(v, 5) for k, v in info.losses.items()},
                                             "time": round(time.time(), 3)}) + "\n")
                sys.stderr.flush()
            return
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=info.steps, initial=info.resumed_from, desc=self.label, file=sys.stderr,
                            unit="step", dynamic_ncols=True)
        self.bar.update(info.step - self.bar.n)
        self.bar.set_postfix(loss=f"{info.losses['loss']:.4f}", l1=f"{info.losses['l1']:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _common_train_options(f):
    opts = [
        click.option("--steps", type=int, default=2000, show_default=True, help="Optimiser steps."),
        click.option("--batch", type=int, default=8, show_default=True, help="Face crops per step."),
        click.option("--lr", type=float, default=None, help="Adam learning rate [default: 2e-4 base, 1e-3 adapter]."),
        click.option("--ssim-weight", type=float, default=0.5, show_default=True, help="Weight of 1-SSIM against L1."),
        click.option("--gan-weight", type=float, default=0.01, show_default=True,
                     help="Weight of the patch discriminator's loss (0: none)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto (cuda when present)."),
        click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision (bf16) on a GPU."),
        click.option("--threads", type=int, default=None,
                     help="CPU threads for torch [default: torch's]; 1 is faster on a machine busy with other work."),
        click.option("--checkpoint-every", type=int, default=200, show_default=True,
                     help="Steps between checkpoints (an interrupted run resumes from the last)."),
        click.option("--preview-every", type=int, default=200, show_default=True,
                     help="Steps between preview PNGs (0: none)."),
        click.option("--restart", is_flag=True, help="Ignore a checkpoint of an earlier run and start over."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--json-progress", is_flag=True, help="One JSON event per line on stderr."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


# -- facetalk base ------------------------------------------------------------------------


@click.group("base")
def base_group() -> None:
    """Neural base models (the `neural` renderer): train one on several people, show one.

    A base model is a folder with config.json and model.safetensors; identities then learn
    small LoRA adapters on it with 'facetalk identity train NAME --base DIR'.
    """


@base_group.command("train")
@click.argument("more_footage", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--footage", multiple=True, type=click.Path(dir_okay=False),
              help="Videos of people talking (--footage a.mp4 b.mp4 ... or --footage a.mp4 --footage b.mp4).")
@click.option("--identity", "identities", multiple=True, help="Learnt identities (NAME or NAME@vN) to train on too.")
@click.option("-o", "--output", default=None, help="Folder to write [default: $FACETALK_HOME/models/NAME].")
@click.option("--name", default="base", show_default=True, help="The model's name.")
@click.option("--size", type=int, default=256, show_default=True, help="Face crop side in pixels.")
@click.option("--channels", default=DEFAULT_CHANNELS, show_default=True, help="U-Net channels per level.")
@click.option("--fraction", type=float, default=1.0, show_default=True,
              help="Train on the first FRACTION of each footage (keep the rest for eval).")
@click.option("--max-crops", type=int, default=3000, show_default=True, help="Face crops kept per footage at most.")
@click.option("--home", type=click.Path(file_okay=False), default=None, help="Facetalk home (identities, models).")
@_common_train_options
def base_train_command(more_footage, footage, identities, output, name, size, channels, fraction, max_crops, home,
                       steps, batch, lr, ssim_weight, gan_weight, seed, device, amp, threads, checkpoint_every,
                       preview_every, restart, quiet, json_progress) -> None:
    """Train a base model on several people's footage (and/or identities).

    Checkpoints every --checkpoint-every steps; run the same command again to resume after
    an interruption. Preview PNGs go to OUTPUT/previews/.
    """
    from ..home import facetalk_home
    from .store import models_dir, resolve_device

    files = list(footage) + list(more_footage)
    if not files and not identities:
        raise InputError("give --footage videos of people talking (or --identity NAME) to train on")
    home_path = Path(home) if home else facetalk_home()
    out = Path(output) if output else models_dir(home_path) / name
    config = _model_config(size, channels)
    settings = _settings(steps, batch, lr or 2e-4, ssim_weight, gan_weight, seed, checkpoint_every, preview_every)
    dev = resolve_device(device)
    _threads(threads)
    samples, names = _gather(files, identities, home_path, size, fraction, max_crops, out, quiet or json_progress)
    from .train import train_base

    bar = _Bar("train", json_progress, quiet)
    try:
        result = train_base(samples, out, config, settings, device=dev, amp=amp, name=name, resume=not restart,
                            on_step=bar, data_names=names)
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"facetalk: interrupted; run the same command again to resume from {out}/checkpoint", err=True)
        raise SystemExit(130) from None
    finally:
        bar.close()
    cfg = json.loads((out / "config.json").read_text())
    click.echo(f"wrote {out}: {cfg['parameters']:,} parameters, {len(samples)} crops of {len(names)} footage, "
               f"{result.steps} steps ({result.seconds:.0f} s, {result.seconds_per_step:.2f} s/step on {dev}"
               f"{f', resumed at step {result.resumed_from}' if result.resumed_from else ''}), "
               f"sha256 {cfg['weights']['sha256'][:12]}")


def _gather(files, identities, home: Path, size: int, fraction: float, max_crops: int, out: Path, quiet: bool):
    """The training crops of every footage and identity, cached in OUT/data.safetensors
    (keyed by the inputs), so a resumed run does not track the footage again."""
    import hashlib

    from ..face.models import FaceModels
    from ..identity.registry import Registry
    from ..media.formats import classify
    from .data import Samples, concat, samples_from_identity, samples_from_video

    key = hashlib.sha256()
    for f in files:
        classify(f, role="--footage")
        st = Path(f).stat()
        key.update(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    reg = Registry(home)
    loaded = [reg.load(ref) for ref in identities]
    for ident in loaded:
        key.update(f"{ident.ref}:{ident.manifest['files']}".encode())
    key.update(f"{size}:{fraction}:{max_crops}".encode())
    cache, stamp = out / "data.safetensors", out / "data.key"
    if cache.is_file() and stamp.is_file() and stamp.read_text().strip() == key.hexdigest():
        samples = Samples.load(cache)
        return samples, samples.names
    models = FaceModels()
    parts = []
    for f in files:
        if not quiet:
            click.echo(f"tracking {f} ...", err=True)
        part = samples_from_video(f, size, models, fraction=fraction, limit=max_crops)
        if len(part) == 0:
            raise InputError(f"no face found in --footage {f}")
        parts.append(part)
    parts += [samples_from_identity(ident, size, max_crops) for ident in loaded]
    samples = concat(parts)
    out.mkdir(parents=True, exist_ok=True)
    samples.save(cache)
    stamp.write_text(key.hexdigest() + "\n")
    return samples, samples.names


@base_group.command("show")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--trust-pickle", is_flag=True, help="Accept a pickle weights file (read with weights_only=True).")
def base_show_command(folder: str, trust_pickle: bool) -> None:
    """Check a base model folder (sha256 of its weights) and show what it is."""
    from .check import check_base

    files = check_base(folder, trust_pickle=trust_pickle)
    cfg = files.config
    model, training = cfg.get("model", {}), cfg.get("training", {})
    click.echo(f"{files.name}: ok ({files.weights.name}, sha256 {files.sha256[:12]}, "
               f"{files.weights.stat().st_size / 1e6:.1f} MB)")
    click.echo(f"  model     {model.get('size')} px crops, channels {model.get('channels')}, "
               f"{cfg.get('parameters', 0):,} parameters")
    if training:
        click.echo(f"  training  {training.get('steps')} steps, batch {training.get('batch')}, "
                   f"{training.get('crops')} crops of {', '.join(map(str, training.get('data', [])))}, "
                   f"{training.get('seconds')} s on {training.get('device')}")


# -- facetalk identity train ----------------------------------------------------------------


@identity_group.command("train")
@click.argument("ref")
@click.option("--base", "base_dir", default=None, type=click.Path(file_okay=False),
              help="Base model folder [default: the only one under $FACETALK_HOME/models].")
@click.option("--rank", type=int, default=8, show_default=True, help="LoRA rank.")
@click.option("--alpha", type=float, default=16.0, show_default=True, help="LoRA alpha (scale alpha/rank).")
@click.option("--target-modules", default=None,
              help="Comma-separated layer names (or name suffixes: conv1,conv2,qkv,proj) the LoRA adapts "
                   "[default: the attention and the block convs of 16*rank channels or more].")
@click.option("--footage", multiple=True, type=click.Path(dir_okay=False),
              help="More videos of the person to train on (besides the identity's own clip).")
@click.option("--from-scratch", is_flag=True, help="No base: train a small model of the person's own.")
@click.option("--size", type=int, default=128, show_default=True, help="With --from-scratch: crop side in pixels.")
@click.option("--channels", default="16,32,64,128", show_default=True, help="With --from-scratch: channels per level.")
@click.option("--max-crops", type=int, default=3000, show_default=True)
@click.option("--trust-pickle", is_flag=True, help="Accept a pickle base weights file (read with weights_only=True).")
@click.option("--promote", is_flag=True, help="Make the new version the latest.")
@_common_train_options
@click.pass_obj
def identity_train_command(obj, ref, base_dir, rank, alpha, target_modules, footage, from_scratch, size, channels,
                           max_crops, trust_pickle, promote, steps, batch, lr, ssim_weight, gan_weight, seed, device,
                           amp, threads, checkpoint_every, preview_every, restart, quiet, json_progress) -> None:
    """Fit a LoRA adapter (peft) for identity REF on a base model; saves a new version.

    The new version holds the identity's files (hard-linked) plus adapter_config.json and
    adapter_model.safetensors, stamped with the base model's sha256; render it with
    'facetalk render --identity NAME --renderer neural'.
    """
    from .fit import fit_identity

    reg = obj["registry"]
    _threads(threads)
    bar = _Bar("adapter" if not from_scratch else "model", json_progress, quiet)
    targets = [t.strip() for t in target_modules.split(",") if t.strip()] if target_modules else None
    config = _model_config(size, channels) if from_scratch else None
    settings = _settings(steps, batch, lr or (2e-4 if from_scratch else 1e-3), ssim_weight,
                         gan_weight, seed, checkpoint_every, preview_every)
    try:
        result = fit_identity(reg, ref, base=Path(base_dir) if base_dir else None, rank=rank, alpha=alpha,
                              targets=targets, footage=list(footage), settings=settings, device=device, amp=amp,
                              from_scratch=config, max_crops=max_crops, trust_pickle=trust_pickle,
                              resume=not restart, on_step=bar, promote=promote, log=None if quiet else
                              (lambda m: click.echo(m, err=True)))
    except KeyboardInterrupt:
        bar.close()
        click.echo("facetalk: interrupted; run the same command again to resume from its checkpoint", err=True)
        raise SystemExit(130) from None
    finally:
        bar.close()
    click.echo(result.summary())

