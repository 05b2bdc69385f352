"""`facetalk lipsync prepare|train|show`: the lip model's data, training and inspection.
torch is imported inside `train` only (the neural extra); the rest needs numpy alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import InputError


@click.group("lipsync")
def lipsync_group() -> None:
    """The lip model: speech -> mouth motion, learnt from real footage (the default motion)."""


def _bar(desc: str, total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=quiet, dynamic_ncols=True)


@lipsync_group.command("prepare")
@click.argument("corpus", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for the prepared data.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Clips prepared at once (one process each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the audio augmentations.")
@click.option("--quiet", is_flag=True)
def prepare_command(corpus: str, output: str, jobs: int, seed: int, quiet: bool) -> None:
    """Turn CORPUS (a folder with MANIFEST.tsv: file, speaker, language) into training data:
    per clip, mouth targets from tracked landmarks and log-mel features of its soundtrack
    and of its augmentations. Clips already prepared are kept."""
    from .prepare import prepare_corpus, read_manifest

    if jobs < 1:
        raise InputError(f"--jobs {jobs} must be at least 1")
    total = len(read_manifest(Path(corpus)))
    with _bar("prepare", total, quiet) as bar:
        done = prepare_corpus(Path(corpus), Path(output), jobs=jobs, seed=seed,
                              progress=lambda i, n, name: (bar.update(1), bar.set_postfix_str(name[:40], refresh=False)))
    index = json.loads((Path(output) / "index.json").read_text(encoding="utf-8"))
    usable = sum(int(r["usable"]) for r in index)
    frames = sum(int(r["frames"]) for r in index)
    click.echo(f"prepared {len(done)} clips of {len({r['speaker'] for r in index})} speakers in {output}: "
               f"{usable} of {frames} frames usable")


@lipsync_group.command("train")
@click.option("--corpus", required=True, type=click.Path(file_okay=False, exists=True),
              help="Prepared data (`lipsync prepare`), or a corpus folder with MANIFEST.tsv (prepared into --data first).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Where a corpus is prepared [default: OUTPUT-data beside the model].")
@click.option("--hold-out", multiple=True, help="A speaker id never trained on (repeatable), e.g. test speakers.")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=int, default=1, show_default=True, help="Clips prepared at once.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch [default: torch's].")
@click.option("--fresh", is_flag=True, help="Ignore a checkpoint of an earlier run (default: resume it).")
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A cross-validation report (bench/bench_lipsync.py's cv.json) whose summary the model's config keeps.")
@click.option("--quiet", is_flag=True)
def train_command(corpus: str, output: str, data: str | None, hold_out: tuple[str, ...], steps: int, batch: int,
                  seed: int, jobs: int, threads: int | None, fresh: bool, metrics_file: str | None, quiet: bool) -> None:
    """Train a lip model on real footage; speakers are weighed equally, the audio augmented.

    Seeded and reproducible; a checkpoint beside the model (OUTPUT.checkpoint.safetensors)
    lets an interrupted run resume. Use the model with `facetalk render --lip-model OUTPUT`."""
    from ..neural import require_torch
    from .data import load_prepared
    from .model import Arch
    from .prepare import prepare_corpus

    metrics = None
    if metrics_file:
        try:
            report = json.loads(Path(metrics_file).read_text(encoding="utf-8"))
            metrics = {"cross_validation": report["summary"], "folds": len(report["folds"]),
                       "held_out_speakers": report["held_out"]}
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"--metrics {metrics_file} is not a bench_lipsync cv.json ({e})") from None
    torch = require_torch()
    if steps < 1 or batch < 1:
        raise InputError("--steps and --batch must be positive")
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads} must be at least 1")
        torch.set_num_threads(threads)
    from .train import TrainSettings, fit_model, save_model

    src, out = Path(corpus), Path(output)
    if (src / "index.json").is_file():
        prepared = src
    elif (src / "MANIFEST.tsv").is_file():
        prepared = Path(data) if data else out.with_name(out.name + "-data")
        click.echo(f"preparing {src} into {prepared}", err=True)
        prepare_corpus(src, prepared, jobs=jobs, seed=seed)
    else:
        raise InputError(f"--corpus {src} holds neither index.json (prepared data) nor MANIFEST.tsv (a corpus)")
    clips = [c for c in load_prepared(prepared) if c.speaker not in set(hold_out)]
    if not clips:
        raise InputError(f"no usable clips in {prepared}" + (" outside --hold-out" if hold_out else ""))
    settings = TrainSettings(steps=steps, batch=batch, seed=seed)
    checkpoint = out.with_name(out.name + ".checkpoint.safetensors")
    if fresh:
        checkpoint.unlink(missing_ok=True)
    bars: dict[str, object] = {}

    def progress(stage: str, step: int, total: int, loss: float, val: float) -> None:
        if stage not in bars:
            for b in bars.values():
                b.close()
            bars[stage] = _bar(stage, total, quiet)
        bar = bars[stage]
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    net, norm, log = fit_model(clips, settings, Arch(), checkpoint=checkpoint, progress=progress)
    for b in bars.values():
        b.close()
    log["held_out"] = sorted(hold_out)
    sha = save_model(net, norm, out, clips, settings, log, metrics)
    checkpoint.unlink(missing_ok=True)
    click.echo(f"wrote {out} ({len(clips)} clips, {len({c.speaker for c in clips})} speakers, "
               f"{log['seconds']:.0f} s; sha256 {sha[:12]})")


@lipsync_group.command("show")
@click.argument("model", required=False, type=click.Path(file_okay=False))
def show_command(model: str | None) -> None:
    """Check a lip model folder (default: the shipped one) and print what it is."""
    from .model import lip_model

    m = lip_model(model)
    t = m.config.get("training", {})
    click.echo(json.dumps({"folder": str(Path(model) if model else "(shipped)"), "sha256": m.sha256,
                           "parameters": m.config.get("parameters"), "lookahead_ms": m.arch.lookahead * 10,
                           "receptive_ms": m.arch.receptive * 10, "speakers": t.get("speakers"),
                           "minutes": t.get("minutes"), "metrics": m.config.get("metrics", {})}, indent=1))
