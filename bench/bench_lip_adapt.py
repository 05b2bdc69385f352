"""A person's own lip adaptation, measured on held-out footage: per-person output head
(facetalk.lips.adapt, numpy ridge) against a LoRA adapter (peft, torch) on the lip model's
convolutions, the generic lip model and the rule path.

    # once: a generic model with the shipped recipe that never saw the bench's speakers (~35 CPU-min)
    nice -n 10 .venv/bin/python bench/bench_lip_adapt.py --train-generic artifacts/lip-adapt/generic-heldout-48
    nice -n 10 .venv/bin/python bench/bench_lip_adapt.py --generic artifacts/lip-adapt/generic-heldout-48 \
        --out artifacts/lip-adapt/run48b [--lora]
    # rendered: facetalk eval's modes identity, photo, rules, and identity without its head
    nice -n 10 .venv/bin/python bench/bench_lip_adapt.py --generic src/facetalk/lips/default --only-eval \
        --eval ../shared/media/talking/congressman-60s-256px.mp4 ../shared/media/talking/news-anchor-de-20s.mp4

Per speaker (prepared corpus data, data/lipsync; the shared talking clips are in it too):
the footage in order, its first two thirds (by frames) to adapt on, the last third to score.
The audio of each part is analysed on its own (a render of the last third hears only it).
Scores: Pearson r of the opening (and width) against the real one, at lag 0 and at the best
lag within +-10 frames, per test clip, then the mean per speaker. "rendered" rows are the
renderer's mouth opening (motion.learned: voice gate, clip at 0) rather than the raw model
output. The footage sweep fits on only the first T seconds of the adaptation part to find
where a head stops helping (the automatic rule against a head forced in).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from facetalk.lips.adapt import Recording, fit_head, frame_features  # noqa: E402
from facetalk.lips.crossval import CurveScore  # noqa: E402
from facetalk.lips.data import load_prepared  # noqa: E402
from facetalk.lips.features import log_mel  # noqa: E402
from facetalk.lips.model import load_lip_model  # noqa: E402
from facetalk.types import SAMPLE_RATE  # noqa: E402

SPEAKERS = ("s00", "s01", "s02", "s13", "s40")  # >= 40 s of footage, plus the 20 s news anchor (s13)
SWEEP = (5, 10, 20, 30, 40)


@dataclass
class Part:
    name: str
    samples: np.ndarray
    fps: float
    open: np.ndarray
    width: np.ndarray


def split_speaker(clips, share: float = 2 / 3) -> tuple[list[Part], list[Part]]:
    """(adaptation parts, test parts): the speaker's clips in order, cut at share of frames."""
    from facetalk.media.audio import load_audio

    total = sum(len(c.open) for c in clips)
    cut = int(round(total * share))
    train, test, seen = [], [], 0
    for c in clips:
        n = len(c.open)
        samples = load_audio(c.file).samples
        k = min(max(cut - seen, 0), n)  # frames of this clip in the adaptation part
        s = int(round(k / c.fps * SAMPLE_RATE))
        if k > 0:
            train.append(Part(c.key, samples[:s], c.fps, c.open[:k], c.width[:k]))
        if k < n:
            test.append(Part(c.key, samples[s:], c.fps, c.open[k:], c.width[k:]))
        seen += n
    return train, test


def first_seconds(parts: list[Part], seconds: float) -> list[Part]:
    out, left = [], seconds
    for p in parts:
        if left <= 0:
            break
        k = min(len(p.open), int(round(left * p.fps)))
        out.append(Part(p.name, p.samples[:int(round(k / p.fps * SAMPLE_RATE))], p.fps, p.open[:k], p.width[:k]))
        left -= k / p.fps
    return out


def recordings(parts: list[Part], mels: dict[int, np.ndarray]) -> list[Recording]:
    return [Recording(mels[id(p)] if id(p) in mels else log_mel(p.samples), p.fps, p.open, p.width, p.name)
            for p in parts]


def frame_curve(rows: np.ndarray, fps: float, n: int) -> np.ndarray:
    """(n, 2) per-frame values of (m, 2) rows (motion.learned's reading)."""
    return frame_features(rows, fps, n, (0,))


# -- LoRA (torch + peft) -----------------------------------------------------------------------


def lora_fit(model, train: list[Recording], rank: int, steps: int, train_out: bool, seed: int = 0):
    """A LoRA adapter on every convolution of the lip model (LipNet, lips.train) fitted on the
    person's recordings (clean audio, 3 s crops, the training loss); returns predict(mel)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from facetalk.lips.model import running_normalise
    from facetalk.lips.train import CROP, LipNet, TrainSettings, loss_fn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch, norm = model.arch, model.norm
    net = LipNet(arch)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.params.items()})
    targets = ["inp.conv"] + [f"blocks.{i}.conv" for i in range(len(arch.dilations))]
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0)
    pnet = get_peft_model(net, cfg)
    if train_out:  # the 1x1 output layer trained in full too ("out" as modules_to_save also matches lora_dropout)
        for p in pnet.base_model.model.out.parameters():
            p.requires_grad_(True)
    # peft 0.21 builds a conv's lora_A without the base layer's dilation (huggingface/peft#3697,
    # fix open in #3758), so the dilated blocks' branches come out the wrong length: set it
    for m in pnet.modules():
        if hasattr(m, "lora_A") and hasattr(m, "base_layer"):
            for a in m.lora_A.values():
                a.dilation = m.base_layer.dilation
    feats = [running_normalise(r.mel, norm)[0] for r in train]
    settings = TrainSettings()
    opt = torch.optim.AdamW([p for p in pnet.parameters() if p.requires_grad], lr=2e-3, weight_decay=1e-3)
    lengths = np.array([len(f) for f in feats], float)
    t0 = time.perf_counter()
    pnet.train()
    for step in range(steps):
        xs, ts, ws = [], [], []
        for _ in range(8):
            i = rng.choice(len(feats), p=lengths / lengths.sum())
            x, r = feats[i], train[i]
            start = int(rng.integers(0, max(1, len(x) - CROP)))
            crop = x[start:start + CROP]
            if len(crop) < CROP:
                crop = np.concatenate([crop, np.repeat(x.min(axis=0)[None], CROP - len(crop), axis=0)])
            target = np.full((2, CROP), np.nan, np.float32)
            rows = np.arange(len(r.open)) / r.fps * 100 - start + arch.lookahead
            k = np.round(rows).astype(int)
            ok = (k >= 0) & (k < CROP) & np.isfinite(r.target).all(axis=1)
            target[:, k[ok]] = r.target[ok].T
            xs.append(crop.T)
            ts.append(target)
            ws.append(np.isfinite(target[0]).astype(np.float32))
        x, t, w = (torch.from_numpy(np.stack(a).astype(np.float32)) for a in (xs, ts, ws))
        lr = 2e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = loss_fn(pnet(x), t, w, settings)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    pnet.eval()
    merged = pnet.merge_and_unload()
    from facetalk.lips.train import predict_clip

    return (lambda mel: predict_clip(merged, mel, norm)), seconds


# -- scoring ------------------------------------------------------------------------------------


def score(curves: dict[str, np.ndarray], part: Part) -> dict[str, dict]:
    out = {}
    for name, c in curves.items():
        real = part.width if name.endswith("_width") else part.open
        s = CurveScore.of(np.asarray(c, np.float64), np.asarray(real, np.float64))
        out[name] = {"r0": s.r0, "r_best": s.r_best, "lag": s.lag}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "lipsync")
    ap.add_argument("--generic", type=Path, default=ROOT / "artifacts" / "lip-adapt" / "generic-heldout")
    ap.add_argument("--speakers", default=",".join(SPEAKERS))
    ap.add_argument("--lora", action="store_true", help="also fit LoRA adapters (torch, peft)")
    ap.add_argument("--lora-steps", type=int, default=300)
    ap.add_argument("--lora-rank", type=int, default=4)
    ap.add_argument("--sweep", default=",".join(map(str, SWEEP)), help="seconds of footage for the sweep ('' = none)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "lip-adapt")
    ap.add_argument("--eval", nargs="*", type=Path, default=None,
                    help="also run facetalk eval (modes identity, photo, rules; identity without its head) on these clips")
    ap.add_argument("--only-eval", action="store_true", help="skip the curve comparison")
    ap.add_argument("--train-generic", type=Path, default=None,
                    help="train a generic model without --speakers (the shipped model's recipe) into this folder, then stop")
    args = ap.parse_args()
    if args.train_generic:
        train_generic(args.data, set(args.speakers.split(",")), args.train_generic)
        return
    if args.eval:
        rows = run_eval(args.eval, args.generic, args.out)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "eval.json").write_text(json.dumps(rows, indent=1, default=float))
        (args.out / "eval.md").write_text("\n".join(eval_table(rows)) + "\n")
        print("\n".join(eval_table(rows)))
        if args.only_eval:
            return

    from facetalk.context import RunContext
    from facetalk.motion.build import build_motion
    from facetalk.motion.learned import learned_mouth
    from facetalk.speech.analyse import analyse_speech
    from facetalk.types import MOUTH_PARAMS, Audio
    from facetalk.lips.adapt import AdaptedLipModel

    model = load_lip_model(args.generic)
    trained_on = {Path(f).name for f in model.config.get("training", {}).get("files", [])}
    speakers = args.speakers.split(",")
    clips = [c for c in load_prepared(args.data) if c.speaker in speakers]
    seen = sorted({Path(c.file).name for c in clips} & trained_on)
    if seen:
        print(f"warning: the generic model {args.generic} was trained on {len(seen)} of these clips: {seen[:3]}...")
    o, w, r_ = (MOUTH_PARAMS.index(p) for p in ("open", "wide", "round"))
    report: dict = {"generic": str(args.generic), "generic_sha256": model.sha256, "speakers": {}}
    t_all = time.perf_counter()
    for spk in speakers:
        mine = [c for c in clips if c.speaker == spk]
        if not mine:
            continue
        train_parts, test_parts = split_speaker(mine)
        mels = {id(p): log_mel(p.samples) for p in train_parts + test_parts}
        train = recordings(train_parts, mels)
        t = time.perf_counter()
        hidden = [model.hidden(rec.mel) for rec in train]
        t_hidden = time.perf_counter() - t
        fits = {
            "head": fit_head(model, train, hidden=hidden),
            "head lag 0": fit_head(model, train, tap_sets=((0,),), margin=-1, min_seconds=0, hidden=hidden),
            "head lag": fit_head(model, train, tap_sets=((0,), (-4,), (4,), (-8,), (8,)), margin=-1, min_seconds=0,
                                 hidden=hidden),
            "head taps": fit_head(model, train, tap_sets=((-8, 0, 8), (-12, -6, 0, 6, 12)), margin=-1, min_seconds=0,
                                  hidden=hidden),
        }
        n_train_s = sum(len(p.open) / p.fps for p in train_parts)
        info = {"train_seconds": round(n_train_s, 1), "test_seconds": round(sum(len(p.open) / p.fps for p in test_parts), 1),
                "hidden_seconds": round(t_hidden, 2), "fits": {k: f.entry() for k, f in fits.items()}, "clips": []}
        predictors = {"generic": model.predict}
        for k, f in fits.items():
            if f.head is not None:
                predictors[k] = AdaptedLipModel(model, f.head).predict
        if args.lora:
            for name, out_too in (("lora", False), ("lora+out", True)):
                pred, secs = lora_fit(model, train, args.lora_rank, args.lora_steps, out_too)
                predictors[name] = pred
                info[f"{name}_seconds"] = round(secs, 1)
        for p in test_parts:
            mel = mels[id(p)]
            n = len(p.open)
            curves = {}
            for k, pred in predictors.items():
                v = frame_curve(pred(mel), p.fps, n)
                curves[k], curves[k + "_width"] = v[:, 0], v[:, 1]
            speech = analyse_speech(Audio(p.samples, SAMPLE_RATE), None, RunContext())
            rules = build_motion(speech, p.fps, n, still=True, mouth="rules").mouth
            curves["rules"], curves["rules_width"] = rules[:, o], rules[:, w] - rules[:, r_]
            for k in ("generic", "head"):
                if k in predictors:
                    m = model if k == "generic" else AdaptedLipModel(model, fits[k].head)
                    mouth = learned_mouth(speech, p.fps, n, model=m)
                    curves[f"rendered {k}"], curves[f"rendered {k}_width"] = mouth[:, o], mouth[:, w] - mouth[:, r_]
            info["clips"].append({"clip": p.name, "seconds": round(n / p.fps, 1), "scores": score(curves, p)})
        if args.sweep:
            info["sweep"] = {}
            for secs in map(float, args.sweep.split(",")):
                if secs > n_train_s + 1:
                    continue
                sub = recordings(first_seconds(train_parts, secs), {})
                auto = fit_head(model, sub)
                forced = fit_head(model, recordings(first_seconds(train_parts, secs), {}), margin=-1, min_seconds=0)
                row = {"auto": auto.entry(), "forced": forced.entry()}
                for label, f in (("auto", auto), ("forced", forced)):
                    m = AdaptedLipModel(model, f.head) if f.head is not None else model
                    rs = [CurveScore.of(frame_curve(m.predict(mels[id(p)]), p.fps, len(p.open))[:, 0], p.open).r0
                          for p in test_parts]
                    row[f"{label}_r0"] = float(np.nanmean(rs))
                row["generic_r0"] = float(np.nanmean([c["scores"]["generic"]["r0"] for c in info["clips"]]))
                info["sweep"][str(secs)] = row
                print(f"{spk} sweep {secs:.0f} s: generic {row['generic_r0']:.3f} auto {row['auto_r0']:.3f} "
                      f"({auto.entry()['kind']}) forced {row['forced_r0']:.3f}", flush=True)
        report["speakers"][spk] = info
        means = {k: np.nanmean([c["scores"][k]["r0"] for c in info["clips"]]) for k in info["clips"][0]["scores"]}
        print(f"{spk}: train {n_train_s:.0f} s, {len(test_parts)} test clips: " +
              ", ".join(f"{k} {v:.3f}" for k, v in means.items() if not k.endswith("_width")), flush=True)
        print(f"   head: {fits['head'].reason}", flush=True)
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapt.json").write_text(json.dumps(report, indent=1, default=float))
    (args.out / "adapt.md").write_text("\n".join(tables(report)) + "\n")
    print("\n".join(tables(report)))


def train_generic(data: Path, exclude: set[str], out: Path) -> None:
    from facetalk.lips.model import DEFAULT_DIR, Arch
    from facetalk.lips.train import TrainSettings, fit_model, save_model

    clips = [c for c in load_prepared(data) if c.speaker not in exclude]
    arch = Arch.from_dict(load_lip_model(DEFAULT_DIR).config["arch"])
    settings = TrainSettings()
    t0 = time.time()

    def progress(stage, step, steps, loss, _r):
        if step % 100 == 0:
            print(f"{stage} {step}/{steps} loss {loss:.4f} ({time.time() - t0:.0f} s)", flush=True)

    net, norm, log = fit_model(clips, settings, arch, progress=progress)
    print("saved", save_model(net, norm, out, clips, settings, log), flush=True)


def run_eval(clips: list[Path], generic: Path, out: Path) -> dict:
    """`facetalk eval --modes identity,photo,rules` on each clip (identity learnt from its first
    two thirds, everything scored on the last third), with the lip model in `generic` as the
    shipped one; then mode identity again with the lip head switched off (the same renderer
    on the generic lip model). Lip r of re-detected landmarks of the renders."""
    import facetalk.lips.adapt as adapt
    import facetalk.lips.model as lm
    from facetalk.eval.run import EvalOptions, evaluate_clip

    lm.DEFAULT_DIR = Path(generic).resolve()  # every lip_model() of this process: the held-out model
    keys = ("openness_r", "offset_r", "av_offset", "width_r", "width_offset_r")
    rows = {}
    for clip in clips:
        res = evaluate_clip(clip, options=EvalOptions(modes=("identity", "photo", "rules")),
                            workdir=out / "eval" / clip.stem)
        row = {m: {k: r.metrics.get(k) for k in keys} | ({"error": r.error} if r.error else {})
               for m, r in res.modes.items()}
        row["identity_build"] = {k: v for k, v in (res.identity or {}).items() if k != "frames_skipped"}
        lips = json.loads((out / "eval" / clip.stem / "home" / "identities" / "eval" / "v1" / "identity.json")
                          .read_text())["lips"]
        row["lips"] = lips
        saved = adapt.MARGIN
        adapt.MARGIN = float("inf")  # no head: the identity on the generic lip model
        try:
            res = evaluate_clip(clip, options=EvalOptions(modes=("identity",)), workdir=out / "eval" / f"{clip.stem}-generic")
        finally:
            adapt.MARGIN = saved
        row["identity generic"] = {k: res.modes["identity"].metrics.get(k) for k in keys}
        rows[clip.name] = row
        print(clip.name, json.dumps(row, default=float), flush=True)
    return rows


def eval_table(rows: dict) -> list[str]:
    lines = ["| clip | mode | lip r lag 0 | lip r best lag (lag) | width r lag 0 |", "|---|---|---|---|---|"]
    f = lambda x: "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"  # noqa: E731
    for clip, row in rows.items():
        for mode, label in (("identity", "identity, own lip head"), ("identity generic", "identity, generic lip model"),
                            ("photo", "photo, generic lip model"), ("rules", "photo, rules")):
            m = row.get(mode) or {}
            lag = m.get("av_offset")
            lines.append(f"| {clip} | {label} | {f(m.get('openness_r'))} | {f(m.get('offset_r'))} "
                         f"({'n/a' if lag is None or not np.isfinite(lag) else f'{lag:+.0f}'}) | {f(m.get('width_r'))} |")
    return lines


def tables(report: dict) -> list[str]:
    curves = ["head", "generic", "rules", "rendered head", "rendered generic", "head lag 0", "head lag", "head taps",
              "lora", "lora+out"]
    lines = ["| speaker | adapt s | test s | clips | curve | r open lag 0 | r open best (lag) | r width lag 0 |",
             "|---|---|---|---|---|---|---|---|"]
    for spk, info in report["speakers"].items():
        cl = info["clips"]
        for k in curves:
            if k not in cl[0]["scores"]:
                continue
            r0 = np.nanmean([c["scores"][k]["r0"] for c in cl])
            rb = np.nanmean([c["scores"][k]["r_best"] for c in cl])
            lag = np.nanmean([c["scores"][k]["lag"] for c in cl])
            wk = k + "_width"
            rw = np.nanmean([c["scores"][wk]["r0"] for c in cl]) if wk in cl[0]["scores"] else float("nan")
            lines.append(f"| {spk} | {info['train_seconds']:.0f} | {info['test_seconds']:.0f} | {len(cl)} | {k} | "
                         f"{r0:.3f} | {rb:.3f} ({lag:+.1f}) | {rw:.3f} |")
    sweep = [(spk, s, row) for spk, info in report["speakers"].items() for s, row in info.get("sweep", {}).items()]
    if sweep:
        lines += ["", "| speaker | adapt s | generic r0 | head (auto) r0 | kept? | head (forced) r0 |", "|---|---|---|---|---|---|"]
        for spk, s, row in sweep:
            lines.append(f"| {spk} | {float(s):.0f} | {row['generic_r0']:.3f} | {row['auto_r0']:.3f} | "
                         f"{row['auto']['kind']} | {row['forced_r0']:.3f} |")
    return lines


if __name__ == "__main__":
    main()
