"""`facetalk identity ...`: click commands over the registry, registered by facetalk.cli."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import FacetalkError, IdentityError, InputError
from ..progress import table
from .registry import LATEST, Registry, check_name, format_ref, parse_ref


@click.group("identity")
@click.option("--home", type=click.Path(file_okay=False), default=None,
              help="Facetalk home holding identities/ [default: $FACETALK_HOME, else the user data folder].")
@click.pass_context
def identity_group(click_ctx: click.Context, home: str | None) -> None:
    """Personal identities: learn a person from footage, keep versions, move them between machines.

    An identity is referred to as NAME (its latest version), NAME@v2 or NAME@2.
    """
    from ..home import facetalk_home

    click_ctx.obj = {**(click_ctx.obj or {}), "registry": Registry(Path(home) if home else facetalk_home())}


def _registry(obj: dict) -> Registry:
    return obj["registry"]


@identity_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_command(obj: dict, as_json: bool) -> None:
    """List identities: the latest version, every version, when it was made."""
    reg = _registry(obj)
    rows = [_list_row(reg, name) for name in reg.names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no identities in {reg.root} (make one with 'facetalk identity create NAME --footage VIDEO')")
    else:
        click.echo(table(["NAME", "LATEST", "VERSIONS", "CREATED", "FRAMES"], [
            [r["name"], f"v{r['latest']}" if r["latest"] else "-", " ".join(f"v{v}" for v in r["versions"]),
             r["created"] or "?", "?" if r["frames_used"] is None else str(r["frames_used"])] for r in rows]))


def _list_row(reg: Registry, name: str) -> dict:
    """What list shows of one identity; a broken latest shows as unknowns (verify says why)."""
    versions = reg.versions(name)
    try:
        latest = reg.latest(name)
    except IdentityError:
        latest = None
    latest = latest if latest in versions else None
    manifest: dict = {}
    if latest is not None:
        try:
            manifest = reg.manifest(format_ref(name, latest))
        except IdentityError:
            pass
    return {"name": name, "latest": latest, "versions": versions, "created": manifest.get("created"),
            "frames_used": _frames_used(manifest.get("frames")), "path": str(reg.root / name)}


@identity_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_obj
def show_command(obj: dict, ref: str, as_json: bool) -> None:
    """Show what a version holds: source footage, frames, consent, files."""
    reg = _registry(obj)
    name, version = reg.resolve(ref)
    label = format_ref(name, version)
    manifest = reg.manifest(label)
    is_latest = _is_latest(reg, name, version)
    path = reg.path(name, version)
    if as_json:
        click.echo(json.dumps({"ref": label, "path": str(path), "latest": is_latest, "manifest": manifest}, indent=2))
        return
    click.echo(f"{label}{' (latest)' if is_latest else ''}")
    for key, value in _summary_lines(manifest, path):
        click.echo(f"  {key:<9} {value}")


def _summary_lines(m: dict, path: Path) -> list[tuple[str, str]]:
    lines = [("path", str(path)),
             ("created", f"{m['created']} by facetalk {m['facetalk']} (schema {m['schema']})"),
             ("consent", json.dumps(m["consent"], ensure_ascii=False) if m["consent"] else "none recorded")]
    footage = m["footage"] if isinstance(m["footage"], list) else []
    for i, f in enumerate(footage):
        f = f if isinstance(f, dict) else {}
        text = f"{f.get('file', '?')} ({_size(f.get('size'))}, sha256 {str(f.get('sha256', '?'))[:12]})"
        lines.append(("footage" if i == 0 else "", text))
    lines.append(("frames", _frames_text(m["frames"])))
    shapes = m["shapes"] if isinstance(m["shapes"], dict) else {}
    lines.append(("shapes", f"{len(shapes)} mouth shapes ({' '.join(shapes)})"))
    if isinstance(m["settings"], dict) and m["settings"]:
        lines.append(("settings", _settings_text(m["settings"])))
    files = m["files"] if isinstance(m["files"], dict) else {}
    lines.append(("files", ", ".join(f"{k} {_size(v.get('size') if isinstance(v, dict) else None)}"
                                     for k, v in files.items())))
    from .lipfit import lips_summary

    lines.append(("lips", lips_summary(m)))
    if "imported_from" in m:
        lines.append(("imported", f"from {m['imported_from']}"))
    return lines


@identity_group.command("verify")
@click.argument("ref")
@click.option("--lip-model", type=click.Path(file_okay=False, exists=True), default=None,
              help="Check the lip head against this lip model folder [default: the one shipped with facetalk].")
@click.pass_obj
def verify_command(obj: dict, ref: str, lip_model: str | None) -> None:
    """Check that every file of a version is present, unchanged and loads (and that its lip
    head fits the lip model renders use)."""
    reg = _registry(obj)
    name, version = reg.resolve(ref)
    label = format_ref(name, version)
    identity = reg.load(label)
    lips = ""
    if identity.lips is not None:
        from ..lips.adapt import identity_lips
        from ..lips.model import lip_model as load_lip_model

        identity_lips(load_lip_model(lip_model), identity)
        lips = ", own lip head"
    files = identity.manifest["files"]
    click.echo(f"{label}: ok ({len(files)} files, {_size(sum(f['size'] for f in files.values()))}{lips})")


@identity_group.command("promote")
@click.argument("ref")
@click.pass_obj
def promote_command(obj: dict, ref: str) -> None:
    """Make NAME@vN the version a bare NAME means."""
    reg = _registry(obj)
    reg.promote(ref)
    name, version = reg.resolve(ref)
    click.echo(f"{name}: {LATEST} is now v{version}")


@identity_group.command("remove")
@click.argument("ref")
@click.option("--all", "remove_all", is_flag=True, help="With a bare NAME: remove every version.")
@click.pass_obj
def remove_command(obj: dict, ref: str, remove_all: bool) -> None:
    """Remove NAME@vN (not the latest while others exist), or NAME --all."""
    reg = _registry(obj)
    name, version = parse_ref(ref)
    if remove_all:
        if version is not None:
            raise IdentityError(f"--all removes every version: give the bare name ('facetalk identity remove "
                                f"{name} --all'), or drop --all to remove {name}@v{version} only")
        n = len(reg.versions(name))
        reg.remove_all(name)
        click.echo(f"removed {name} ({n} version{'s' if n != 1 else ''})")
        return
    reg.remove(ref)
    click.echo(f"removed {format_ref(name, version)}")


@identity_group.command("export")
@click.argument("ref")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .zip to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def export_command(obj: dict, ref: str, output: str, force: bool) -> None:
    """Write a version to a zip, to import on another machine."""
    from .archive import export_identity

    reg = _registry(obj)
    name, version = reg.resolve(ref)
    out = export_identity(reg, format_ref(name, version), Path(output), force=force)
    click.echo(f"wrote {out} ({format_ref(name, version)}, {_size(out.stat().st_size)})")


@identity_group.command("import")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Install under this name [default: the archived name].")
@click.option("--promote", is_flag=True, help="Make the imported version the latest.")
@click.pass_obj
def import_command(obj: dict, archive: str, name: str | None, promote: bool) -> None:
    """Install a version from a zip written by 'facetalk identity export'."""
    from .archive import import_identity

    reg = _registry(obj)
    ref = import_identity(reg, Path(archive), name=name)
    if promote:
        reg.promote(ref)
    origin = reg.manifest(ref).get("imported_from")
    click.echo(f"imported {ref} from {archive} (archived as {origin})")


@identity_group.command("create")
@click.argument("name")
@click.option("--footage", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A video of the person talking (repeatable).")
@click.option("--transcript", "transcripts", multiple=True, type=click.Path(dir_okay=False),
              help="Text of the words spoken in each --footage, in the same order (repeatable).")
@click.option("--consent", default=None, help="Who consented to this identity, and for what (kept in identity.json).")
@click.option("--allow-mixed", is_flag=True, help="Accept footage in which more than one person appears to speak.")
@click.option("--promote", is_flag=True, help="Make the new version the latest.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors.")
@click.option("--json-progress", is_flag=True, help="One JSON event per line on stderr.")
@click.pass_obj
def create_command(obj: dict, name: str, footage: tuple[str, ...], transcripts: tuple[str, ...], consent: str | None,
                   allow_mixed: bool, promote: bool, quiet_flag: bool, json_progress: bool) -> None:
    """Learn NAME from footage of the person: a new version of NAME."""
    from ..cli import _context, _finish
    from ..progress import JsonProgress
    from ..speech.text import read_transcript

    check_name(name)
    if transcripts and len(transcripts) != len(footage):
        raise FacetalkError(f"--transcript given {len(transcripts)} times for {len(footage)} --footage: give one "
                            "per footage, in the same order, or none")
    for f in footage:
        if not Path(f).is_file():
            raise InputError(f"footage {f} not found" if not Path(f).exists() else f"footage {f} is not a file")
    texts = [read_transcript(t) for t in transcripts] if transcripts else [None] * len(footage)

    from .learn import create_identity  # the heavy part, loaded only when building

    reg = _registry(obj)
    ctx, sink = _context(0, quiet_flag, json_progress)
    try:
        result = create_identity(reg, name, footage=list(footage), transcripts=texts, consent=consent,
                                 allow_mixed=allow_mixed, ctx=ctx)
        ctx.warnings.extend(w for w in result.warnings if w not in ctx.warnings)
    finally:
        _finish(sink, ctx, quiet_flag)
    if promote:
        reg.promote(result.ref)
    new_name, new_version = parse_ref(result.ref)
    is_latest = _is_latest(reg, new_name, new_version)
    if isinstance(sink, JsonProgress):
        sink.emit("result", ref=result.ref, latest=is_latest, frames_used=int(result.frames_used),
                  frames_skipped={k: int(v) for k, v in result.frames_skipped.items()},
                  seconds=round(float(result.seconds), 3))
    elif not quiet_flag:
        skipped = sum(result.frames_skipped.values())
        why = ", ".join(f"{k} {v}" for k, v in result.frames_skipped.items() if v)
        click.echo(f"created {result.ref}{' (latest)' if is_latest else ''}: {result.frames_used} frames used, "
                   f"{skipped} skipped{f' ({why})' if why else ''}, in {result.seconds:.1f} s")
        if getattr(result, "lips", ""):
            click.echo(f"lips: {result.lips}")


@identity_group.command("train-lips")
@click.argument("ref")
@click.option("--footage", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Footage the identity was learnt from (repeatable; checked against identity.json).")
@click.option("--lip-model", type=click.Path(file_okay=False, exists=True), default=None,
              help="Fit on this lip model folder [default: the one shipped with facetalk].")
@click.option("--promote", is_flag=True, help="Make the new version the latest.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors.")
@click.option("--json-progress", is_flag=True, help="One JSON event per line on stderr.")
@click.pass_obj
def train_lips_command(obj: dict, ref: str, footage: tuple[str, ...], lip_model: str | None, promote: bool,
                       quiet_flag: bool, json_progress: bool) -> None:
    """Fit NAME's own lip head (how this person moves their mouth to their sound) on the
    footage it was learnt from: a new version of NAME."""
    from ..cli import _context, _finish
    from ..lips.model import lip_model as load_lip_model
    from ..progress import JsonProgress
    from .lipfit import train_lips

    for f in footage:
        if not Path(f).is_file():
            raise InputError(f"footage {f} not found" if not Path(f).exists() else f"footage {f} is not a file")
    reg = _registry(obj)
    model = load_lip_model(lip_model)
    ctx, sink = _context(0, quiet_flag, json_progress)
    try:
        result = train_lips(reg, ref, list(footage), lip_model=model, promote=promote, ctx=ctx)
    finally:
        _finish(sink, ctx, quiet_flag)
    if isinstance(sink, JsonProgress):
        sink.emit("result", ref=result.ref, source=result.source, head=result.head, reason=result.reason,
                  frames=result.frames, seconds=round(result.seconds, 3), latest=result.promoted)
    elif not quiet_flag:
        latest = " (latest)" if result.promoted else f" (not the latest: 'facetalk identity promote {result.ref}')"
        click.echo(f"created {result.ref}{latest} from {result.source} in {result.seconds:.1f} s; lips: {result.reason}")


def _is_latest(reg: Registry, name: str, version: int) -> bool:
    try:
        return reg.latest(name) == version
    except IdentityError:
        return False


def _frames_used(frames: object) -> int | None:
    if isinstance(frames, dict) and isinstance(frames.get("used"), int):
        return frames["used"]
    return None


def _frames_text(frames: object) -> str:
    if not isinstance(frames, dict):
        return json.dumps(frames)
    used = frames.get("used", "?")
    text = f"{used} of {frames['total']} used" if "total" in frames else f"{used} used"
    skipped = frames.get("skipped")
    if isinstance(skipped, dict):
        why = ", ".join(f"{k} {v}" for k, v in skipped.items() if v)
        text += f", {sum(v for v in skipped.values() if isinstance(v, int))} skipped" + (f" ({why})" if why else "")
    if isinstance(frames.get("bank"), int):
        text += f", {frames['bank']} mouth images kept"
    return text


def _settings_text(settings: dict) -> str:
    """Scalar settings as key=value; nested ones only named (show --json has them)."""
    flat = [f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in sorted(settings.items())
            if not isinstance(v, (dict, list))]
    nested = [k for k, v in sorted(settings.items()) if isinstance(v, (dict, list))]
    return " ".join(flat) + (f" (and {', '.join(nested)}: see --json)" if nested else "")


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


