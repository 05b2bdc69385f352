"""Live: latency from a sound onset to the first open mouth sent, sustained frame rate, and
memory, over a stream of a given length fed at real-time pace (as a microphone would).

    .venv/bin/python bench/bench_live.py --duration 120 --size 512 --fps 25 [--json out.json]

The speech is ../shared/media/speech/en-60s.wav (or --audio), cut into phrases at its pauses
and looped with 0.6-1.5 s of silence between phrases, so the stream has an onset every few
seconds. Everything is measured from timestamps on one clock (seconds since the stream
started; audio sample at time s is handed over at s, in 20 ms chunks):
- latency: per onset s (voice after >= 0.4 s without), the `sent` time of the first frame
  whose drawn mouth opening is >= 0.10 with pts >= s - 0.3 (the model opens the mouth a
  little before the sound), minus s;
- onset frame: the `sent` time of the first frame showing the onset instant (pts >= s),
  minus s: how far the picture runs behind the sound (delay_s plus any lateness);
- sustained: frames sent, skipped (late), held (half rate), their rate, the largest gap
  between consecutive sent frames, and the largest lateness past pts + delay;
- memory: resident set size every 5 s; growth from the 20th second to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_stream(audio: Path, duration: float, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """(samples, onsets): phrases of the recording looped with pauses, `duration` s long."""
    from facetalk.media.audio import load_audio
    from facetalk.speech.acoustic import analyse_features
    from facetalk.types import Audio

    x = load_audio(audio).samples
    voiced = analyse_features(Audio(x)).voiced
    edges = np.flatnonzero(np.diff(np.concatenate(([0], voiced.astype(np.int8), [0]))))
    segs = [(s, e) for s, e in zip(edges[::2], edges[1::2]) if e - s >= 30]  # phrases of 0.3 s or more
    rng = np.random.default_rng(seed)
    parts, onsets, t = [], [], 0.0
    n_total = int(duration * 16000)
    i = 0
    while sum(len(p) for p in parts) < n_total:
        s, e = segs[i % len(segs)]
        i += 1
        gap = np.zeros(int(rng.uniform(0.6, 1.5) * 16000), np.float32)
        phrase = x[max(0, s * 160 - 800):min(len(x), e * 160 + 800)]  # 50 ms either side
        parts += [gap, phrase]
        t += len(gap) / 16000
        onsets.append(t + 0.05)
        t += len(phrase) / 16000
    samples = np.concatenate(parts)[:n_total]
    noise = np.random.default_rng(1).normal(0, 3e-4, len(samples)).astype(np.float32)  # a room, not digital zero
    return samples + noise, [o for o in onsets if o < duration - 1.0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--face", default=str(MEDIA / "faces" / "woman-portrait.png"))
    ap.add_argument("--audio", default=str(MEDIA / "speech" / "en-60s.wav"))
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--delay", type=float, default=0.32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-adapt", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from facetalk.live import LiveOptions, LiveSession, prepare_face
    from facetalk.live.run import feed_file

    samples, onsets = build_stream(Path(args.audio), args.duration)
    face = prepare_face(args.face, size=args.size)
    session = LiveSession(face, LiveOptions(fps=args.fps, delay_s=args.delay, adapt=not args.no_adapt),
                          workers=args.workers)
    log = {"index": [], "pts": [], "sent": [], "open": [], "scale": []}
    mem: list[tuple[float, float]] = []
    t0 = time.monotonic()
    stop = threading.Event()

    def sample_memory() -> None:
        while not stop.wait(5.0):
            mem.append((time.monotonic() - t0, rss_mb()))

    threading.Thread(target=sample_memory, daemon=True).start()

    def take(f) -> None:
        log["index"].append(f.index)
        log["pts"].append(f.pts)
        log["sent"].append(f.sent)
        log["open"].append(f.open)
        log["scale"].append(f.scale)

    cpu0 = os.times()
    wall = feed_file(session, samples, realtime=True, on_frame=take, clock=lambda: time.monotonic() - t0)
    cpu1 = os.times()
    stop.set()
    st = session.stats
    idx, pts, sent, opened = (np.array(log[k]) for k in ("index", "pts", "sent", "open"))

    latencies, behind = [], []
    for s in onsets:
        ok = np.flatnonzero((pts >= s - 0.3) & (opened >= 0.10))
        if len(ok):
            latencies.append(float(sent[ok[0]] - s))
        at = np.flatnonzero(pts >= s)
        if len(at):
            behind.append(float(sent[at[0]] - s))
    lat, av = np.array(latencies), np.array(behind)
    gaps = np.diff(sent)
    total = session.total_frames or 0
    late = sent - (pts + session.delay)
    growth = None
    later = [m for t, m in mem if t >= 20]
    if len(later) >= 2:
        growth = later[-1] - later[0]
    result = {
        "command": " ".join(sys.argv), "face": args.face, "size": list(face.size), "fps": args.fps,
        "delay_s": args.delay, "workers": args.workers, "duration_s": round(len(samples) / 16000, 2),
        "wall_s": round(wall, 2), "cpu_s": round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 1),
        "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "onsets": len(onsets), "onsets_measured": len(lat),
        "latency_ms": {k: round(float(v) * 1000) for k, v in
                       (("median", np.median(lat)), ("p90", np.percentile(lat, 90)), ("max", lat.max()))} if len(lat) else None,
        "onset_frame_ms": {k: round(float(v) * 1000) for k, v in
                           (("median", np.median(av)), ("max", av.max()))} if len(av) else None,
        "frames_total": total, "frames_sent": int(st.frames), "skipped_late": int(st.skipped), "held_half_rate": int(st.held),
        "repeated_indices": int(len(idx) - len(set(idx.tolist()))),
        "sent_fps": round(len(idx) / (len(samples) / 16000), 2),
        "max_gap_ms": round(float(gaps.max()) * 1000, 1) if len(gaps) else None,
        "late_ms": {"median": round(float(np.median(late)) * 1000, 1), "p99": round(float(np.percentile(late, 99)) * 1000, 1),
                    "max": round(float(late.max()) * 1000, 1)},
        "render_ms_mean": round(st.render_s / max(1, st.frames + st.skipped) * 1000, 1),
        "level_changes": st.levels,
        "rss_mb": {"at_20s": round(later[0], 1) if later else None, "end": round(mem[-1][1], 1) if mem else None,
                   "growth_after_20s": round(growth, 1) if growth is not None else None},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
