"""`facetalk batch`: many renders from a manifest, or one audio for many identities
(facetalk.jobs.batch), registered by facetalk.cli."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError


@click.command("batch")
@click.argument("manifest", required=False, type=click.Path(dir_okay=False))
@click.option("--audio", default=None, help="One speech recording for every identity of --identities.")
@click.option("--identities", default=None, help="Identities to render --audio for, separated by commas (lecturer,host,guide).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the videos, each <name>.mp4 (made if missing) [default: <home>/outputs/<date>/<job-id>-<name>.mp4].")
@click.option("--resume", is_flag=True, help="Skip rows already done (their job succeeded and the output exists); run the rest.")
@click.option("-j", "--concurrency", type=click.IntRange(1, 64), default=None,
              help="Renders at once: worker processes here [default: two rows at a time in this one process, "
                   "sharing identities and speech across rows; 1: one at a time], or Ray tasks with --ray "
                   "[default: the cluster's CPUs / 2].")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run the rows as tasks on the Ray cluster at ADDRESS (host:port of its head) instead of here.")
@click.option("--submit-only", is_flag=True, help="Only queue the rows (for 'facetalk worker'); print the batch id.")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Attempts per row before it fails (only crashes, lost nodes and unwritable outputs are retried).")
@click.option("--cpus", type=click.IntRange(1, 256), default=None, help="CPUs each row asks of a Ray node [default: 2; a row's 'cpus' wins].")
@click.option("--gpus", type=click.IntRange(0, 64), default=None,
              help="GPUs each row needs [default: 1 with device cuda, else 0; a row's 'gpus' wins].")
@click.option("--transcript", type=click.Path(dir_okay=False), default=None, help="Text file of the words spoken (for every row without its own).")
@click.option("--fps", type=float, default=None, help="Frames per second (rows without their own).")
@click.option("--size", default=None, help="Output size WIDTHxHEIGHT or a long side (rows without their own).")
@click.option("--seed", type=int, default=None, help="Seed for idle motion (rows without their own).")
@click.option("--still", is_flag=True, default=None, help="No idle motion on photos (rows without their own).")
@click.option("--renderer", default=None, help="Renderer plug-in (rows without their own).")
@click.option("--color-match", type=click.Choice(["none", "mean", "histogram"]), default=None, help="Colour match (rows without their own).")
@click.option("--crf", type=click.IntRange(0, 51), default=None, help="H.264 quality (rows without their own).")
@click.option("--identity-face", type=click.Choice(["clip", "photo"]), default=None, help="Face source of an identity (rows without their own).")
@click.option("--enhance", is_flag=True, default=None, help="Sharpen mouth and face detail (rows without their own).")
@click.option("--enhancer", type=click.Path(dir_okay=False), default=None,
              help="Face-restoration ONNX model (GFPGAN, CodeFormer) for the face (rows without their own).")
@click.option("--lut", type=click.Path(dir_okay=False), default=None, help="A .cube colour grade (rows without their own).")
@click.option("--lut-strength", type=float, default=None, help="How much of the --lut grade, 0-1 (rows without their own).")
@click.option("--label/--no-label", default=None, help="The visible AI-generated label [default: on] (rows without their own).")
@click.option("--label-text", default=None, help="Words of the visible label (rows without their own).")
@click.option("--label-corner", type=click.Choice(["bottom-right", "bottom-left", "top-right", "top-left"]), default=None,
              help="Corner of the label (rows without their own).")
@click.option("--label-size", type=float, default=None, help="Label text height over frame height (rows without their own).")
@click.option("--label-opacity", type=float, default=None, help="Opacity of the whole label, 0.05-1 (rows without their own).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="No progress lines; only the summary.")
@click.option("--home", type=click.Path(file_okay=False), default=None,
              help="Facetalk home holding jobs.db, outputs/ and identities/ [default: $FACETALK_HOME, else the user data folder].")
def batch_command(manifest, audio, identities, out_dir, resume, concurrency, ray_address, submit_only, max_attempts,
                  cpus, gpus, transcript, fps, size, seed, still, renderer, color_match, crf, identity_face, enhance,
                  enhancer, lut, lut_strength, label, label_text, label_corner, label_size, label_opacity, as_json, quiet_flag,
                  home):
    """Render many videos: one per row of MANIFEST, or --audio for each of --identities.

    \b
    facetalk batch lessons.jsonl --out videos/
    facetalk batch --audio lesson.wav --identities lecturer,host,guide --out videos/

    MANIFEST is .jsonl (one JSON object per line; blank and '#' lines skipped), .json (a
    list of objects, or {"rows": [...]}) or .csv (a header row; empty cells are not
    given). Each row: name, identity or face, audio or text (with voice, rate, pitch), and
    any render option (size, fps, seed, still, renderer, base, device, color_match, crf,
    identity_face, face_index, enhance, enhancer, lut, lut_strength, label, label_text,
    label_corner, label_size, label_opacity; transcript as a file, transcript_text as the
    words; cpus, gpus). Paths are relative to the manifest's folder. Options given here apply to every
    row that does not set its own.

    Every row is a job in the job store, tagged with the batch's id (see 'facetalk jobs
    list --batch ID'). A bad row (a missing file, an unknown identity or key) fails alone
    with its reason; the others run. The summary at the end lists every row.

    Exit code: 0 when every row succeeded (or was already done with --resume), 2 when any
    row failed, was cancelled or could not run (and for bad input, as for every command).
    """
    from ..finish.options import FinishOptions
    from ..home import facetalk_home
    from .batch import Batch, format_summary, run_batch
    from .worker import stop_on_signals

    if manifest and (audio or identities):
        raise InputError("give a MANIFEST, or --audio with --identities, not both")
    if not manifest and not (audio and identities):
        raise InputError("give a MANIFEST (.jsonl, .json or .csv), or --audio FILE with --identities A,B,C")
    if submit_only and ray_address:
        raise InputError("--submit-only queues the rows without running them: leave out --ray (run them later with "
                         "'facetalk worker --ray ADDRESS --batch ID')")
    # options given here apply to every row: a bad one is the command's error, not each row's
    given = {"lut": lut, "lut_strength": lut_strength, "enhancer": enhancer, "label_text": label_text,
             "label_corner": label_corner, "label_size": label_size, "label_opacity": label_opacity}
    FinishOptions(**{k: v for k, v in given.items() if v is not None}).check()
    home_path = Path(home).expanduser() if home else facetalk_home()
    defaults = {k: v for k, v in {"fps": fps, "size": size, "seed": seed, "still": still or None, "renderer": renderer,
                                  "color_match": color_match, "crf": crf, "identity_face": identity_face, "cpus": cpus,
                                  "gpus": gpus, "enhance": enhance or None, "lut_strength": lut_strength,
                                  "label": label, "label_text": label_text, "label_corner": label_corner,
                                  "label_size": label_size, "label_opacity": label_opacity}.items()
                if v is not None}
    for key, path in (("lut", lut), ("enhancer", enhancer)):  # relative to here, not to a manifest
        if path:
            defaults[key] = str(Path(path).expanduser().absolute())
    if transcript:
        defaults["transcript"] = str(Path(transcript).expanduser().absolute())
    out_path = None
    if out_dir:
        out_path = Path(out_dir).expanduser().absolute()
        try:
            out_path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot make the output folder {out_path}: {e.strerror or e}") from None
    if manifest:
        batch = Batch.from_manifest(Path(manifest), defaults, out_path)
    else:
        names = [n.strip() for n in identities.split(",") if n.strip()]
        batch = Batch.for_identities(Path(audio), names, defaults, out_path)
    echo = None if (quiet_flag or as_json) else (lambda line: click.echo(line, err=True))
    if echo:
        echo(f"batch {batch.id}: {len(batch.rows)} row{'s' if len(batch.rows) != 1 else ''} from {batch.source}")
    from .batch import BatchRun

    runner = BatchRun(home_path, batch, concurrency=concurrency, ray_address=ray_address, on_event=echo,
                      quiet=quiet_flag or as_json)
    with stop_on_signals(runner.stop):
        summary = run_batch(home_path, batch, resume=resume, max_attempts=max_attempts, submit_only=submit_only,
                            runner=runner)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif submit_only:
        rejected = [r for r in summary["rows"] if r["state"] in ("failed", "cancelled")]
        queued = [r for r in summary["rows"] if r["state"] == "not_run"]
        click.echo(f"batch {batch.id}: queued {len(queued)} row{'s' if len(queued) != 1 else ''}"
                   + (f", {summary['counts']['skipped']} already done" if summary["counts"]["skipped"] else "")
                   + f"; run them with 'facetalk worker --batch {batch.id} --once' (or any worker)")
        for r in rejected:
            click.echo(f"  failed     {r['name']}  {r['where']}: {r['error']}")
        return 2 if rejected else 0
    else:
        click.echo(format_summary(summary))
    if submit_only:
        return 2 if any(r["state"] in ("failed", "cancelled") for r in summary["rows"]) else 0
    return 0 if summary["ok"] else 2


__all__ = ["batch_command"]
