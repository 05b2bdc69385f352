"""`facetalk eval` and `facetalk bench`: click commands, registered by facetalk.cli."""

from __future__ import annotations

from pathlib import Path

import click

from ..speech.text import read_transcript


@click.command("eval")
@click.option("--video", type=click.Path(dir_okay=False), help="A real talking clip (its soundtrack is the speech).")
@click.option("--audio", type=click.Path(dir_okay=False), help="The clip's own soundtrack, when not in the video file.")
@click.option("--transcript", type=click.Path(dir_okay=False), help="Text of the words spoken (forced alignment).")
@click.option("--suite", type=click.Path(file_okay=False), help="Evaluate every video in this folder (clip.txt beside a clip is its transcript).")
@click.option("-o", "--output", default=None, help="Write the full results (metrics and curves) to this JSON file.")
@click.option("--plot", default=None, help="Write a PNG of generated vs real mouth openness (with --suite: a folder, one PNG per clip).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=None, help="Evaluate only the first seconds of each clip.")
@click.option("--modes", default=",".join(("photo", "rules", "video", "energy", "frozen")), show_default=True,
              help="Comma-separated modes: photo, rules, video, identity, identity-video, energy, frozen. With an identity mode, every mode is measured on the part of the clip after the one the identity learns from.")
@click.option("--train-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Mode identity: learn from the clip's first seconds [default: two thirds of the clip].")
@click.option("--keep", default=None, type=click.Path(file_okay=False), help="Keep the renders in this folder (with --suite: one subfolder per clip).")
def eval_command(video, audio, transcript, suite, output, plot, max_seconds, modes, train_seconds, keep):
    """Self-reenactment: regenerate a real clip from its soundtrack and compare.

    Rows are modes (photo: from one frame of the clip; video: the clip with its mouth
    re-synthesised; identity: a person learnt from the clip's first part, rendered from
    its own face clip; all with the learned lip model; rules: photo's render with the
    rule path from mouth cues; energy and frozen: baselines). The lip-sync table gives the
    correlation of mouth opening and width with the real clip's at lag 0 (r0, what a
    viewer sees; 1 best) beside the best r within 10 frames either way (r best, at lag
    frames, + = generated late). The likeness table gives LMD (mouth landmark distance
    over inter-ocular distance), identity distance (< 0.6 = same person), sharpness and
    jitter over the real clip's (1 = as real), face PSNR/SSIM.
    """
    from ..face.models import FaceModels
    from . import report
    from .run import EvalOptions, evaluate_clip, evaluate_suite

    if (video is None) == (suite is None):
        raise click.UsageError("give either --video CLIP or --suite FOLDER")
    options = EvalOptions(max_seconds=max_seconds, modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
                          train_seconds=train_seconds)
    models = FaceModels()
    if video is not None:
        result = evaluate_clip(video, audio, read_transcript(transcript), options, models, workdir=keep)
        click.echo(report.format_table(result))
        if output:
            report.write_json(report.to_dict(result), output)
        if plot:
            report.plot_openness(result, plot)
        return
    if audio or transcript:
        raise click.UsageError("--audio and --transcript apply to one --video; a suite reads clip.txt beside each clip")
    if plot:
        Path(plot).mkdir(parents=True, exist_ok=True)

    def on_clip(clip, res, err):
        click.echo(f"{clip.name}: " + ("done" if res is not None else f"failed: {err}"), err=True)
        if res is not None and plot:
            report.plot_openness(res, Path(plot) / f"{clip.stem}.png")

    runs = evaluate_suite(suite, options, models, on_clip=on_clip, workdir=keep)
    rows = [(clip.name, report.suite_row(res) if res else None, err) for clip, res, err in runs]
    click.echo(report.format_suite(rows, max_lag=options.max_lag))
    if output:
        report.write_json({"suite": str(suite), "clips": [
            report.to_dict(res) if res else {"clip": str(clip), "error": err} for clip, res, err in runs
        ]}, output)


@click.command("bench")
@click.option("--quick", is_flag=True, help="Only the 15 s cases.")
@click.option("-o", "--output", default=None, help="Write the results to this JSON file.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seconds", "seconds", type=float, multiple=True, help="Audio lengths to run (repeatable) instead of 15, 60, 600.")
@click.option("--size", "sizes", multiple=True, help="Output sizes WxH (repeatable) instead of 1280x720 and 1920x1080.")
@click.option("--input", "inputs", type=click.Choice(["photo", "video"]), multiple=True, help="Input kinds (repeatable) [default: both].")
def bench_command(quick, output, device, seconds, sizes, inputs):
    """Speed and peak memory of each render stage, against a decode+encode floor.

    Each case runs in its own process. RTF is audio seconds over wall seconds (above 1:
    faster than real time); 'x floor' is render time over the time to decode and
    re-encode the same frames with no processing.
    """
    from . import bench
    from .report import write_json

    bench.check_device(device)
    durations = tuple(seconds) or ((15.0,) if quick else bench.DURATIONS)
    size_list = tuple(bench.parse_wxh(s) for s in sizes) or bench.SIZES
    kinds = tuple(inputs) or bench.INPUTS

    def on_row(row: dict) -> None:
        click.echo(bench.format_row(row))

    click.echo(bench.HEADER)
    rows = bench.run_bench(durations, size_list, kinds, on_row=on_row)
    if output:
        write_json({"device": device, "machine": bench.machine(), "cases": rows}, output)
