"""Where jobs put what they make, the sidecar beside each video, and `outputs zip`.

    <home>/outputs/<YYYY-MM-DD>/<job-id>-<name>.mp4    the video (date of submission)
    <home>/outputs/<YYYY-MM-DD>/<job-id>-<name>.json   its sidecar: the request, the result
                                                       and metrics, the versions

A job with an explicit output path writes there instead, the sidecar beside it. Every
file appears under its final name only when complete: the video through the VideoWriter's
hidden temporary file, the sidecar (written after the video) through its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import zipfile
from pathlib import Path

from ..atomic import replacing
from ..errors import FacetalkError, OutputError
from ..media.formats import error_reason

SIDECAR_KIND = "facetalk-render"
_SIDECAR_PEEK = 1 << 20  # a file bigger than this beside a video is not our sidecar


def outputs_dir(home: Path) -> Path:
    return Path(home) / "outputs"


def default_output(home: Path, job) -> Path:
    """outputs/<date the job was submitted>/<id>-<name>.mp4 (the same for every attempt)."""
    day = time.strftime("%Y-%m-%d", time.localtime(job.created))
    return outputs_dir(home) / day / f"{job.id}-{job.name}.mp4"


def output_path(home: Path, job) -> Path:
    """The video a job writes: its request's output when set, else the default."""
    out = job.request.get("output")
    return Path(out) if out else default_output(home, job)


def sidecar_path(video: Path) -> Path:
    return Path(video).with_suffix(".json")


def clean_partials(video: Path) -> list[Path]:
    """Remove hidden temporary files an interrupted write of `video` (and of its sidecar)
    left in its folder; the files removed."""
    video = Path(video)
    folder = video.parent
    if not folder.is_dir():
        return []
    stem, name = re.escape(video.stem), re.escape(video.name)
    side = re.escape(sidecar_path(video).name)
    pattern = re.compile(rf"\.(?:{stem}\.[0-9a-f]+\.part\.mp4|{name}\.[0-9a-f]+\.check|{side}\.[0-9a-f]+\.part)")
    removed = []
    for p in folder.iterdir():
        if p.name.startswith(".") and pattern.fullmatch(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def is_our_sidecar(path: Path) -> bool:
    """True when `path` is a sidecar facetalk wrote (so it may be replaced)."""
    try:
        if path.stat().st_size > _SIDECAR_PEEK:
            return False
        return json.loads(path.read_text(encoding="utf-8")).get("kind") == SIDECAR_KIND
    except (OSError, ValueError, AttributeError):
        return False


def write_sidecar(video: Path, data: dict) -> Path | None:
    """Write the sidecar of `video` atomically (temporary name, then rename); None when a
    file of that name exists that facetalk did not write (it is left alone).
    Raises OutputError when it cannot be written."""
    path = sidecar_path(video)
    if path.exists() and not is_our_sidecar(path):
        return None
    try:
        with replacing(path) as tmp, open(tmp, "x", encoding="utf-8") as f:
            json.dump({"kind": SIDECAR_KIND, **data}, f, indent=2, default=str)
            f.write("\n")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {error_reason(e)} (choose another output folder)") from None
    return path


def parse_day(text: str, option: str) -> dt.date:
    """'2026-11-01', 'today', or a duration back from today ('7d', '2w')."""
    text = (text or "").strip()
    if text == "today":
        return dt.date.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    m = re.fullmatch(r"(\d+)([dw])", text)
    if m:
        return dt.date.today() - dt.timedelta(days=int(m.group(1)) * (7 if m.group(2) == "w" else 1))
    raise FacetalkError(f"{option} {text!r} is not a date (2026-11-01), 'today', or a number of days back (7d)")


def output_files(home: Path, since: dt.date, until: dt.date | None = None) -> list[Path]:
    """Videos and sidecars under outputs/ in the day folders from `since` to `until`
    (inclusive), in name order; hidden (unfinished) files are left out."""
    root = outputs_dir(home)
    if not root.is_dir():
        return []
    files = []
    for day_dir in sorted(root.iterdir()):
        try:
            day = dt.date.fromisoformat(day_dir.name)
        except ValueError:
            continue
        if not day_dir.is_dir() or day < since or (until is not None and day > until):
            continue
        files += [p for p in sorted(day_dir.iterdir())
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in (".mp4", ".json")]
    return files


def zip_outputs(home: Path, since: dt.date, until: dt.date | None, output: Path, force: bool = False) -> tuple[Path, int]:
    """Pack the outputs of those days into `output` (a zip, written under a temporary name
    and renamed when complete); (path, number of files). Refuses to replace a file unless
    force."""
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise OutputError(f"{output} must end in .zip")
    if output.exists() and not force:
        raise OutputError(f"{output} exists: choose another name or add --force to replace it")
    if not output.absolute().parent.is_dir():
        raise OutputError(f"folder {output.absolute().parent} does not exist: create it or choose another")
    files = output_files(home, since, until)
    if not files:
        span = f"from {since}" + (f" to {until}" if until else " on")
        raise FacetalkError(f"no outputs {span} in {outputs_dir(home)}")
    root = outputs_dir(home)
    try:
        with replacing(output) as tmp, zipfile.ZipFile(tmp, "x", allowZip64=True) as z:
            for p in files:
                method = zipfile.ZIP_STORED if p.suffix.lower() == ".mp4" else zipfile.ZIP_DEFLATED  # H.264 does not shrink
                z.write(p, p.relative_to(root).as_posix(), compress_type=method)
    except OSError as e:
        raise OutputError(f"cannot write {output}: {error_reason(e)}") from None
    return output, len(files)
