"""`facetalk tts` (text -> WAV, optionally its mouth cues) and `facetalk voices`: click
commands, registered by facetalk.cli."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError


def _text_value(click_ctx: click.Context, param, value):
    """--text: its value, or what --text-file read; both given is a usage error."""
    if value is not None and click_ctx.params.get("text") is not None:
        raise click.UsageError("give --text or --text-file, not both")
    return value if value is not None else click_ctx.params.get("text")


def _text_file_value(click_ctx: click.Context, param, value):
    """--text-file: read into the text parameter, so every command with these options
    (render, jobs submit, tts) receives the words as `text`."""
    from ..speech.text import read_transcript

    if value is not None:
        if click_ctx.params.get("text") is not None:
            raise click.UsageError("give --text or --text-file, not both")
        click_ctx.params["text"] = read_transcript(value)


def text_options() -> list:
    """--text, --text-file, --voice, --rate, --pitch: words to speak (facetalk.render_options adds them)."""
    return [
        click.option("--text", default=None, callback=_text_value,
                     help="Words to speak instead of --audio (text-to-speech); a blank line pauses, [pause 500ms] too."),
        click.option("--text-file", type=click.Path(dir_okay=False), default=None, expose_value=False,
                     callback=_text_file_value, help="Read --text from this UTF-8 file."),
        click.option("--voice", default=None,
                     help="Voice of --text: an espeak-ng voice (en-us, en-gb, cmn, ...; see `facetalk voices`) "
                          "or a Piper model path/to/voice.onnx [default: en-us]."),
        click.option("--rate", type=int, default=None,
                     help="Speaking rate of --text in words per minute (80-450) [default: the voice's, 175]."),
        click.option("--pitch", type=int, default=None,
                     help="Pitch of --text, 0-100 (espeak-ng only) [default: 50, the voice's own]."),
    ]


def _text_options(f):
    for opt in reversed(text_options()):
        f = opt(f)
    return f


@click.command("tts")
@_text_options
@click.option("-o", "--output", required=True, help="The WAV to write (written whole or not at all).")
@click.option("--cues", "cues_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the mouth-shape timeline (Rhubarb TSV) to this file.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors.")
def tts_command(text, voice, rate, pitch, output, cues_path, quiet_flag):
    """Speak --text (or --text-file) into a WAV with a local voice (speech only, no video).

    A blank line in the text is a paragraph pause; [pause 500ms] or [pause 1.5s] pause anywhere.
    """
    from ..cli import _finish, _write_atomic
    from ..context import RunContext
    from ..progress import quiet
    from . import DEFAULT_VOICE, prepare, speak_to_wav, speech_from_spoken

    if text is None:
        raise InputError("give --text or --text-file (the words to speak)")
    out = Path(output)
    if out.suffix.lower() != ".wav":
        raise InputError(f"output {out} must end in .wav: rename it")
    if out.is_dir():
        raise InputError(f"output {out} is a folder: give a file name ending in .wav")
    if cues_path is not None and Path(cues_path).resolve() == out.resolve():
        raise InputError("--cues must name another file than the WAV")
    voice = voice or DEFAULT_VOICE
    prepared = prepare(text, voice, rate, pitch)
    ctx = RunContext()
    spoken = speak_to_wav(text, voice, out, rate, pitch, ctx, prepared=prepared)
    if cues_path is not None:
        from ..speech.export import cues_to_tsv

        try:
            _write_atomic(Path(cues_path), cues_to_tsv(speech_from_spoken(spoken, ctx).cues))
        except BaseException:
            out.unlink(missing_ok=True)  # nothing half-done: no WAV without the cues asked for
            raise
    _finish(quiet, ctx, quiet_flag)
    if not quiet_flag:
        click.echo(f"wrote {out} ({spoken.duration:.2f} s, {spoken.sentences} sentence{'s' if spoken.sentences != 1 else ''}, "
                   f"voice {spoken.voice}, timings from the {'engine' if spoken.timing == 'engine' else spoken.timing})")


@click.command("voices")
@click.option("--json", "as_json", is_flag=True, help="Print the voices as JSON.")
@click.option("--language", default=None, help="Only voices whose language starts with this (en, cmn, fr-...).")
def voices_command(as_json, language):
    """List the installed voices for --voice (espeak-ng's; a Piper voice is given by its .onnx path)."""
    from . import list_voices

    voices = list_voices()
    if language:
        voices = [v for v in voices if v.language.startswith(language.lower())]
    if as_json:
        click.echo(json.dumps([{"name": v.name, "language": v.language, "engine": v.engine,
                                "description": v.description} for v in voices], indent=2))
        return
    width = max([len(v.name) for v in voices] + [5])
    click.echo(f"{'VOICE':<{width}}  {'ENGINE':<9}  DESCRIPTION")
    for v in voices:
        click.echo(f"{v.name:<{width}}  {v.engine:<9}  {v.description}")
    click.echo(f"\n{len(voices)} voices. Piper: --voice path/to/voice.onnx (voice.onnx.json beside it; pip install piper-tts).")
