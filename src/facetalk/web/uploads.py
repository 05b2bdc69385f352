"""Files that come in over the web: multipart bodies streamed to disk, files the studio
received, and (with --allow-urls only) files fetched from a URL.

Every upload gets a folder of its own, <home>/uploads/<random id>/, and every file in it a
name the server chooses: the form field plus the extension, checked against what that
field accepts (facetalk.media.formats), e.g. face.png, audio.wav, footage-2.mp4. The name
the client sent is kept for messages only; it is never part of a path, so nothing can
escape the folder or overwrite another file. The size limit is enforced while the bytes
arrive (413), and a file is checked by content before a job is made of it: a .txt renamed
.png, audio that does not decode, a photo with no face give the one-line message the CLI
gives, naming the file as the user named it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import FacetalkError, InputError, NoFaceError
from ..media.formats import ROLE_KINDS, MediaKind, kind_of

CHUNK = 1 << 16
MAX_FIELD_BYTES = 1 << 20  # a text field (a transcript, an option) of a form
MAX_FILES = 16
MAX_FIELDS = 64
FORM_OVERHEAD = 64 * 1024  # headers and boundaries of a form, on top of its files

_ROLE_EXTENSIONS = {
    "image": (".jpg", ".jpeg", ".png", ".webp"),
    "video": (".mp4", ".mov", ".mkv", ".webm"),
    "audio": (".wav", ".mp3", ".m4a", ".flac", ".ogg"),
}
# Roles whose files are not media: the extensions each takes (the upload's kind is the role).
# A face-restoration model (GFPGAN's ONNX is ~330 MB) has the same per-request size limit
# as media (--max-upload-mb, default 500).
_FILE_ROLES = {"lut": (".cube",), "enhancer": (".onnx",)}
_CONTENT_TYPES = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "video/mp4": ".mp4",
    "video/quicktime": ".mov", "video/x-matroska": ".mkv", "video/webm": ".webm", "audio/wav": ".wav",
    "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/ogg": ".ogg",
}  # fmt: skip


class WebError(FacetalkError):
    """An error of a web request; `status` is its HTTP status."""

    status = 422


class NotFound(WebError):
    status = 404


class Conflict(WebError):
    status = 409


class TooLarge(WebError):
    status = 413


@dataclass
class Upload:
    field: str
    path: Path  # on the server, chosen by the server
    filename: str  # as the client named it: for messages only
    size: int
    kind: MediaKind  # or "lut" for a colour grade, "enhancer" for a face-restoration model


@dataclass
class Form:
    """A received form: text fields, and the files written to `folder` (None: no file)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[Upload]] = field(default_factory=dict)
    folder: Path | None = None

    def value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


def uploads_dir(home: Path) -> Path:
    return Path(home) / "uploads"


def new_folder(home: Path) -> Path:
    """A fresh folder <home>/uploads/<random id>/ (only this server writes in it)."""
    root = uploads_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        folder = root / secrets.token_hex(8)
        try:
            folder.mkdir(mode=0o700)
            return folder
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
    raise WebError("could not create an upload folder")  # pragma: no cover


def discard(folder: Path | None) -> None:
    """Remove an upload folder (only ever one under uploads/)."""
    if folder is not None and folder.parent.name == "uploads":
        shutil.rmtree(folder, ignore_errors=True)


def display_name(filename: str | None) -> str:
    """The client's file name, fit to show in a message: last component, printable, short."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip() or "the upload"
    return name if len(name) <= 80 else name[:60] + "..." + name[-17:]


def _names(extensions: tuple[str, ...]) -> str:
    names = [e.lstrip(".") for e in extensions if e != ".jpeg"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_extension(filename: str, role: str) -> tuple[MediaKind, str]:
    """(kind, lower-case extension) of an upload's name for a role ('face', 'audio',
    'footage', 'image', 'lut', 'enhancer'); InputError worded as the CLI words it otherwise."""
    ext = Path(display_name(filename)).suffix.lower()
    if role in _FILE_ROLES:
        if ext not in _FILE_ROLES[role]:
            raise InputError(f"unsupported format '{ext or '(none)'}' for --{role}: use "
                             f"{_names(_FILE_ROLES[role])} ({display_name(filename)})")
        return role, ext  # type: ignore[return-value]
    allowed = ROLE_KINDS[role]
    kind = kind_of("x" + ext) if ext else None
    if kind is None or kind not in allowed:
        exts = tuple(e for k in allowed for e in _ROLE_EXTENSIONS[k])
        raise InputError(f"unsupported format '{ext or '(none)'}' for --{role}: use {_names(exts)} ({display_name(filename)})")
    return kind, ext


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"upload too large: this server takes at most {limit / (1024 * 1024):.0f} MB per request "
                    "(start facetalk serve with a higher --max-upload-mb)")


def _target(folder: Path, field_name: str, ext: str) -> Path:
    """<folder>/<field><ext>, or <field>-2<ext>... when taken: never an existing file."""
    base = re.sub(r"[^a-z0-9_-]", "", field_name.lower())[:20] or "file"
    for n in range(1, 1000):
        p = folder / (f"{base}{ext}" if n == 1 else f"{base}-{n}{ext}")
        if not p.exists():
            return p
    raise WebError("too many files in one upload")


class _Parts:
    """Callbacks of python_multipart's parser, collected as events for the async reader."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self._field, self._value = b"", b""

    def on_part_begin(self) -> None:
        self.events.append(("begin", b""))

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.events.append(("header", self._field.lower() + b"\x00" + self._value))
        self._field, self._value = b"", b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.events.append(("data", data[start:end]))

    def on_part_end(self) -> None:
        self.events.append(("end", b""))


async def receive_body(request, home: Path, file_roles: dict[str, str], limit: int, what: str = "files"
                       ) -> tuple[dict, dict[str, "Upload"], Form | None]:
    """A request's fields, from multipart/form-data (files streamed to an upload folder, as
    receive_form) or a JSON object: (fields, the last value of each; files, the last upload
    of each file field; the form, None for JSON). what: what the multipart form uploads, for
    the error naming the content types. Raises WebError (and receive_form's errors)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await receive_form(request, home, file_roles, limit)
        return {k: v[-1] for k, v in form.fields.items()}, {k: v[-1] for k, v in form.files.items()}, form
    if ctype == "application/json":
        try:
            raw = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise WebError("the body is not valid JSON") from None
        if not isinstance(raw, dict):
            raise WebError("the body must be a JSON object")
        return raw, {}, None
    raise WebError(f"send multipart/form-data (to upload {what}) or application/json")


async def receive_form(request, home: Path, file_roles: dict[str, str], limit: int) -> Form:
    """Read a multipart/form-data body, streaming file parts to a new upload folder.

    file_roles: form field -> the role its files must fit ('face', 'audio', 'footage', 'lut',
    'enhancer').
    Raises TooLarge past `limit` bytes (checked against Content-Length first, then while
    reading), WebError for a malformed form, InputError for a file of the wrong format;
    the upload folder is removed then."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise WebError("expected a multipart/form-data body with a boundary")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise _too_large(limit)
    parts = _Parts()
    callbacks = {name: getattr(parts, name) for name in
                 ("on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_part_data", "on_part_end")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    form = Form()
    total = 0
    state: dict = {}
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + FORM_OVERHEAD:
                raise _too_large(limit)
            try:
                parser.write(chunk)
            except Exception as e:  # noqa: BLE001 - python_multipart's own errors
                raise WebError(f"malformed multipart body: {e}") from None
            for kind, data in parts.events:
                _handle(kind, data, state, form, home, file_roles, limit)
            parts.events.clear()
        parser.finalize()
        for kind, data in parts.events:
            _handle(kind, data, state, form, home, file_roles, limit)
        if state.get("file") is not None or state.get("open"):
            raise WebError("malformed multipart body: it ended inside a part")
    except BaseException:
        if state.get("file") is not None:
            state["file"].close()
        discard(form.folder)
        raise
    return form


def _handle(kind: str, data: bytes, state: dict, form: Form, home: Path, file_roles: dict[str, str], limit: int) -> None:
    if kind == "begin":
        state.clear()
        state.update(open=True, headers={}, file=None, value=bytearray(), started=False)
    elif kind == "header":
        name, _, value = data.partition(b"\x00")
        state["headers"][name.decode("latin-1")] = value
    elif kind == "data":
        if not state.get("started"):
            _start_part(state, form, home, file_roles)
        if state["file"] is not None:
            state["size"] += len(data)
            if state["size"] > limit:
                raise _too_large(limit)
            state["file"].write(data)
        else:
            state["value"] += data
            if len(state["value"]) > MAX_FIELD_BYTES:
                raise WebError(f"form field {state['name']!r} is longer than {MAX_FIELD_BYTES // 1024} kB")
    elif kind == "end":
        if not state.get("started"):
            _start_part(state, form, home, file_roles)
        if state["file"] is not None:
            state["file"].close()
            up: Upload = state["upload"]
            up.size = state["size"]
            if up.size == 0:
                raise InputError(f"{up.filename} is empty (0 bytes): upload the file again")
            form.files.setdefault(up.field, []).append(up)
        else:
            if sum(len(v) for v in form.fields.values()) >= MAX_FIELDS:
                raise WebError(f"too many form fields (at most {MAX_FIELDS})")
            form.fields.setdefault(state["name"], []).append(bytes(state["value"]).decode("utf-8", "replace"))
        state.clear()


def _start_part(state: dict, form: Form, home: Path, file_roles: dict[str, str]) -> None:
    from python_multipart.multipart import parse_options_header

    state["started"] = True
    disposition = state["headers"].get("content-disposition", b"")
    _, params = parse_options_header(disposition)
    name = params.get(b"name", b"").decode("utf-8", "replace")
    if not name:
        raise WebError("malformed multipart body: a part has no name")
    state["name"] = name
    filename = params.get(b"filename")
    if filename is None:
        return
    filename = filename.decode("utf-8", "replace")
    if name not in file_roles:
        raise WebError(f"form field {name!r} does not take a file (files go in: {', '.join(sorted(file_roles)) or 'none'})")
    if sum(len(v) for v in form.files.values()) >= MAX_FILES:
        raise WebError(f"too many files in one request (at most {MAX_FILES})")
    kind, ext = check_extension(filename, file_roles[name])
    if form.folder is None:
        form.folder = new_folder(home)
    path = _target(form.folder, name, ext)
    state["file"] = open(path, "xb")  # noqa: SIM115 - closed at the part's end, or on error
    state["size"] = 0
    state["upload"] = Upload(field=name, path=path, filename=display_name(filename), size=0, kind=kind)


def ingest(src: Path, filename: str, role: str, field_name: str, folder: Path, limit: int) -> Upload:
    """A file the studio received (in gradio's cache) into an upload folder: checked name,
    size limit, a hard link when the file system allows, else a copy."""
    kind, ext = check_extension(filename, role)
    src = Path(src)
    try:
        size = src.stat().st_size
    except OSError:
        raise InputError(f"{display_name(filename)} was not received: upload it again") from None
    if size > limit:
        raise _too_large(limit)
    if size == 0:
        raise InputError(f"{display_name(filename)} is empty (0 bytes): upload the file again")
    path = _target(folder, field_name, ext)
    try:
        os.link(src, path)
    except OSError:
        shutil.copyfile(src, path)
    return Upload(field=field_name, path=path, filename=display_name(filename), size=size, kind=kind)


def server_path(text: str, role: str) -> Path:
    """A path on the server given as text: absolute, and one the system can look up (the
    file's existence and kind are checked by the caller, with the CLI's words)."""
    text = text.strip()
    p = Path(text).expanduser()
    if "\x00" in text or not p.is_absolute():
        raise InputError(f"--{role} {display_name(text)}: give an absolute path on the server, or upload the file")
    try:
        p.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:
        raise InputError(f"--{role} {display_name(text)}: {e.strerror or e}") from None
    return p


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text.strip()))


def fetch(url: str, role: str, field_name: str, folder: Path, limit: int, timeout_s: float = 60.0) -> Upload:
    """Download an http(s) URL into an upload folder (only with --allow-urls): the
    extension from the URL's path, else its Content-Type; the size limit while reading."""
    import httpx

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"cannot fetch {display_name(url)}: only http and https URLs are fetched")
    label = display_name(parts.path) if parts.path.strip("/") else parts.netloc
    try:
        with httpx.stream("GET", url.strip(), follow_redirects=True, timeout=timeout_s, trust_env=False) as r:
            if r.status_code != 200:
                raise InputError(f"cannot fetch {url.strip()}: the server answered {r.status_code}")
            ext = Path(parts.path).suffix.lower()
            if kind_of("x" + ext) is None:
                ext = _CONTENT_TYPES.get(r.headers.get("content-type", "").split(";")[0].strip().lower(), ext)
            kind, ext = check_extension(f"{label}{'' if label.lower().endswith(ext) else ext}", role)
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            path = _target(folder, field_name, ext)
            size = 0
            with open(path, "xb") as f:
                for chunk in r.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise InputError(f"cannot fetch {url.strip()}: {type(e).__name__}: {e}") from None
    if size == 0:
        raise InputError(f"{url.strip()} is empty (0 bytes)")
    return Upload(field=field_name, path=path, filename=label, size=size, kind=kind)


def check_media(path: Path, role: str, display: str, has_face: Callable | None = None) -> MediaKind:
    """Check a file by its content, for a role: a photo decodes (and, with has_face, shows
    a face), a video or audio file opens and has the stream needed. Messages name the file
    as `display` (the name the user knows), never the server's path."""
    from ..media.audio import probe_audio
    from ..media.formats import classify
    from ..media.image import load_image
    from ..media.video import probe_video

    try:
        kind = classify(path, role=role)
        if kind == "image":
            loaded = load_image(path)
            if has_face is not None and not has_face(loaded.rgb):
                raise NoFaceError(f"no face found in {display}; use a photo with one clear, frontal face")
        elif role == "audio":
            probe_audio(path)
        else:
            probe_video(path)
    except FacetalkError as e:
        e.args = (str(e).replace(str(path), display),)
        raise
    return kind


__all__ = ["Conflict", "Form", "NotFound", "TooLarge", "Upload", "WebError", "check_extension", "check_media",
           "discard", "display_name", "fetch", "ingest", "is_url", "new_folder", "receive_form", "uploads_dir"]
