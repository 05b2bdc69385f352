"""Post-hoc analyses of cross-validated lip-model predictions: temporal smoothing and
ensembles of runs with different seeds, scored exactly as bench_lipsync.py scores them.

    .venv/bin/python bench/lipsync_smoothing.py artifacts/cv-s0 [artifacts/cv-s1 ...] \
        --sigmas 0 0.5 1 1.5 2 3

Each DIR is a bench_lipsync.py --out folder (its predictions.safetensors: every clip
predicted by the fold model that never saw its speaker). Several DIRs: their predictions
are averaged per clip (an ensemble of the seeds), and each run is also scored alone.
Smoothing is a zero-phase Gaussian over video frames (sigma in frames), what
motion.learned would apply to a whole file. Figures are means over speakers, as in
bench_lipsync.py; the shared test clips' speakers (held out of every run) are reported
apart and do not choose anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from facetalk.lips.crossval import ClipResult, CurveScore, summarise  # noqa: E402
from facetalk.lips.data import load_prepared  # noqa: E402


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x.astype(np.float64), sigma, axis=0, mode="nearest")


def score(clips, preds: dict[str, np.ndarray], sigma: float, held: set[str]) -> tuple[dict, dict, dict]:
    cv, shared = [], []
    for c in clips:
        if c.key not in preds:
            continue
        p = smooth(preds[c.key], sigma)
        r = ClipResult(c.key, c.speaker, c.language, len(c.open) / c.fps, 0,
                       {"o": CurveScore.of(p[:, 0], c.open), "o_width": CurveScore.of(p[:, 1], c.width)})
        (shared if c.speaker in held else cv).append(r)
    return summarise(cv, "o"), summarise(cv, "o_width"), summarise(shared, "o")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "lipsync")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0, 0.5, 1, 1.5, 2, 3])
    ap.add_argument("--held-out", nargs="*", default=["s02", "s13", "s14", "s15", "s22"])
    args = ap.parse_args()
    from safetensors.numpy import load_file

    clips = load_prepared(args.data)
    runs = {d.name: load_file(str(d / "predictions.safetensors")) for d in args.runs}
    if len(runs) > 1:
        keys = set.intersection(*(set(p) for p in runs.values()))
        runs["ensemble of " + "+".join(runs)] = {k: np.mean([p[k] for p in list(runs.values())], axis=0) for k in keys}
    held = set(args.held_out)
    print("| predictions | sigma (frames) | CV speakers | r open, lag 0 | r best | mean abs lag | r width, lag 0 | shared clips r0 (best) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, preds in runs.items():
        for s in args.sigmas:
            o, w, sh = score(clips, preds, s, held)
            print(f"| {name} | {s:g} | {o['speakers']} | {o['r0']:.3f} | {o['r_best']:.3f} | {o['abs_lag']:.2f} | "
                  f"{w['r0']:.3f} | {sh.get('r0', float('nan')):.3f} ({sh.get('r_best', float('nan')):.3f}) |", flush=True)


if __name__ == "__main__":
    main()
