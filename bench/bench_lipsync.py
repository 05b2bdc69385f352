"""Speaker-disjoint cross-validation of the lip model on a corpus, against the rule path
and loudness; per language; plots of held-out curves.

    .venv/bin/python bench/bench_lipsync.py --corpus ../shared/corpus --data data/lipsync \
        --folds 4 --steps 1000 --out artifacts/lipsync-cv --phones

Speakers are split into folds by speaker (never by clip); the speakers of the shared test
clips (MANIFEST rows pointing into ../media/talking) are never trained on and are measured
with every fold's model. Each clip is scored against its real opening and width (landmarks
re-detected on the real footage): Pearson r at lag 0 and at the best lag within +-10 frames
(a positive lag: the curve moves late). Figures are means over speakers. Writes
OUT/cv.json, OUT/cv.md (the README's table) and OUT/curves-*.png.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from facetalk.lips.crossval import cross_validate, speaker_folds, summarise  # noqa: E402
from facetalk.lips.data import load_prepared  # noqa: E402
from facetalk.lips.model import Arch  # noqa: E402
from facetalk.lips.prepare import prepare_corpus  # noqa: E402


def held_out_speakers(corpus: Path) -> set[str]:
    with (corpus / "MANIFEST.tsv").open(newline="", encoding="utf-8") as f:
        return {r["speaker"] for r in csv.DictReader(f, delimiter="\t") if "media/talking" in r["file"]}


def table(results, curves, by_language: bool) -> list[str]:
    rows = ["| set | speakers | curve | r open, lag 0 | r open, best lag | mean lag (frames) | mean abs lag | r width, lag 0 |",
            "|---|---|---|---|---|---|---|---|"]
    groups = {"all held-out": results}
    if by_language:
        for lang in sorted({r.language for r in results}):
            groups[lang] = [r for r in results if r.language == lang]
    for name, rs in groups.items():
        for curve in curves:
            s = summarise(rs, curve)
            w = summarise(rs, curve + "_width") if curve != "energy" else {}
            if not s.get("speakers"):
                continue
            rows.append(f"| {name} | {s['speakers']} | {curve} | {s['r0']:.2f} | {s['r_best']:.2f} | {s['mean_lag']:+.1f} | "
                        f"{s['abs_lag']:.1f} | {w.get('r0', float('nan')):.2f} |")
    return rows


def plot_curves(results_by_key, clips, predictions, out: Path, keys: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facetalk.lips.crossval import rule_curves

    for key in keys:
        c = next(c for c in clips if c.key == key)
        pred = predictions[key]
        rules = rule_curves(c)["rules"]
        n = min(len(c.open), int(12 * c.fps))
        t = np.arange(n) / c.fps
        z = lambda x: (x - np.nanmean(x[:n])) / (np.nanstd(x[:n]) + 1e-9)  # noqa: E731
        fig, ax = plt.subplots(figsize=(12, 3.2))
        ax.plot(t, z(c.open[:n]), "k", lw=1.6, label="real opening (landmarks)")
        ax.plot(t, z(pred[:n, 0]), "tab:blue", lw=1.2, label="learned (held out)")
        ax.plot(t, z(rules[:n]), "tab:orange", lw=1.0, alpha=0.8, label="rules")
        s = results_by_key[key].scores
        ax.set_title(f"{key}: r0 learned {s['learned'].r0:.2f}, rules {s['rules'].r0:.2f}")
        ax.set_xlabel("seconds")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"curves-{key[:40]}.png", dpi=80)
        plt.close(fig)


GRID_WORDS = [dict(b="bin", l="lay", p="place", s="set"), dict(b="blue", g="green", r="red", w="white"),
              dict(a="at", b="by", i="in", w="with"), None,
              dict(zip("123456789z", "one two three four five six seven eight nine zero".split())),
              dict(a="again", n="now", p="please", s="soon")]


def grid_transcript(file: str) -> str | None:
    """The words of a GRID clip from its name's six-letter code (command colour preposition
    letter digit adverb), e.g. ..._bbaf3s.mp4 -> "bin blue at f three soon"."""
    code = Path(file).stem.rsplit("_", 1)[-1]
    if len(code) != 6 or "LipNet" not in file:
        return None
    try:
        return " ".join(code[i] if table is None else table[code[i]] for i, table in enumerate(GRID_WORDS))
    except KeyError:
        return None


def phones_experiment(clips, predictions) -> list[str]:
    """Do aligned phones add to the learned curve? On clips whose words are known (GRID),
    scored by the fold model that never saw the speaker: the learned opening as is, and
    with the lips closed wherever the aligned phones say M, B or P (Rhubarb's A cue)."""
    from facetalk.context import RunContext
    from facetalk.lips.crossval import CurveScore
    from facetalk.media.audio import load_audio
    from facetalk.motion.learned import bilabial_closure
    from facetalk.speech.analyse import analyse_speech

    rows = {"learned": [], "learned + closed on M/B/P": []}
    aligned = 0
    for c in clips:
        words = grid_transcript(c.file)
        if words is None or c.key not in predictions or aligned >= 80:  # 80 sentences: enough, and quick
            continue
        speech = analyse_speech(load_audio(c.file), words, RunContext())
        if speech.method != "alignment":
            continue
        aligned += 1
        opening = predictions[c.key][:, 0]
        closed = bilabial_closure(speech, c.fps, len(opening))
        fused = np.where(closed > 0, np.minimum(opening, opening * (1 - closed)), opening)
        rows["learned"].append(CurveScore.of(opening, c.open))
        rows["learned + closed on M/B/P"].append(CurveScore.of(fused, c.open))
    out = [f"Aligned phones on {aligned} GRID clips (speaker held out of training):", "",
           "| curve | r open, lag 0 | r open, best lag |", "|---|---|---|"]
    for name, scores in rows.items():
        if scores:
            out.append(f"| {name} | {np.mean([s.r0 for s in scores]):.3f} | {np.mean([s.r_best for s in scores]):.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "lipsync")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: other work on the machine does not stall it)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lookahead", type=int, default=Arch().lookahead)
    ap.add_argument("--channels", type=int, default=Arch().channels)
    ap.add_argument("--no-offsets", action="store_true", help="skip the per-clip sync correction")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--phones", action="store_true", help="also measure closing the lips on aligned M/B/P (GRID words)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "lipsync-cv")
    ap.add_argument("--seed", type=int, default=0, help="training seed (ensembles: runs with several seeds)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from facetalk.lips.train import TrainSettings, fit_model, torch_predictor

    if not (args.data / "index.json").is_file():
        prepare_corpus(args.corpus, args.data, jobs=args.jobs)
    clips = load_prepared(args.data)
    held = held_out_speakers(args.corpus)
    folds = speaker_folds(clips, args.folds, held)
    arch = Arch(channels=args.channels, lookahead=args.lookahead)
    settings = TrainSettings(steps=args.steps, batch=args.batch, seed=args.seed)
    predictions: dict[str, np.ndarray] = {}
    t0 = time.time()

    def fit(train):
        train = [copy.copy(c) for c in train]  # offsets are undone on copies: each fold starts clean
        net, norm, _ = fit_model(train, settings, arch, offsets=not args.no_offsets)
        predict = torch_predictor(net, norm)

        def keep(c):
            p = predict(c)
            predictions.setdefault(c.key, p)  # the held-out speakers: the first fold's model
            if not any(c.speaker in f for f in folds):
                return p
            predictions[c.key] = p
            return p

        return keep

    print(f"{len(clips)} clips, {len({c.speaker for c in clips})} speakers; held out always: {sorted(held)}; "
          f"threads {torch.get_num_threads()}", flush=True)
    results = cross_validate(clips, folds, held, fit, report=lambda s: print(s, f"({time.time() - t0:.0f} s)", flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    curves = ["learned", "rules", "energy"]
    # the held-out speakers were measured by every fold: average their folds per clip first
    merged: dict[str, object] = {}
    for r in results:
        if r.speaker in held:
            if r.key in merged:
                for name, sc in r.scores.items():
                    m = merged[r.key].scores[name]
                    m.r0, m.r_best = (m.r0 * r.fold + sc.r0) / (r.fold + 1), (m.r_best * r.fold + sc.r_best) / (r.fold + 1)
                continue
            r = copy.deepcopy(r)
        merged[r.key] = r
    final = list(merged.values())
    shared = [r for r in final if r.speaker in held]
    lines = ["### Cross-validated by speaker (every speaker scored by a model that never saw them)", "",
             *table(final, curves, by_language=True), "",
             "### The shared test clips (never in any training set; mean over the folds' models)", "",
             *table(shared, curves, by_language=False), "",
             "| clip | learned r0 | learned r best (lag) | rules r0 | rules r best (lag) | energy r0 |", "|---|---|---|---|---|---|"]
    for r in shared:
        s = r.scores
        lines.append(f"| {r.key.rsplit('-', 1)[0]} | {s['learned'].r0:.2f} | {s['learned'].r_best:.2f} ({s['learned'].lag:+d}) | "
                     f"{s['rules'].r0:.2f} | {s['rules'].r_best:.2f} ({s['rules'].lag:+d}) | {s['energy'].r0:.2f} |")
    (args.out / "cv.md").write_text("\n".join(lines) + "\n")
    (args.out / "cv.json").write_text(json.dumps({
        "settings": vars(args) | {"corpus": str(args.corpus), "data": str(args.data), "out": str(args.out)},
        "seconds": round(time.time() - t0), "folds": [sorted(f) for f in folds], "held_out": sorted(held),
        "summary": {c: summarise(final, c) for c in curves + ["learned_width", "rules_width"]},
        "clips": [{"key": r.key, "speaker": r.speaker, "language": r.language, "fold": r.fold,
                   **{k: vars(v) for k, v in r.scores.items()}} for r in final]}, indent=1, default=float))
    # every clip's held-out prediction (n, 2: open, width), for post-hoc analyses (smoothing, ensembles)
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in predictions.items()}, str(args.out / "predictions.safetensors"))
    if args.phones:
        lines += ["", *phones_experiment(clips, predictions)]
        (args.out / "cv.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot_curves(merged, clips, predictions, args.out, [r.key for r in shared][:5])


if __name__ == "__main__":
    main()
