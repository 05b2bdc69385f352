"""`facetalk grade`: colour-grade any video with a .cube LUT (facetalk.finish.grade),
registered by facetalk.cli."""

from __future__ import annotations

import click

from .lut import INTERPOLATIONS


@click.command("grade")
@click.argument("input_video", metavar="IN")
@click.option("--lut", "lut_path", required=True, help="The look: a .cube LUT file (1D or 3D, Adobe/Resolve format).")
@click.option("--lut-strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="How much of the look: 0 leaves the video as it is, 0.5 goes halfway.")
@click.option("--interpolation", type=click.Choice(INTERPOLATIONS), default="tetrahedral", show_default=True,
              help="Between the LUT's grid points (tetrahedral is what Resolve uses).")
@click.option("-o", "--output", required=True, help="The MP4 to write (never the input itself).")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="H.264 quality (lower is better).")
@click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors.")
@click.option("--json-progress", is_flag=True, help="One JSON event per line on stderr.")
def grade_command(input_video, lut_path, lut_strength, interpolation, output, crf, quiet_flag, json_progress):
    """Colour-grade the video IN with a .cube LUT into the MP4 OUTPUT.

    \b
    facetalk grade talk.mp4 --lut warm.cube -o talk-warm.mp4
    facetalk grade talk.mp4 --lut teal.cube --lut-strength 0.6 -o talk-teal.mp4

    The LUT works on the video's R'G'B' code values as decoded (Rec.709 looks are made
    for those). The picture is re-encoded as H.264; the soundtrack is copied untouched
    and the container's tags (title, comment, an AI-generated label) are kept."""
    from ..cli import _context, _finish
    from ..progress import JsonProgress
    from .grade import grade_video

    ctx, sink = _context(0, quiet_flag, json_progress)
    try:
        result = grade_video(input_video, lut_path, output, strength=lut_strength,
                             interpolation=interpolation, crf=crf, ctx=ctx)
    finally:
        _finish(sink, ctx, quiet_flag)
    if isinstance(sink, JsonProgress):
        sink.emit("result", **result.to_dict())
    elif not quiet_flag:
        audio = {"copied": "audio copied", "re-encoded": "audio re-encoded to AAC", "none": "no audio"}[result.audio]
        click.echo(f"wrote {result.output} ({result.width}x{result.height}, {result.duration:.2f} s, {audio})")
