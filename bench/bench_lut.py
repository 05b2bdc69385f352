"""LUT speed: ms to grade one 1080p frame with a .cube LUT (never a timed test).

    .venv/bin/python bench/bench_lut.py            # 33^3 and 65^3, both interpolations
    .venv/bin/python bench/bench_lut.py --repeat 50

Target: Lut.apply on a 1920x1080 uint8 frame well under 10 ms (one core), after the
once-per-LUT bake of the 256^3 table, which is timed separately.

The frames are real 1080p video (../shared/media/talking/presenter-1080p-7s.mp4, a
synthetic gradient if missing) and, as a worst case for the gather, uniform noise (every
pixel a random entry of the 64 MiB table: no cache locality, unlike any real picture).
Each figure is the median of --repeat calls, wall and CPU time of this process; the load
average before and after is recorded (the machine is shared). Writes bench/results/lut.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from facetalk.eval.bench import MEDIA, machine
from facetalk.finish.lut import load_lut

RESULTS = Path(__file__).resolve().parent / "results" / "lut.json"
TARGET_MS = 10.0


def write_look(path: Path, n: int) -> Path:
    """An n^3 teal-and-orange look with extra contrast (smooth, like a real grade)."""
    g = np.linspace(0.0, 1.0, n)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    y = 0.2126 * r + 0.7152 * gg + 0.0722 * b
    s = 0.5 + (y - 0.5) * 1.15
    out = np.stack([r + 0.10 * (y - 0.5) + 0.02, gg + (s - y) * 0.5, b - 0.12 * (y - 0.5)], axis=-1)
    rows = "\n".join(f"{v[0]:.6f} {v[1]:.6f} {v[2]:.6f}" for v in np.clip(out, 0, 1).reshape(-1, 3))
    path.write_text(f'TITLE "bench look {n}"\nLUT_3D_SIZE {n}\n{rows}\n')
    return path


def write_curve(path: Path) -> Path:
    x = np.linspace(0.0, 1.0, 1024)
    rows = "\n".join(f"{a:.6f} {a ** 0.9:.6f} {a ** 1.1:.6f}" for a in x)
    path.write_text(f"LUT_1D_SIZE 1024\n{rows}\n")
    return path


def real_frame() -> tuple[np.ndarray, str]:
    src = MEDIA / "talking" / "presenter-1080p-7s.mp4"
    if src.is_file():
        from facetalk.media.video import iter_frames

        for k, rgb in enumerate(iter_frames(src)):
            if k == 30:
                return np.ascontiguousarray(rgb[:1080, :1920]), src.name
    h, w = 1080, 1920
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1).astype(np.uint8)
    return rgb, "synthetic gradient"


def timed(fn, repeat: int) -> dict:
    fn()  # warm: page faults of the output, first touch of the table
    walls, cpus = [], []
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((time.process_time() - c) * 1000)
    return {"ms_median": round(statistics.median(walls), 2), "ms_min": round(min(walls), 2),
            "cpu_ms_median": round(statistics.median(cpus), 2)}


def two_threads(lut, frame: np.ndarray, interp: str, frames: int) -> float:
    """Frames per second of two threads grading `frames` frames each (as the pipeline's finisher)."""
    def work():
        for _ in range(frames):
            lut.apply(frame, interpolation=interp)

    threads = [threading.Thread(target=work) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return round(2 * frames / (time.perf_counter() - t), 1)


def bench_3d(path: Path, n: int, frame: np.ndarray, noise: np.ndarray, repeat: int) -> list[dict]:
    t = time.perf_counter()
    lut = load_lut(path)
    parse_s = time.perf_counter() - t
    rows = []
    for interp in ("tetrahedral", "trilinear"):
        c, t = time.process_time(), time.perf_counter()
        lut.baked(interp)
        bake = {"s": round(time.perf_counter() - t, 2), "cpu_s": round(time.process_time() - c, 2)}

        def apply(rgb, strength=1.0, interp=interp):
            lut.apply(rgb, strength=strength, interpolation=interp)

        row = {
            "lut": f"3D {n}^3", "interpolation": interp, "parse_s": round(parse_s, 2), "bake": bake,
            "apply_1080p": timed(lambda: apply(frame), repeat),
            "apply_1080p_strength_0.8": timed(lambda: apply(frame, 0.8), repeat),
            "apply_1080p_noise": timed(lambda: apply(noise), repeat),
            "fps_2_threads": two_threads(lut, frame, interp, repeat),
        }
        rows.append(row)
        print(f"3D {n:2d}^3 {interp:11s}  bake {bake['s']:5.2f} s  apply {row['apply_1080p']['ms_median']:6.2f} ms"
              f"  (strength 0.8: {row['apply_1080p_strength_0.8']['ms_median']:.2f} ms,"
              f" noise: {row['apply_1080p_noise']['ms_median']:.2f} ms,"
              f" 2 threads: {row['fps_2_threads']} frames/s)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--sizes", default="33,65")
    args = ap.parse_args()

    frame, frame_name = real_frame()
    noise = np.random.default_rng(0).integers(0, 256, frame.shape, dtype=np.uint8)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="facetalk-lut-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = write_look(Path(tmp) / f"look{n}.cube", n)
            rows += bench_3d(path, n, frame, noise, args.repeat)
        curve = load_lut(write_curve(Path(tmp) / "curve.cube"))
        row = {"lut": "1D 1024", "interpolation": "linear",
               "apply_1080p": timed(lambda: curve.apply(frame), args.repeat),
               "apply_1080p_strength_0.8": timed(lambda: curve.apply(frame, strength=0.8), args.repeat)}
        rows.append(row)
        print(f"1D 1024      linear       apply {row['apply_1080p']['ms_median']:6.2f} ms"
              f"  (strength 0.8: {row['apply_1080p_strength_0.8']['ms_median']:.2f} ms)")
    load_after = os.getloadavg()
    worst = max(r["apply_1080p"]["ms_median"] for r in rows)
    verdict = "PASS" if worst < TARGET_MS else "FAIL"
    print(f"slowest 1080p apply {worst:.2f} ms (target < {TARGET_MS:g} ms): {verdict}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "frame": f"{frame.shape[1]}x{frame.shape[0]} {frame_name}", "repeat": args.repeat, "rows": rows,
        "target_ms": TARGET_MS, "verdict": verdict, "load_average": [load_before[0], load_after[0]],
        "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
