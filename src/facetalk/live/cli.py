"""`facetalk live`: the live path fed from a file, recording what a viewer would have seen."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError
from ..finish.options import DEFAULT_LABEL_TEXT


@click.command("live")
@click.option("--face", type=click.Path(dir_okay=False), default=None, help="Photo or video of the person (a video's calmest early frame is used).")
@click.option("--identity", default=None, metavar="NAME", help="A learnt person (their reference photo and mouth amplitudes).")
@click.option("--audio", type=click.Path(dir_okay=False), required=True, help="Speech to stream, as a microphone would.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="MP4 of what a viewer saw, audio muxed.")
@click.option("--size", type=int, default=512, show_default=True, help="Long side of the live frames, px.")
@click.option("--fps", type=float, default=25.0, show_default=True)
@click.option("--delay", "delay_s", type=float, default=0.32, show_default=True,
              help="Seconds each frame is sent behind the sound it shows (at least 0.28: the lip model's look-ahead).")
@click.option("--fast", is_flag=True, help="As fast as frames are made, no real-time pace (every frame drawn; for tests).")
@click.option("--no-adapt", is_flag=True, help="Never step down scale or rate when the machine is too slow (late frames are still skipped).")
@click.option("--workers", type=click.IntRange(1, 8), default=2, show_default=True, help="Frames drawn at once.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--still", is_flag=True, help="No blinks, sway or breathing.")
@click.option("--face-index", type=int, default=None, help="Which face when several (0 = the largest).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a JSON report: per frame index, pts, sent time, mouth opening, scale; skips and level changes.")
@click.option("--label/--no-label", default=True, show_default=True,
              help="Show the visible AI-generated label on every frame (the MP4 says it is AI-generated either way).")
@click.option("--label-text", default=DEFAULT_LABEL_TEXT, show_default=True, help="Words of the visible label.")
@click.option("--quiet", is_flag=True)
def live_command(face, identity, audio, output, size, fps, delay_s, fast, no_adapt, workers, seed, still, face_index,
                 report_path, label, label_text, quiet) -> None:
    """Stream --audio through the live path at real-time pace and record the result.

    What `facetalk serve`'s live endpoint does for a microphone, from a file: frames are
    made as the sound arrives, each sent a fixed --delay behind it; when the machine
    cannot keep up, late frames are skipped (the viewer sees the last one held) and the
    render steps down (smaller, then half rate), never falling further behind.
    """
    from ..media.encode import check_output_path
    from ..media.formats import classify
    from .face import prepare_face
    from .run import run_file
    from .session import LiveOptions, LiveSession

    if not Path(audio).is_file():
        raise InputError(f"--audio {audio}: no such file")
    classify(audio, role="--audio")
    check_output_path(output)
    options = LiveOptions(fps=fps, delay_s=delay_s, seed=seed, still=still, adapt=not no_adapt, label=label,
                          label_text=label_text)
    options.check()
    live_face = prepare_face(face, identity, size=size, face_index=face_index)
    session = LiveSession(live_face, options, workers=workers)
    result = run_file(session, audio, output, realtime=not fast)
    st = result.stats
    if report_path:
        report = {"frames": result.frames, "sent": st.frames, "skipped": st.skipped, "held": st.held,
                  "max_late_s": round(st.max_late_s, 4), "levels": st.levels, "wall_s": round(result.wall_s, 3),
                  "fps": fps, "delay_s": delay_s, "size": list(live_face.size), "realtime": not fast,
                  "log": {k: [round(float(x), 4) for x in v] for k, v in vars(result.log).items()}}
        tmp = Path(str(report_path) + ".tmp")
        tmp.write_text(json.dumps(report), encoding="utf-8")
        tmp.replace(report_path)
    if not quiet:
        click.echo(f"{output}: {result.frames} frames ({result.duration:.2f} s) at {live_face.size[0]}x{live_face.size[1]}, "
                   f"{st.frames} sent, {st.skipped} skipped as late, {st.held} held at half rate; "
                   f"frames sent {delay_s:.2f} s behind the sound" + ("" if fast else f", at most {st.max_late_s:+.3f} s past that"),
                   err=True)


__all__ = ["live_command"]
