"""The `facetalk` command: a thin shell over facetalk.pipeline.

Errors a user can cause print one line and exit with code 2; `--debug` shows tracebacks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import click

from . import __version__
from .atomic import replacing
from .context import RunContext
from .errors import FacetalkError
from .framing import parse_size
from .progress import BarProgress, JsonProgress, quiet
from .speech.text import read_transcript
from .tts.cli import text_options

DEMO_TEXT = (
    "Hello! I am a talking portrait made by facetalk. "
    "My lips follow every word you give me, and it all runs on your own computer."
)


def _context(seed: int, quiet_flag: bool, json_progress: bool) -> tuple[RunContext, object]:
    if json_progress:
        sink = JsonProgress()
    elif quiet_flag or not sys.stderr.isatty():
        sink = quiet
    else:
        sink = BarProgress()
    return RunContext(progress=sink, seed=seed), sink


def _finish(sink, ctx: RunContext, quiet_flag: bool) -> None:
    if isinstance(sink, BarProgress):
        sink.close()
    for w in ctx.warnings:
        if isinstance(sink, JsonProgress):
            sink.emit("warning", message=w)
        elif not quiet_flag:
            click.echo(f"facetalk: warning: {w}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="facetalk")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(click_ctx: click.Context, debug: bool) -> None:
    """Talking video from a photo or video of a person and speech, on your own computer."""
    click_ctx.obj = {"debug": debug}


def finish_options() -> list:
    """Finishing options (facetalk.finish): face detail, colour grade, the visible label."""
    from .finish.options import DEFAULT_LABEL_OPACITY, DEFAULT_LABEL_SIZE, DEFAULT_LABEL_TEXT, LABEL_CORNERS

    return [
        click.option("--enhance", is_flag=True, help="Sharpen detail in the mouth (teeth, lips) and, gently, the face; no model needed."),
        click.option("--enhancer", type=click.Path(dir_okay=False), default=None,
                     help="A face-restoration model exported to ONNX (GFPGAN, CodeFormer: 512 px aligned face in, same out), run on the face of every frame."),
        click.option("--lut", type=click.Path(dir_okay=False), default=None, help="Colour grade the video with a .cube 3D (or 1D) LUT."),
        click.option("--lut-strength", type=float, default=1.0, show_default=True, help="How much of the --lut grade: 0 (none) to 1."),
        click.option("--label/--no-label", default=True, show_default=True,
                     help="Show a visible label on the video (the MP4 says it is AI-generated either way)."),
        click.option("--label-text", default=DEFAULT_LABEL_TEXT, show_default=True, help="Words of the visible label."),
        click.option("--label-corner", type=click.Choice(LABEL_CORNERS), default="bottom-right", show_default=True),
        click.option("--label-size", type=float, default=DEFAULT_LABEL_SIZE, show_default=True,
                     help="Height of the label's text over the frame's height (0.01-0.2)."),
        click.option("--label-opacity", type=float, default=DEFAULT_LABEL_OPACITY, show_default=True,
                     help="Opacity of the label (0.05-1)."),
    ]


def render_options(f):
    """Options shared by every command that renders."""
    opts = [
        click.option("--face", default=None, help="Photo (jpg, png, webp) or video (mp4, mov, mkv, webm) of the person."),
        click.option("--identity", default=None, help="A learnt person, NAME or NAME@vN (see `facetalk identity`); --face becomes optional."),
        click.option("--identity-face", type=click.Choice(["clip", "photo"]), default="clip", show_default=True,
                     help="Face source of an --identity without --face: a clip of its footage (looped) or its reference photo."),
        click.option("--audio", default=None, help="Speech: wav, mp3, m4a, flac, ogg (or a video's soundtrack); or --text."),
        click.option("-o", "--output", required=True, help="The MP4 to write."),
        click.option("--transcript", type=click.Path(dir_okay=False), help="Text file of the words spoken: precise lip-sync by forced alignment."),
        *text_options(),
        click.option("--fps", type=float, default=None, help="Frames per second of the output [default: 25 for a photo, the video's own rate]."),
        click.option("--size", default=None, help="Output size WIDTHxHEIGHT or a long side; default the input's, capped at 1920."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for idle motion (blinks, sway)."),
        click.option("--still", is_flag=True, help="No blinks, head sway or breathing on a photo."),
        click.option("--keep-expression", is_flag=True,
                     help="Speak with the face's own expression (a smile stays); by default a smiling or "
                          "open mouth is first brought to rest, closed and neutral (--renderer warp)."),
        click.option("--face-index", type=int, default=None, help="Which face when there are several (0 = largest)."),
        click.option("--motion", "mouth", type=click.Choice(["learned", "rules"]), default="learned", show_default=True,
                     help="Lip motion: the lip model learnt from real footage, or the rule path (mouth cues, as `facetalk cues` exports)."),
        click.option("--lip-model", type=click.Path(file_okay=False, exists=True), default=None,
                     help="A lip model folder of your own (`facetalk lipsync train`) [default: the one shipped with facetalk]."),
        click.option("--renderer", default=None, help="Renderer plug-in: warp, retrieval (needs --identity) or neural (an identity with an adapter, see `facetalk identity train`) [default: retrieval with --identity, else warp]."),
        click.option("--base", default=None, type=click.Path(file_okay=False), help="--renderer neural: base model folder [default: the one the identity's adapter was trained on]."),
        click.option("--merge", is_flag=True, help="--renderer neural: fuse the adapter into the weights (faster)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where models run: --renderer neural, --enhancer."),
        click.option("--color-match", type=click.Choice(["none", "mean", "histogram"]), default="mean", show_default=True,
                     help="Match the colour of the new mouth to the face around it: by mean, by histogram, or not."),
        click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="H.264 quality (lower is better)."),
        *finish_options(),
        click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors."),
        click.option("--json-progress", is_flag=True, help="One JSON event per line on stderr."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@cli.command()
@render_options
def render(face, identity, identity_face, audio, output, transcript, text, voice, rate, pitch, fps, size, seed, still,
           keep_expression, face_index, mouth, lip_model, renderer, base, merge, device, color_match, crf, enhance, enhancer, lut, lut_strength, label,
           label_text, label_corner, label_size, label_opacity, quiet_flag, json_progress):
    """Render FACE (or a learnt --identity) speaking AUDIO (or --text) into an MP4.

    With --text or --text-file the words are spoken by a local text-to-speech voice
    (--voice) and the lips follow the engine's own phone timings.

    The render is recorded as a job in the facetalk home's job store and runs here, the
    same code path as `facetalk worker` (a sidecar OUTPUT.json holds request and result)."""
    from .home import facetalk_home
    from .jobs.runner import run_in_process
    from .pipeline import RenderRequest

    if text is not None:
        from .tts import check_text_request

        check_text_request(audio, transcript, text, voice, rate, pitch)  # one line, before a job is recorded
    elif not audio:
        raise FacetalkError("give --audio (the speech) or --text / --text-file (words to speak)")
    request = RenderRequest(
        face=face, identity=identity, identity_face=identity_face, audio=audio, output=output,
        transcript=read_transcript(transcript), text=text, voice=voice, rate=rate, pitch=pitch, fps=fps,
        size=parse_size(size), seed=seed, still=still, keep_expression=keep_expression, face_index=face_index, mouth=mouth,
        lip_model=str(Path(lip_model).absolute()) if lip_model else None, renderer=renderer,
        base=str(Path(base).absolute()) if base else None, merge=merge, device=device,
        color_match=color_match, crf=crf, enhance=enhance, enhancer=enhancer, lut=lut, lut_strength=lut_strength,
        label=label, label_text=label_text, label_corner=label_corner, label_size=label_size,
        label_opacity=label_opacity,
    )
    ctx, sink = _context(seed, quiet_flag, json_progress)
    try:
        result = run_in_process(request, facetalk_home(), ctx)
    finally:
        _finish(sink, ctx, quiet_flag)
    if isinstance(sink, JsonProgress):
        sink.emit("result", **result.to_dict())
    elif not quiet_flag:
        click.echo(f"wrote {result.output} ({result.width}x{result.height}, {result.duration:.2f} s, lip-sync from {result.speech_method})")


@cli.command()
@click.argument("audio")
@click.option("--transcript", type=click.Path(dir_okay=False), help="Text file of the words spoken.")
@click.option("--format", "fmt", type=click.Choice(["json", "tsv"]), default="tsv", show_default=True)
@click.option("-o", "--output", default=None, help="Write to this file instead of standard output.")
@click.option("--quiet", "quiet_flag", is_flag=True)
def cues(audio, transcript, fmt, output, quiet_flag):
    """Print the mouth-shape timeline of AUDIO (Rhubarb shapes A-H and X)."""
    from .pipeline import speech_only
    from .speech.export import cues_to_json, cues_to_tsv

    ctx = RunContext()
    speech = speech_only(audio, read_transcript(transcript), ctx)
    text = cues_to_json(speech.cues, audio, speech.duration) if fmt == "json" else cues_to_tsv(speech.cues)
    _finish(quiet, ctx, quiet_flag)
    if output:
        _write_atomic(Path(output), text)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@cli.command()
@click.option("-o", "--output", default="demo.mp4", show_default=True)
@click.option("--text", default=DEMO_TEXT, help="What the demo face says.")
@click.option("--quiet", "quiet_flag", is_flag=True)
@click.option("--json-progress", is_flag=True)
def demo(output, text, quiet_flag, json_progress):
    """Render a demo: a face shipped with scikit-image says TEXT, spoken by espeak-ng."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from .pipeline import RenderRequest, render as run_render

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise FacetalkError("espeak-ng not found: install it with 'apt-get install espeak-ng'")
    with tempfile.TemporaryDirectory(prefix="facetalk-demo-") as tmp:
        face = Path(tmp) / "astronaut.png"
        Image.fromarray(np.asarray(skimage.data.astronaut())).save(face)
        speech = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(speech), text], check=True, capture_output=True)
        request = RenderRequest(face=str(face), audio=str(speech), output=output, transcript=text)
        ctx, sink = _context(0, quiet_flag, json_progress)
        try:
            result = run_render(request, ctx)
        finally:
            _finish(sink, ctx, quiet_flag)
    if not quiet_flag:
        click.echo(f"wrote {result.output} ({result.width}x{result.height}, {result.duration:.2f} s)")


def _write_atomic(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        raise FacetalkError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with replacing(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise FacetalkError(f"cannot write {path}: {e.strerror}") from None


from .eval.cli import bench_command, eval_command  # noqa: E402 - commands defined in their own package
from .identity.cli import identity_group  # noqa: E402
from .jobs.batch_cli import batch_command  # noqa: E402
from .jobs.cli import jobs_group, outputs_group, worker_command  # noqa: E402
from .web.cli import serve_command  # noqa: E402
from .neural.cli import base_group  # noqa: E402 - also adds `identity train` to the identity group
from .tts.cli import tts_command, voices_command  # noqa: E402
from .finish.grade_cli import grade_command  # noqa: E402
from .swap.cli import swap_command  # noqa: E402
from .lips.cli import lipsync_group  # noqa: E402
from .live.cli import live_command  # noqa: E402

cli.add_command(eval_command)
cli.add_command(bench_command)
cli.add_command(identity_group)
cli.add_command(jobs_group)
cli.add_command(worker_command)
cli.add_command(outputs_group)
cli.add_command(serve_command)
cli.add_command(batch_command)
cli.add_command(base_group)
cli.add_command(tts_command)
cli.add_command(voices_command)
cli.add_command(grade_command)
cli.add_command(swap_command)
cli.add_command(lipsync_group)
cli.add_command(live_command)


def _exit_on_sigterm(signum, frame) -> None:
    # Python's default SIGTERM kills without unwinding, leaving the temporary output
    # behind; as an exception, the writer's clean-up runs and nothing half-written stays.
    raise SystemExit(128 + signum)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps user errors to one line and exit code 2."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("FACETALK_DEBUG"))
    try:
        rv = cli.main(args=argv, prog_name="facetalk", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except FacetalkError as e:
        if debug:
            raise
        click.echo(f"facetalk: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.NoArgsIsHelpError as e:  # a bare `facetalk` or `facetalk jobs`: the help
        click.echo(e.ctx.get_help())
        return 0
    except click.UsageError as e:  # click's own "Usage: ... Try ... Error: ..." is four lines
        where = e.ctx.command_path if e.ctx is not None else "facetalk"
        click.echo(f"facetalk: error: {_one_line(e.format_message())} (see '{where} --help')", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"facetalk: error: {_one_line(e.format_message())}", err=True)
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("facetalk: interrupted", err=True)
        return 130
    except Exception as e:  # a bug, not the user's fault: one line unless --debug
        if debug:
            raise
        click.echo(f"facetalk: internal error: {type(e).__name__}: {e} (run with --debug for details)", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
