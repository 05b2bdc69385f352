"""`facetalk swap`: a thin click shell over facetalk.swap.swap."""

from __future__ import annotations

import click

from ..finish.options import (
    DEFAULT_LABEL_OPACITY,
    DEFAULT_LABEL_SIZE,
    DEFAULT_LABEL_TEXT,
    LABEL_CORNERS,
)
from ..framing import parse_size
from .choices import BLEND_MODES, COLOR_MODES


@click.command("swap")
@click.option("--source", "sources", multiple=True, help="Photo of the person to put in (jpg, png, webp); repeat for "
              "several poses: each frame uses the one whose head turn is nearest the target's.")
@click.option("--identity", default=None, help="A learnt person, NAME or NAME@vN (its reference photo) instead of --source.")
@click.option("--target", required=True, help="Video (mp4, mov, mkv, webm) or photo to put the face into.")
@click.option("-o", "--output", required=True, help="The MP4 to write (a video target) or the PNG/JPEG (a photo target).")
@click.option("--target-face", default="largest", show_default=True,
              help="Which target faces: largest, all (faces coming into view later are found within a second, up to 8) "
                   "or an index (0 = largest).")
@click.option("--reference", default=None, help="Photo of the target person to replace: the face most like it is swapped.")
@click.option("--mask-padding", type=float, default=0.0, show_default=True,
              help="Shrink the face mask by this fraction of the face width (0-0.4).")
@click.option("--mask-blur", type=float, default=0.08, show_default=True,
              help="Feather of the mask's edge, a fraction of the face width (0-0.5).")
@click.option("--color-match", type=click.Choice(COLOR_MODES), default="mean", show_default=True,
              help="Match the source's skin to the target's lighting: mean (Lab mean and spread), histogram, none.")
@click.option("--blend", type=click.Choice(BLEND_MODES), default="feather", show_default=True,
              help="feather (alpha) or poisson (seamless clone: slower, hides lighting seams).")
@click.option("--size", default=None, help="Output size WIDTHxHEIGHT or a long side; default the target's, capped at 1920.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="H.264 quality (lower is better).")
@click.option("--enhance", is_flag=True, help="Sharpen the face's detail (facetalk.finish).")
@click.option("--enhancer", type=click.Path(dir_okay=False), default=None,
              help="A face-restoration model exported to ONNX (GFPGAN, CodeFormer: 512 px aligned face in, same out), "
                   "run on the (first) swapped face of every frame.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the --enhancer model runs.")
@click.option("--lut", default=None, type=click.Path(dir_okay=False), help="Colour grade the frames with a .cube LUT.")
@click.option("--lut-strength", type=float, default=1.0, show_default=True, help="0 (no grade) to 1 (the LUT as made).")
@click.option("--label/--no-label", default=True, show_default=True, help="Draw the visible AI-generated label.")
@click.option("--label-text", default=DEFAULT_LABEL_TEXT, show_default=True)
@click.option("--label-corner", type=click.Choice(LABEL_CORNERS), default="bottom-right", show_default=True)
@click.option("--label-size", type=float, default=DEFAULT_LABEL_SIZE, show_default=True,
              help="Height of the label's text over the frame's height (0.01-0.2).")
@click.option("--label-opacity", type=float, default=DEFAULT_LABEL_OPACITY, show_default=True,
              help="Opacity of the label (0.05-1).")
@click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors.")
@click.option("--json-progress", is_flag=True, help="One JSON event per line on stderr.")
def swap_command(sources, identity, target, output, target_face, reference, mask_padding, mask_blur, color_match, blend,
                 size, crf, enhance, enhancer, device, lut, lut_strength, label, label_text, label_corner, label_size,
                 label_opacity, quiet_flag, json_progress):
    """Put the face of --source (or --identity) into --target, keeping the target's head
    motion, expressions and mouth; write -o. Frames without a target face are unchanged."""
    from ..cli import _context, _finish
    from ..progress import JsonProgress
    from .api import SwapRequest, swap

    request = SwapRequest(
        sources=list(sources), identity=identity, target=target, output=output, target_face=target_face,
        reference=reference, mask_padding=mask_padding, mask_blur=mask_blur, color_match=color_match, blend=blend,
        size=parse_size(size), crf=crf, enhance=enhance, enhancer=enhancer, device=device, lut=lut,
        lut_strength=lut_strength, label=label, label_text=label_text, label_corner=label_corner, label_size=label_size,
        label_opacity=label_opacity,
    )
    ctx, sink = _context(0, quiet_flag, json_progress)
    try:
        result = swap(request, ctx)
    finally:
        _finish(sink, ctx, quiet_flag)
    if isinstance(sink, JsonProgress):
        sink.emit("result", **result.to_dict())
    elif not quiet_flag:
        what = f"{result.duration:.2f} s, face in {result.frames_swapped}/{result.n_frames} frames" if result.fps else "photo"
        click.echo(f"wrote {result.output} ({result.width}x{result.height}, {what})")
