"""The neural renderer (base + LoRA adapter) against the same identity's retrieval renderer,
on held-out footage: the measurement behind the README's neural table.

    .venv/bin/python bench/eval_neural.py prepare  --work W              # identity from the clip's first 40 s
    .venv/bin/python bench/eval_neural.py adapter  --work W --base B      # identity train (a new version)
    .venv/bin/python bench/eval_neural.py measure  --work W --base B      # render the held-out 20 s, measure

Like `facetalk eval` mode identity-video: the identity learns from the clip's first part
(eval.run.build_eval_identity); every renderer then puts the identity's mouths on the held-out
frames themselves, driven by the held-out soundtrack, and eval.run.measure_generated measures
the result against the real frames (LMD, face PSNR/SSIM, mouth sharpness, identity distance).
Renderers: retrieval (the identity's default), neural with the adapter, neural --merge, and
the bare base without the adapter (what the adapter adds). Writes W/neural_eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "talking" / "congressman-60s-256px.mp4"


def _registry(work: Path):
    from facetalk.identity.registry import Registry

    return Registry(work / "home")


def prepare(work: Path, train_seconds: float) -> None:
    from facetalk.context import RunContext
    from facetalk.eval.run import EvalOptions, build_eval_identity
    from facetalk.face.models import FaceModels

    t = time.perf_counter()
    _, start, built = build_eval_identity(CLIP, work, FaceModels(), EvalOptions(train_seconds=train_seconds),
                                          RunContext())
    (work / "prepare.json").write_text(json.dumps(built | {"start": start, "seconds": time.perf_counter() - t},
                                                  indent=2, default=str))
    print(f"identity {built['ref']} from {built['train_seconds']:.1f} s: {built['frames_used']} frames used")


def adapter(work: Path, base: Path, steps: int, rank: int, alpha: float, batch: int, lr: float) -> None:
    from facetalk.neural.config import TrainSettings
    from facetalk.neural.fit import fit_identity

    reg = _registry(work)
    settings = TrainSettings(steps=steps, batch=batch, lr=lr, gan_weight=0.0, checkpoint_every=50, preview_every=100)
    done = [0]

    def on_step(info) -> None:
        if info.step % 20 == 0 or info.step == info.steps:
            print(f"adapter step {info.step}/{info.steps} loss {info.losses['loss']:.4f} ({info.seconds:.0f} s)",
                  flush=True)
        done[0] = info.step

    result = fit_identity(reg, "eval@v1", base=base, rank=rank, alpha=alpha, footage=[str(work / "train.mp4")],
                          settings=settings, device="cpu", on_step=on_step, log=print)
    (work / "adapter.json").write_text(json.dumps(result.__dict__, indent=2, default=str))
    print(result.summary())


def measure(work: Path, base: Path, modes: list[str]) -> None:
    from facetalk import pipeline
    from facetalk.context import RunContext
    from facetalk.eval.run import EvalOptions, measure_generated, prepare_real
    from facetalk.face.models import FaceModels
    from facetalk.jobs.runner import JobCache

    start = json.loads((work / "prepare.json").read_text())["start"]
    models = FaceModels()
    options = EvalOptions()
    real = prepare_real(CLIP, None, work, models, options, start=start)
    # one worker cache, as in a batch: the base is loaded once and the adapter switched in per render
    cache = JobCache(work / "home")
    setups = {"retrieval": ("eval@v1", "retrieval", False), "neural": ("eval@v2", "neural", False),
              "neural-merge": ("eval@v2", "neural", True), "neural-base": ("eval@v1", "neural", False)}
    rows = {}
    for mode in modes:
        ref, renderer, merge = setups[mode]
        request = pipeline.RenderRequest(identity=ref, face=str(real.video), audio=str(real.audio),
                                         output=str(work / f"{mode}.mp4"), fps=real.fps,
                                         size=(real.width, real.height), renderer=renderer, base=str(base), merge=merge)
        t = time.perf_counter()
        result = pipeline.render(request, RunContext(), models, registry=cache.registry, cache=cache)
        seconds = time.perf_counter() - t
        values, _ = measure_generated(Path(request.output), real, models, options, video_type=True)
        rows[mode] = values | {"render_s": seconds, "frames": result.n_frames,
                               "render_ms_per_frame": 1000 * result.timings.get("render", float("nan")) / result.n_frames}
        print(mode, {k: round(v, 4) for k, v in rows[mode].items() if isinstance(v, float)}, flush=True)
    pools = cache.pools
    sizes = pools[0].sizes(pools[0].adapters[0]) if pools and pools[0].adapters else {}
    (work / "neural_eval.json").write_text(json.dumps({"clip": CLIP.name, "held_out_from_frame": start,
                                                       "frames": real.n_frames, "modes": rows, "sizes": sizes,
                                                       "shared": cache.stats()}, indent=2))


def speed(work: Path, frames: int) -> None:
    """Render ms per frame of the neural renderer at 128 and 256 px crops (untrained weights:
    the speed does not depend on them), on the clip's frames, with and without merge."""
    from itertools import islice

    import numpy as np
    import torch

    from facetalk.face.models import FaceModels
    from facetalk.face.track import track_faces
    from facetalk.media.video import iter_frames
    from facetalk.neural.config import ModelConfig
    from facetalk.neural.model import MouthUNet
    from facetalk.neural.store import save_base
    from facetalk.render.neural import NeuralRenderer

    clip = list(islice(iter_frames(CLIP), frames))
    lm = track_faces(iter(clip), FaceModels(), fps=25.0).landmarks
    rows = {}
    for size, channels in ((128, (16, 32, 64, 128, 256)), (256, (32, 64, 128, 256))):
        torch.manual_seed(0)
        folder = work / f"speed{size}"
        save_base(MouthUNet(ModelConfig(size=size, channels=channels)), folder, name=f"speed{size}")
        r = NeuralRenderer(base=folder)
        r.prepare(clip[0], lm[0])
        mouth = np.array([0.5, 0.2, 0.0, 0.0, 0.0, 1.0], np.float32)
        r.render(clip[0], lm[0], mouth)  # warm-up
        t = time.perf_counter()
        for k in range(1, frames):
            r.render(clip[k], lm[k], mouth)
        ms = 1000 * (time.perf_counter() - t) / (frames - 1)
        x = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            r.pool.base.module(x, x, x)
            t = time.perf_counter()
            for _ in range(10):
                r.pool.base.module(x, x, x)
        model_ms = 100 * (time.perf_counter() - t)
        rows[size] = {"render_ms_per_frame": ms, "model_ms": model_ms, "threads": torch.get_num_threads(),
                      "parameters": sum(p.numel() for p in r.pool.base.module.parameters())}
        print(size, rows[size], flush=True)
    (work / "speed.json").write_text(json.dumps(rows, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["prepare", "adapter", "measure", "speed"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--base", type=Path)
    ap.add_argument("--train-seconds", type=float, default=40.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--modes", default="retrieval,neural,neural-merge,neural-base")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "prepare":
        prepare(args.work, args.train_seconds)
    elif args.stage == "adapter":
        adapter(args.work, args.base, args.steps, args.rank, args.alpha, args.batch, args.lr)
    elif args.stage == "speed":
        speed(args.work, 40)
    else:
        measure(args.work, args.base, args.modes.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
