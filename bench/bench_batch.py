"""Batch throughput: one 30 s audio rendered for 4 identities, as a batch against 4 separate
`facetalk render` calls (never a timed test).

    .venv/bin/python bench/bench_batch.py                 # 30 s of speech, 4 people
    .venv/bin/python bench/bench_batch.py --seconds 10 --footage 6

Target on a 2-core CPU: `facetalk batch --audio a.wav --identities a,b,c,d` runs at least
1.5x faster than 4 `facetalk render --identity X --audio a.wav` calls in sequence (the
batch loads the models and each identity once and analyses the speech once).

Builds 4 identities (facetalk.identity.learn.create_identity) from cuts of 4 different
talking clips in ../shared/media/talking, makes the audio from the first seconds of
speech/en-60s.wav, then times (a) the 4 render processes one after the other and (b) the
batch process, in turns (a b, then b a: a change of load on the machine hits both; each
figure is the best of its --repeat runs), and, as another figure, (c) the batch with 2
worker processes side by side.
Each render's per-stage timings (RenderResult.timings, from the sidecars)
show where the time goes, and the CPU seconds of each side give the ceiling: the batch's
CPU spread over every core, all the time, is the least wall time any schedule of it
could take. Prints the figures and the verdict; writes bench/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from facetalk.eval.bench import MEDIA, cut_clip, machine, make_speech

TARGET = 1.5
CLIPS = {  # four different people; the cut is at most --footage seconds of each
    "congressman": "congressman-60s-256px.mp4",
    "anchor": "news-anchor-de-20s.mp4",
    "congresswoman": "congresswoman-8s.mp4",
    "mansuit": "man-suit-6s.mp4",
}



def build_identities(home: Path, tmp: Path, footage_s: float) -> dict:
    from facetalk.identity.learn import create_identity
    from facetalk.identity.registry import Registry
    from facetalk.media.video import probe_video

    registry = Registry(home)
    built = {}
    for name, clip in CLIPS.items():
        t0 = time.perf_counter()
        footage = cut_clip(MEDIA / "talking" / clip, tmp / f"{name}.mp4", footage_s, crf=14)
        info = probe_video(footage)
        seconds = round(info.n_frames / info.fps, 2)  # a clip shorter than footage_s gives all it has
        result = create_identity(registry, name, [str(footage)], consent="benchmark footage")
        manifest = registry.manifest(name)
        built[name] = {"clip": clip, "footage_s": seconds, "build_s": round(time.perf_counter() - t0, 2),
                       "ref": getattr(result, "ref", None) or f"{name}@v{manifest['version']}",
                       "bytes": sum(f["size"] for f in manifest["files"].values())}
        print(f"identity {name} from {clip} ({seconds:g} s): {built[name]['build_s']:.1f} s", flush=True)
    return built


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of one command."""
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - c0


def stage_sums(sidecars: list[Path]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for p in sidecars:
        for stage, s in json.loads(p.read_text())["result"]["timings"].items():
            sums[stage] += s
    return {k: round(v, 2) for k, v in sorted(sums.items())}


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the audio")
    ap.add_argument("--footage", type=float, default=12.0, help="seconds of each clip an identity is learnt from")
    ap.add_argument("--max-load", type=float, default=1.5, help="before timing, wait until the 1-minute load average "
                    "is below this (at most --max-wait seconds)")
    ap.add_argument("--max-wait", type=float, default=1800.0)
    ap.add_argument("--repeat", type=int, default=2, help="times (a) and (b) each run, in turns; the best counts")
    ap.add_argument("--concurrency", type=int, default=2,
                    help="also time the batch with this many worker processes (1: skip); not part of the verdict")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "facetalk"]
    with tempfile.TemporaryDirectory(prefix="facetalk-bench-batch-") as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        env = {**os.environ, "FACETALK_HOME": str(home)}
        identities = build_identities(home, tmp, args.footage)
        audio = make_speech(args.seconds, tmp / "a.wav")
        names = list(identities)
        time.sleep(20)  # let the load of the builds above fade
        waited = 0
        while load_average() > args.max_load and waited < args.max_wait:
            print(f"load average {load_average():.2f} > {args.max_load:g}: waiting for a quiet machine", flush=True)
            time.sleep(30)
            waited += 30
        load_before = load_average()

        def run_separate(folder: Path) -> tuple[float, list[float], list[float], float]:
            folder.mkdir()
            walls, cpu = [], 0.0
            for name in names:
                wall, c = timed([*exe, "render", "--identity", name, "--audio", str(audio), "-o",
                                 str(folder / f"{name}.mp4"), "--quiet"], env)
                walls.append(wall)
                cpu += c
            renders = [json.loads((folder / f"{n}.json").read_text())["seconds"] for n in names]
            return sum(walls), walls, renders, cpu

        def run_batch(folder: Path, concurrency: int = 0) -> tuple[float, dict, float]:  # 0: the batch's default
            t0, c0 = time.perf_counter(), children_cpu()
            proc = subprocess.run([*exe, "batch", "--audio", str(audio), "--identities", ",".join(names), "--out",
                                   str(folder), "--json", *(["--concurrency", str(concurrency)] if concurrency > 1 else [])],
                                  env=env,
                                  capture_output=True, text=True, check=False)
            wall, cpu = time.perf_counter() - t0, children_cpu() - c0
            if proc.returncode != 0:
                raise SystemExit(f"the batch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            return wall, json.loads(proc.stdout), cpu

        # (a) and (b) in turns, a-b then b-a..., so a change of load on the machine hits both;
        # each figure is the best of its repeats (interference only ever adds time)
        runs_a, runs_b = [], []
        for r in range(args.repeat):
            for which in (("a", "b") if r % 2 == 0 else ("b", "a")):
                if which == "a":
                    total, walls, renders, cpu = run_separate(tmp / f"separate-{r}")
                    runs_a.append({"total_s": round(total, 2), "cpu_s": round(cpu, 2), "calls_s": [round(w, 2) for w in walls],
                                   "render_s": renders, "folder": tmp / f"separate-{r}"})
                    print(f"(a) {len(names)} x facetalk render: {total:.1f} s "
                          f"({', '.join(f'{w:.1f}' for w in walls)})", flush=True)
                else:
                    wall, summary, cpu = run_batch(tmp / f"batch-{r}")
                    runs_b.append({"total_s": round(wall, 2), "cpu_s": round(cpu, 2),
                                   "render_s": [x["seconds"] for x in summary["rows"]],
                                   "shared": summary["shared"], "folder": tmp / f"batch-{r}"})
                    print(f"(b) facetalk batch --identities {','.join(names)}: {wall:.1f} s", flush=True)
        best_a = min(runs_a, key=lambda x: x["total_s"])
        best_b = min(runs_b, key=lambda x: x["total_s"])
        conc_s = None
        if args.concurrency > 1:  # not shared loading: renders side by side (other figure, not the verdict's)
            conc_s, _, _ = run_batch(tmp / "batch-c", args.concurrency)
            print(f"(c) facetalk batch ... --concurrency {args.concurrency}: {conc_s:.1f} s", flush=True)
        stages_sep = stage_sums([best_a["folder"] / f"{n}.json" for n in names])
        stages_batch = stage_sums([best_b["folder"] / f"{n}.json" for n in names])
        size = {n: json.loads((best_b["folder"] / f"{n}.json").read_text())["result"] for n in names}
        for run in runs_a + runs_b:
            run.pop("folder")
        summary = {"shared": best_b["shared"]}
        separate, render_sep = best_a["calls_s"], best_a["render_s"]
        batch_s, render_batch = best_b["total_s"], best_b["render_s"]
    total_sep = sum(separate)
    speedup = total_sep / batch_s
    # what sharing can give at most: the batch's CPU spread over every core, all the time
    cores = len(os.sched_getaffinity(0))
    cpu_sep, cpu_batch = best_a["cpu_s"], best_b["cpu_s"]
    ceiling = total_sep / (cpu_batch / cores)
    met = speedup >= TARGET
    row = {
        "audio_s": args.seconds, "identities": identities,
        "repeat": args.repeat, "runs_separate": runs_a, "runs_batch": runs_b,
        "separate_s": separate, "separate_total_s": round(total_sep, 2),
        "separate_render_s": render_sep,  # inside each process: pipeline.render alone
        "batch_s": round(batch_s, 2), "batch_render_s": render_batch, "shared": summary["shared"],
        "speedup": round(speedup, 3), "target": TARGET, "met": met,
        "cpu_separate_s": cpu_sep, "cpu_batch_s": cpu_batch, "cores": cores,
        "speedup_ceiling": round(ceiling, 3),  # separate wall / (batch CPU / cores)
        "concurrency": args.concurrency if conc_s is not None else None,
        "batch_concurrent_s": round(conc_s, 2) if conc_s is not None else None,
        "speedup_concurrent": round(total_sep / conc_s, 3) if conc_s is not None else None,
        "stage_s_separate": stages_sep, "stage_s_batch": stages_batch,
        "outputs": {n: f"{r['width']}x{r['height']}, {r['n_frames']} frames" for n, r in size.items()},
        "load_before": round(load_before, 2), "load_after": round(load_average(), 2), "machine": machine(),
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "batch.json").write_text(json.dumps(row, indent=2))
    overhead_sep = total_sep - sum(render_sep)
    overhead_batch = batch_s - sum(render_batch)
    print(f"\n{len(names)} identities x {args.seconds:g} s of audio ({', '.join(row['outputs'].values())})")
    print(f"  (a) {len(names)} separate renders: {total_sep:.1f} s ({sum(render_sep):.1f} s rendering, "
          f"{overhead_sep:.1f} s process start, imports, models)")
    print(f"  (b) one batch:           {batch_s:.1f} s ({sum(render_batch):.1f} s rendering, {overhead_batch:.1f} s the rest); "
          f"speech analysed {summary['shared']['speech_analyses']}x, reused {summary['shared']['speech_reused']}x")
    print("  seconds per stage, summed over the renders (thread-seconds):")
    for stage in sorted(set(stages_sep) | set(stages_batch)):
        print(f"    {stage:<10} separate {stages_sep.get(stage, 0):7.2f}   batch {stages_batch.get(stage, 0):7.2f}")
    if conc_s is not None:
        print(f"  (c) batch, {args.concurrency} worker processes: {conc_s:.1f} s ({total_sep / conc_s:.2f}x; "
              "renders side by side, not shared loading: not the target's figure)")
    print(f"  CPU: separate {cpu_sep:.1f} s, batch {cpu_batch:.1f} s (shared loading saves {cpu_sep - cpu_batch:.1f} s); "
          f"the batch's CPU on {cores} cores all the time would take {cpu_batch / cores:.1f} s: "
          f"no schedule of this batch beats {ceiling:.2f}x")
    print(f"speed-up {speedup:.2f}x: {'meets' if met else 'MISSES'} the target (>= {TARGET:g}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
