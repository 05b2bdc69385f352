"""Moving an identity version between machines: one zip holding `<name>/v<N>/` and its files.

Import trusts nothing in the zip: its layout is checked before anything is written (no
absolute paths, no `..`, no links, exactly one `<name>/v<N>/` folder holding identity.json
and the data files, a bounded total size), and the files are extracted into a registry
staging folder and checked against their sha256 in identity.json before the version is
installed, through the same rename as a build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path

from ..atomic import replacing
from ..errors import IdentityError, InputError, OutputError
from .model import DATA_FILES, MANIFEST, OPTIONAL_FILES
from .registry import (
    NAME_PATTERN,
    REGISTRY_KEYS,
    VERSION_DIR,
    Registry,
    check_files,
    check_manifest,
    check_name,
    format_ref,
    load_data,
)

MAX_ARCHIVE_BYTES = 16 << 30  # uncompressed total accepted on import, far above a real identity
MAX_MANIFEST_BYTES = 16 << 20
MEMBERS = (MANIFEST, *DATA_FILES)  # every archive holds these
ALLOWED = (*MEMBERS, *OPTIONAL_FILES)  # and, when its version has them, an adapter or model
_CHUNK = 1 << 20


def export_identity(reg: Registry, ref: str, out_zip: Path, force: bool = False) -> Path:
    """Write a verified version to out_zip (deflated), atomically. Returns the path."""
    name, version = reg.resolve(ref)
    reg.verify(format_ref(name, version))  # never hand a broken version to another machine
    out = _check_output(Path(out_zip), force)
    folder = reg.path(name, version)
    try:
        with replacing(out) as tmp:
            with zipfile.ZipFile(tmp, "x", compression=zipfile.ZIP_DEFLATED) as z:
                for member in (*MEMBERS, *(f for f in OPTIONAL_FILES if (folder / f).is_file())):
                    z.write(folder / member, f"{name}/v{version}/{member}")
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            if not force and out.exists():
                raise OutputError(f"{out} already exists: choose another name or pass --force to overwrite it")
    except OSError as e:
        raise OutputError(f"cannot write {out} ({_reason(e)}): free some disk space or choose another folder") from None
    return out


def import_identity(reg: Registry, zip_path: Path, name: str | None = None) -> str:
    """Install the version in zip_path as the next version of name (default: its archived
    name). Returns the new ref; identity.json records the archived one as imported_from."""
    src = Path(zip_path)
    with _open_zip(src) as z:
        arch_name, arch_version, infos = _check_layout(src, z)
        label = f"{src.name} ({format_ref(arch_name, arch_version)})"
        fix = "the archive is damaged or was edited: export it again"
        manifest = _read_manifest(src, z, infos[MANIFEST], label, fix)
        check_manifest(label, manifest, fix, expect=(arch_name, arch_version))
        target = check_name(name) if name is not None else arch_name
        with reg.stage(target) as st:
            for member in (*DATA_FILES, *(f for f in OPTIONAL_FILES if f in infos)):
                _extract(src, z, infos[member], st.path / member)
            check_files(label, st.path, manifest["files"], fix)
            load_data(label, target, arch_version, st.path, manifest, fix)
            st.manifest.update({k: v for k, v in manifest.items() if k not in REGISTRY_KEYS})
            st.manifest["imported_from"] = format_ref(arch_name, arch_version)
    return st.ref


def _check_output(out: Path, force: bool) -> Path:
    if out.suffix.lower() != ".zip":
        raise OutputError(f"output {out} must end in .zip (an identity exports as a zip archive): rename it")
    if not out.absolute().parent.is_dir():
        raise OutputError(f"folder {out.absolute().parent} for the output does not exist: create it or choose another")
    if out.is_dir():
        raise OutputError(f"output {out} is a folder: give a file name ending in .zip")
    if out.exists() and not force:
        raise OutputError(f"{out} already exists: choose another name or pass --force to overwrite it")
    return out


def _open_zip(src: Path) -> zipfile.ZipFile:
    if not src.is_file():
        raise InputError(f"archive {src} not found" if not src.exists() else f"{src} is not a file: give a .zip")
    try:
        return zipfile.ZipFile(src)
    except PermissionError:
        raise InputError(f"{src} is not readable (permission denied): run 'chmod u+r {src}'") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"{src} is not a zip archive ({_reason(e)}): give a file written by "
                         "'facetalk identity export'") from None


def _check_layout(src: Path, z: zipfile.ZipFile) -> tuple[str, int, dict[str, zipfile.ZipInfo]]:
    """(archived name, version, {member file name: info}) of a well-formed archive, else InputError."""
    def bad(problem: str) -> InputError:
        return InputError(f"{src}: {problem}; not an identity archive: give a file written by "
                          "'facetalk identity export'")

    folders: set[tuple[str, str]] = set()
    dirs: list[list[str]] = []
    infos: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in z.infolist():
        raw = info.filename
        parts = raw.rstrip("/").split("/")
        if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw):
            raise bad(f"member {raw!r} has an absolute path")
        if "\\" in raw or any(p in ("", ".", "..") for p in parts):
            raise bad(f"member {raw!r} leaves its folder")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise bad(f"member {raw!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise bad(f"member {raw!r} is encrypted")
        if info.is_dir():
            dirs.append(parts)  # harmless (never created), but must lie on the one version path
            continue
        if kind not in (0, stat.S_IFREG):
            raise bad(f"member {raw!r} is not a regular file")
        if len(parts) != 3 or parts[2] not in ALLOWED:
            raise bad(f"unexpected member {raw!r} (an archive holds only NAME/vN/ with {', '.join(MEMBERS)})")
        folders.add((parts[0], parts[1]))
        if len(folders) > 1:
            raise bad("it holds more than one NAME/vN/ folder")
        if parts[2] in infos:
            raise bad(f"member {raw!r} appears twice")
        infos[parts[2]] = info
        total += info.file_size
    if not folders:
        raise bad("it holds no version folder")
    (arch_name, vdir), = folders
    m = VERSION_DIR.fullmatch(vdir)
    if not NAME_PATTERN.fullmatch(arch_name) or m is None:
        raise bad(f"folder {arch_name + '/' + vdir!r} is not NAME/vN")
    stray = [d for d in dirs if d not in ([arch_name], [arch_name, vdir])]
    if stray:
        raise bad(f"unexpected folder {'/'.join(stray[0]) + '/'!r}")
    missing = [f for f in MEMBERS if f not in infos]
    if missing:
        raise bad(f"it lacks {', '.join(missing)}")
    if total > MAX_ARCHIVE_BYTES:
        raise bad(f"it unpacks to {total} bytes, more than an identity holds ({MAX_ARCHIVE_BYTES})")
    if infos[MANIFEST].file_size > MAX_MANIFEST_BYTES:
        raise bad(f"its {MANIFEST} unpacks to {infos[MANIFEST].file_size} bytes, more than a manifest holds")
    return arch_name, int(m.group(1)), infos


def _read_manifest(src: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, fix: str) -> dict:
    try:
        data = json.loads(_read_member(src, z, info).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IdentityError(f"{label}: {MANIFEST} is not valid JSON ({_reason(e)}); {fix}") from None
    if not isinstance(data, dict):
        raise IdentityError(f"{label}: {MANIFEST} is not a JSON object; {fix}")
    return data


def _read_member(src: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return z.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise InputError(f"{src}: cannot unpack {info.filename!r} ({_reason(e)}): the archive is damaged, "
                         "export it again") from None


def _extract(src: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    # zipfile stops at the declared size (checked above) and checks the CRC at the end.
    try:
        with z.open(info) as fin, dest.open("xb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise InputError(f"{src}: cannot unpack {info.filename!r} ({_reason(e)}): the archive is damaged, "
                         "export it again") from None
    except OSError as e:
        raise IdentityError(f"cannot unpack {src} into {dest.parent} ({_reason(e)}): free some disk space") from None


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())[:200]
