"""Which files facetalk reads, and how a path is classified before anything decodes it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import InputError

if TYPE_CHECKING:
    import av.container

MediaKind = Literal["image", "video", "audio"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".webm")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".mp3", ".m4a", ".flac", ".ogg")

# What each command-line role accepts; a video's soundtrack can drive speech too.
ROLE_KINDS: dict[str, tuple[MediaKind, ...]] = {
    "face": ("image", "video"),
    "audio": ("audio", "video"),
    "image": ("image",),
    "video": ("video",),
    "footage": ("video",),  # what an identity learns from
}

_KIND_EXTENSIONS: dict[MediaKind, tuple[str, ...]] = {
    "image": IMAGE_EXTENSIONS,
    "video": VIDEO_EXTENSIONS,
    "audio": AUDIO_EXTENSIONS,
}


def _names(extensions: tuple[str, ...]) -> str:
    """'.jpg', '.png' -> 'jpg, png' with 'or' before the last ('jpeg' folded into 'jpg')."""
    names = [e.lstrip(".") for e in extensions if e != ".jpeg"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def kind_of(path: str | Path) -> MediaKind | None:
    """The media kind its extension says (case-insensitive), or None when unsupported."""
    ext = Path(path).suffix.lower()
    for kind, exts in _KIND_EXTENSIONS.items():
        if ext in exts:
            return kind
    return None


def classify(path: str | Path, role: str = "face", option: str | None = None) -> MediaKind:
    """Check that `path` exists and is a kind `role` accepts; return that kind.

    role: "face" (image or video), "audio" (audio or video), "image" or "video"; a
    leading "--" (the option's name) is accepted. option: the option the message names
    when it is not --role (swap's --source takes an image). Raises InputError naming the
    file when it is missing, a folder, or unsupported.
    """
    role = role.lstrip("-")
    allowed = ROLE_KINDS[role]
    name = option or f"--{role}"
    p = Path(path)
    try:
        exists = p.exists()
    except OSError as e:  # a name longer than the file system allows, a bad byte in it
        raise InputError(f"{name} path cannot be used: {error_reason(e)} ({str(p)[:60]}...)") from None
    if not exists:
        raise InputError(f"{name} file {p} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"{name} {p} is not a file: give a file, not a folder")
    kind = kind_of(p)
    if kind is None or kind not in allowed:
        exts = tuple(e for k in allowed for e in _KIND_EXTENSIONS[k])
        shown = p.suffix.lower() or "(none)"
        raise InputError(f"unsupported format '{shown}' for {name}: use {_names(exts)} ({p})")
    return kind


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return `path` as a Path if it is an existing regular file, else raise InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {p} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"{what} {p} is not a file: give a file, not a folder")
    return p


def open_media(path: str | Path, what: str) -> av.container.InputContainer:
    """Open `path` for demuxing with PyAV; any failure becomes an InputError naming the file.

    `what` says what the file was meant to be ("video", "audio") for the message.
    """
    import av  # deferred: PyAV loads FFmpeg's libraries, which commands like --help never need

    p = require_file(path, f"{what} file")
    try:
        return av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(
            f"cannot read {what} {p}: {error_reason(e)} (is it truncated or not {'an' if what[:1] in 'aeiou' else 'a'} {what} file?)"
        ) from e


def error_reason(e: BaseException) -> str:
    """A short, one-line reason from a PyAV/OS error."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())
