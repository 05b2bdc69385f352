"""Every version of every identity, on disk under the facetalk home.

    identities/<name>/v<N>/   identity.json + the data files (identity.model)
    identities/<name>/latest  "v<N>": the version a bare name means (moved by promote)

A version only ever appears complete: it is built in a hidden staging folder beside the
versions and renamed to v<N> once its data files and manifest (with the sha256 of every
data file) are written and synced. Hidden entries (the staging folder of a crashed build,
the trash of an interrupted removal) are never listed, and a later build cleans them.

Refs: `name` (the latest version), `name@v2` or `name@2`. Names are lower-case
[a-z0-9][a-z0-9._-]{0,63}, so a name is always a plain folder name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import IdentityError
from .model import (
    ADAPTER_FILES,
    ADAPTER_KEY,
    BANK_FILE,
    CLIP_FILE,
    DATA_FILES,
    FACE_FILE,
    LIPS_HEAD_FILE,
    LIPS_KEY,
    MANIFEST,
    MANIFEST_KEYS,
    MODEL_FILES,
    OPTIONAL_FILES,
    REFERENCE_FILE,
    SCHEMA_VERSION,
    Identity,
    shapes_from_json,
)

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
VERSION_DIR = re.compile(r"v([1-9][0-9]{0,8})")
LATEST = "latest"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
LATEST_TEMP_PREFIX = f".{LATEST}."
STALE_SECONDS = 24 * 3600  # a staging folder untouched this long belongs to a dead build
# Manifest keys the registry fills; the builder fills the others (MANIFEST_KEYS).
REGISTRY_KEYS = ("schema", "name", "version", "facetalk", "created", "files")
BUILDER_KEYS = tuple(k for k in MANIFEST_KEYS if k not in REGISTRY_KEYS)
EMBEDDING_DIM = 128


def check_name(name: str) -> str:
    """Return name if it is a valid identity name, else raise IdentityError."""
    if NAME_PATTERN.fullmatch(name):
        return name
    hint = f" (try {name.lower()!r})" if NAME_PATTERN.fullmatch(name.lower()) else ""
    raise IdentityError(f"bad identity name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
                        f"starting with a letter or digit{hint}")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' -> (name, None); 'name@v2' or 'name@2' -> (name, 2). Raises IdentityError."""
    name, at, tail = ref.partition("@")
    check_name(name)
    if not at:
        return name, None
    m = re.fullmatch(r"v?([0-9]{1,9})", tail)
    if m is None or int(m.group(1)) < 1:
        raise IdentityError(f"bad version {tail!r} in {ref!r}: write NAME@vN with N >= 1, e.g. {name}@v1")
    return name, int(m.group(1))


def format_ref(name: str, version: int) -> str:
    return f"{name}@v{version}"


def rebuild_hint(name: str) -> str:
    """The fix ending every message about a broken version of name."""
    return f"restore it from a backup or an export, or rebuild with 'facetalk identity create {name}'"


@dataclass
class Stage:
    """A version being built: the builder writes DATA_FILES into `path` and fills `manifest`
    (BUILDER_KEYS, plus any extra keys it wants kept); `version` is set once it is saved."""

    name: str
    path: Path
    manifest: dict = field(default_factory=dict)
    version: int | None = None

    @property
    def ref(self) -> str | None:
        return None if self.version is None else format_ref(self.name, self.version)


class Registry:
    """The identities under one facetalk home (root = home/identities). Holds no state but
    the path, so any number of registries (and processes) can share a home."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.root = self.home / "identities"

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names with at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if NAME_PATTERN.fullmatch(p.name) and p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        """Version numbers of name, ascending (staging and trash folders are not versions)."""
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := VERSION_DIR.fullmatch(p.name)) and p.is_dir())

    def latest(self, name: str) -> int | None:
        """The version `latest` names (existing or not), None when there is no `latest` file."""
        path = self.root / check_name(name) / LATEST
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise IdentityError(f"{name}: cannot read {path} ({_reason(e)}); "
                                f"reset it with 'facetalk identity promote {name}@vN'") from None
        m = VERSION_DIR.fullmatch(text)
        if m is None:
            raise IdentityError(f"{name}: {path} holds {text[:20]!r}, not a version such as v1; "
                                f"reset it with 'facetalk identity promote {name}@vN'")
        return int(m.group(1))

    def path(self, name: str, version: int) -> Path:
        return self.root / check_name(name) / f"v{int(version)}"

    def resolve(self, ref: str) -> tuple[str, int]:
        """(name, version) of an existing version; a bare name means the one `latest` names."""
        name, version = parse_ref(ref)
        versions = self.versions(name)
        if not versions:
            known = self.names()
            where = f"known: {', '.join(known)}" if known else \
                f"there are none in {self.root}: create one with 'facetalk identity create {name} --footage VIDEO'"
            raise IdentityError(f"unknown identity {name!r}; {where}")
        if version is not None:
            if version not in versions:
                raise IdentityError(f"{name} has no version v{version}; its versions: {_vlist(versions)}")
            return name, version
        latest = self.latest(name)
        promote = f"'facetalk identity promote {name}@v{versions[-1]}'"
        if latest is None:
            raise IdentityError(f"{name}: {self.root / name / LATEST} is missing, so no version is the latest; "
                                f"choose one with {promote} (versions: {_vlist(versions)})")
        if latest not in versions:
            raise IdentityError(f"{name}: latest names v{latest}, which does not exist; choose another with "
                                f"{promote} (versions: {_vlist(versions)})")
        return name, latest

    def manifest(self, ref: str) -> dict:
        """identity.json of a version, checked for form (keys, schema) but not its files."""
        name, version = self.resolve(ref)
        label, folder = format_ref(name, version), self.path(name, version)
        manifest = read_manifest(label, folder, rebuild_hint(name))
        check_manifest(label, manifest, rebuild_hint(name), expect=(name, version))
        return manifest

    def verify(self, ref: str) -> None:
        """Raise IdentityError (one line: the file at fault and the fix) on the first problem."""
        self.load(ref)

    def load(self, ref: str) -> Identity:
        """Verify a version (every file present, unchanged and loadable) and load it."""
        name, version = self.resolve(ref)
        label, folder, fix = format_ref(name, version), self.path(name, version), rebuild_hint(name)
        manifest = read_manifest(label, folder, fix)
        check_manifest(label, manifest, fix, expect=(name, version))
        check_files(label, folder, manifest["files"], fix)
        identity = load_data(label, name, version, folder, manifest, fix)
        check_adapters(label, folder, manifest, fix, home=self.home)
        return identity

    # -- building ------------------------------------------------------------------------

    @contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        """Build the next version of name in a hidden folder; see the module docstring.

        On normal exit the registry completes the manifest, writes identity.json, syncs and
        renames the folder to v<N> (N = highest + 1, the next free one if a concurrent build
        took it); the first version also becomes `latest`. On an exception the staging
        folder is removed and nothing else changes.
        """
        folder = self.root / check_name(name)
        staging = self._make_staging(folder)
        st = Stage(name, staging)
        try:
            yield st
            self._commit(st)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            _rmdir_quietly(folder)
            _rmdir_quietly(self.root)
            raise

    def _make_staging(self, folder: Path) -> Path:
        for _ in range(3):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._clean_leftovers(folder)
                return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
            except FileNotFoundError:
                continue  # a concurrent failed build removed the empty folder: make it again
            except OSError as e:
                raise IdentityError(f"cannot write to {folder} ({_reason(e)}); "
                                    "set FACETALK_HOME (or --home) to a writable folder") from None
        raise IdentityError(f"cannot create a staging folder in {folder}; try again")

    def _clean_leftovers(self, folder: Path) -> None:
        """Remove trash of interrupted removals, and staging folders and `latest` temporary
        files of builds and promotions dead for a day."""
        now = time.time()
        for parent in (self.root, folder):
            for p in parent.iterdir():
                stale = now - _mtime(p) > STALE_SECONDS
                if p.name.startswith(TRASH_PREFIX) or (p.name.startswith(STAGING_PREFIX) and stale):
                    shutil.rmtree(p, ignore_errors=True)
                elif p.name.startswith(LATEST_TEMP_PREFIX) and stale:
                    p.unlink(missing_ok=True)

    def _commit(self, st: Stage) -> None:
        files = _hash_stage(st)
        manifest = _complete_manifest(st, files)
        folder = st.path.parent
        version = max(self.versions(st.name), default=0) + 1
        for _ in range(1000):
            manifest["version"] = version
            _write_synced(st.path / MANIFEST, _to_json(manifest))
            _fsync_dir(st.path)
            try:
                os.rename(st.path, folder / f"v{version}")
                break
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise IdentityError(f"cannot save {st.name}: renaming {st.path} failed ({_reason(e)})") from None
                version += 1  # a concurrent build took this number
        else:
            raise IdentityError(f"cannot save {st.name}: no free version number in {folder}")
        _fsync_dir(folder)
        st.version = version
        self._set_latest_if_absent(st.name, version)

    # -- changing ------------------------------------------------------------------------

    def promote(self, ref: str) -> None:
        """Make a version (verified first: never a broken default) the one `latest` names."""
        name, version = parse_ref(ref)
        if version is None:
            raise IdentityError(f"promote needs a version: 'facetalk identity promote {name}@vN' "
                                f"(versions: {_vlist(self.versions(name)) or 'none'})")
        name, version = self.resolve(ref)
        self.verify(format_ref(name, version))
        self._write_latest(name, version)

    def remove(self, ref: str) -> None:
        """Remove one version; the last one takes the identity with it. The latest one is
        kept while others exist, so a bare name never points nowhere."""
        name, version = parse_ref(ref)
        if version is None:
            raise IdentityError(f"remove needs a version ('facetalk identity remove {name}@vN'), "
                                f"or --all to remove every version of {name}")
        name, version = self.resolve(ref)
        others = [v for v in self.versions(name) if v != version]
        if not others:
            self.remove_all(name)
            return
        if self._latest_or_none(name) == version:
            raise IdentityError(f"{format_ref(name, version)} is the latest version of {name}: promote another "
                                f"version first ('facetalk identity promote {name}@v{others[-1]}'), "
                                f"or remove them all with 'facetalk identity remove {name} --all'")
        _discard(self.path(name, version))

    def remove_all(self, name: str) -> None:
        """Remove an identity with every version."""
        folder = self.root / check_name(name)
        if not folder.is_dir():
            self.resolve(name)  # raises the unknown-identity message, listing the known ones
        _discard(folder)

    def _latest_or_none(self, name: str) -> int | None:
        try:
            return self.latest(name)
        except IdentityError:
            return None

    def _write_latest(self, name: str, version: int) -> None:
        folder = self.root / name
        tmp = _write_temp(folder, f"v{version}\n")
        try:
            os.replace(tmp, folder / LATEST)
        except OSError as e:
            raise IdentityError(f"cannot write {folder / LATEST} ({_reason(e)})") from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)

    def _set_latest_if_absent(self, name: str, version: int) -> None:
        folder = self.root / name
        tmp = _write_temp(folder, f"v{version}\n")
        try:
            os.link(tmp, folder / LATEST)  # create-only: a concurrent first build may have set it
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not (folder / LATEST).exists():
                os.replace(tmp, folder / LATEST)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)


# -- checks, shared with archive import (which runs them on a staging folder) -------------


def read_manifest(label: str, folder: Path, fix: str) -> dict:
    """identity.json of folder as a dict; IdentityError when missing, unreadable or not JSON."""
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IdentityError(f"{label}: {MANIFEST} is missing from {folder}, so the version is incomplete; "
                            f"{fix}") from None
    except PermissionError:
        raise IdentityError(f"{label}: {MANIFEST} is not readable (permission denied): "
                            f"run 'chmod u+r {path}'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise IdentityError(f"{label}: cannot read {MANIFEST} ({_reason(e)}); {fix}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise IdentityError(f"{label}: {MANIFEST} is not valid JSON (line {e.lineno}: {e.msg}); {fix}") from None
    if not isinstance(data, dict):
        raise IdentityError(f"{label}: {MANIFEST} is not a JSON object; {fix}")
    return data


def check_manifest(label: str, manifest: dict, fix: str, expect: tuple[str, int] | None = None) -> None:
    """Schema first (another schema may have other keys), then the keys, then that the
    manifest belongs to the folder it is in (expect = (name, version))."""
    schema = manifest.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise IdentityError(f"{label}: {MANIFEST} has no valid schema number; {fix}")
    by = _short(manifest.get("facetalk", "unknown"))
    recreate = f"recreate it with this facetalk ('facetalk identity create {_short(manifest.get('name', 'NAME'))}')"
    if schema > SCHEMA_VERSION:
        raise IdentityError(f"{label}: {MANIFEST} has schema {schema}, newer than the schema {SCHEMA_VERSION} "
                            f"this facetalk {__version__} reads; it was written by facetalk {by}: upgrade to "
                            f"that version or later, or {recreate}")
    if schema < SCHEMA_VERSION:
        raise IdentityError(f"{label}: {MANIFEST} has schema {schema}, older than the schema {SCHEMA_VERSION} "
                            f"this facetalk {__version__} reads; it was written by facetalk {by}: use that "
                            f"version, or {recreate}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise IdentityError(f"{label}: {MANIFEST} lacks {', '.join(missing)}; {fix}")
    if expect is not None and (manifest["name"], manifest["version"]) != expect:
        claims = f"{_short(manifest['name'])}@v{_short(manifest['version'])}"
        raise IdentityError(f"{label}: {MANIFEST} says this folder holds {claims}, so it was moved or renamed; "
                            f"move it back, or export that version and import it under the new name")


def check_files(label: str, folder: Path, files: object, fix: str) -> None:
    """Every data file listed, present, readable, and with the listed size and sha256."""
    entries_ok = isinstance(files, dict) and all(
        isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
        for e in files.values())
    if not entries_ok:
        raise IdentityError(f"{label}: the \"files\" entry of {MANIFEST} is malformed; {fix}")
    unlisted = [f for f in DATA_FILES if f not in files]
    unknown = [f for f in files if f not in DATA_FILES + OPTIONAL_FILES]  # never open a listed path like ../x
    if unlisted or unknown:
        what = f"does not list {', '.join(unlisted)}" if unlisted else f"lists unknown files {', '.join(map(repr, unknown))}"
        raise IdentityError(f"{label}: {MANIFEST} {what}; {fix}")
    for name in DATA_FILES + OPTIONAL_FILES:
        if name in files:
            _check_file(label, folder, name, files[name], fix)


def _check_file(label: str, folder: Path, name: str, entry: dict, fix: str) -> None:
    path = folder / name
    if not path.exists():
        renamed = _find_renamed(folder, entry)
        if renamed is not None:
            raise IdentityError(f"{label}: {name} was renamed to {renamed}: rename it back to {name} (in {folder})")
        raise IdentityError(f"{label}: {name} is missing (listed in {MANIFEST}); {fix}")
    if not path.is_file():
        raise IdentityError(f"{label}: {name} is not a regular file ({path}); {fix}")
    try:
        actual = file_digest(path)
    except PermissionError:
        raise IdentityError(f"{label}: {name} is not readable (permission denied): run 'chmod u+r {path}'") from None
    except OSError as e:
        raise IdentityError(f"{label}: cannot read {name} ({_reason(e)}); {fix}") from None
    if actual != {"sha256": entry["sha256"], "size": entry["size"]}:
        raise IdentityError(f"{label}: {name} has changed or is corrupted (its sha256 differs from {MANIFEST}); "
                            f"{fix}")


def _find_renamed(folder: Path, entry: dict) -> str | None:
    """Name of an unlisted file in folder with the listed size and sha256, if any."""
    for p in sorted(folder.iterdir()):
        if p.name in DATA_FILES or p.name in OPTIONAL_FILES or p.name == MANIFEST or not p.is_file():
            continue
        try:
            if p.stat().st_size == entry["size"] and file_digest(p)["sha256"] == entry["sha256"]:
                return p.name
        except OSError:
            continue
    return None


def load_data(label: str, name: str, version: int, folder: Path, manifest: dict, fix: str) -> Identity:
    """Load every data file. Their hashes already matched, so a failure here means
    identity.json was edited along with the file: still a broken version, said plainly."""
    from safetensors.numpy import load_file

    from ..media.image import load_image
    from ..media.video import probe_video
    from .bank import load_bank

    bank = _loading(label, BANK_FILE, "a mouth bank", fix, lambda: load_bank(folder / BANK_FILE))
    face = _loading(label, FACE_FILE, "face tensors", fix, lambda: _face_tensors(load_file(str(folder / FACE_FILE))))
    _loading(label, REFERENCE_FILE, "an image", fix, lambda: load_image(folder / REFERENCE_FILE))
    clip = _loading(label, CLIP_FILE, "a video", fix, lambda: probe_video(folder / CLIP_FILE))
    if clip.n_frames != len(face["clip_landmarks"]):
        raise IdentityError(f"{label}: {CLIP_FILE} has {clip.n_frames} frames but {FACE_FILE} tracks "
                            f"{len(face['clip_landmarks'])}; {fix}")
    shapes = _loading(label, MANIFEST, "a shape table", fix, lambda: _shape_table(manifest["shapes"]))
    lips = load_lips(label, folder, manifest)
    return Identity(name=name, version=version, path=folder, manifest=manifest, shapes=shapes, bank=bank,
                    embedding=face["embedding"], neutral=face["neutral"], clip_landmarks=face["clip_landmarks"],
                    lips=lips)


def refit_lips_hint(manifest: dict) -> str:
    return (f"fit it again with 'facetalk identity train-lips {_short(manifest.get('name', 'NAME'))} "
            "--footage VIDEO' (the footage it was learnt from)")


def load_lips(label: str, folder: Path, manifest: dict):
    """The version's lip head (facetalk.lips.adapt.LipHead), None when it has none. Its
    file (already hashed by check_files) must load and carry the lip model stamp that the
    "lips" entry of identity.json records; each problem is one IdentityError."""
    from ..lips.adapt import load_head

    fix = refit_lips_hint(manifest)
    entry = manifest.get(LIPS_KEY)
    kind = entry.get("kind") if isinstance(entry, dict) else None
    listed = LIPS_HEAD_FILE in (manifest.get("files") or {})
    if entry is not None and kind not in ("head", "generic"):
        raise IdentityError(f"{label}: the \"{LIPS_KEY}\" entry of {MANIFEST} is malformed; {fix}")
    if kind == "head" and not listed:
        raise IdentityError(f"{label}: {MANIFEST} does not list {LIPS_HEAD_FILE}, which its {LIPS_KEY} entry needs; {fix}")
    if not listed:
        return None
    if kind != "head":
        raise IdentityError(f"{label}: {MANIFEST} lists {LIPS_HEAD_FILE} but no \"{LIPS_KEY}\" entry describes it; {fix}")
    head = _loading(label, LIPS_HEAD_FILE, "a lip head", fix, lambda: load_head(folder / LIPS_HEAD_FILE))
    stamp = (entry.get("lip_model") or {}).get("sha256") if isinstance(entry.get("lip_model"), dict) else None
    if head.lip_sha256 != stamp:
        raise IdentityError(f"{label}: {LIPS_HEAD_FILE} is stamped with lip model sha256 {head.lip_sha256[:12]} but "
                            f"{MANIFEST} with {_short(stamp)[:12]}; {fix}")
    return head


def check_adapters(label: str, folder: Path, manifest: dict, fix: str, home: Path | None = None) -> None:
    """The neural model files of a version made by `facetalk identity train`, if any.

    Their sha256 were checked with the data files (check_files); here, on the files alone
    (no torch): a LoRA adapter's peft config and safetensors tensors (rank, targets, the
    base stamp matching identity.json) and, when its base model is under home/models, that
    it fits the base's layers; a model of the person's own as a base folder. Each problem
    is one IdentityError naming the file and the fix.
    """
    entry = manifest.get(ADAPTER_KEY)
    if entry is None:
        return
    from ..neural.check import check_adapter, check_base

    retrain = f"train it again with 'facetalk identity train {_short(manifest.get('name', 'NAME'))}'"
    listed = manifest.get("files") or {}
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind not in ("lora", "model"):
        raise IdentityError(f"{label}: the \"{ADAPTER_KEY}\" entry of {MANIFEST} is malformed; {retrain}")
    wanted = ADAPTER_FILES if kind == "lora" else MODEL_FILES
    for f in wanted:
        if f not in listed:
            raise IdentityError(f"{label}: {MANIFEST} does not list {f}, which its {kind} entry needs; {retrain}")
    if kind == "model":
        check_base(folder, err=IdentityError)
        return
    base = entry.get("base") or {}
    shapes = None
    if home is not None and isinstance(base.get("sha256"), str):
        from ..neural.check import tensor_shapes

        found = _find_base(Path(home) / "models", base.get("name"), base["sha256"])
        if found is not None:
            try:
                shapes = tensor_shapes(found / "model.safetensors")
            except Exception:  # noqa: BLE001 - a broken base is reported when it is loaded
                shapes = None
    files = check_adapter(folder, label=label, base_shapes=shapes, fix=retrain, err=IdentityError)
    if files.base_sha256 != base.get("sha256"):
        raise IdentityError(f"{label}: {ADAPTER_FILES[0]} is stamped with base sha256 {str(files.base_sha256)[:12]} "
                            f"but {MANIFEST} with {str(base.get('sha256'))[:12]}; {retrain}")
    if files.rank != entry.get("rank"):
        raise IdentityError(f"{label}: {ADAPTER_FILES[0]} has rank {files.rank} but {MANIFEST} says "
                            f"{_short(entry.get('rank'))}; {retrain}")


def _find_base(models: Path, name: object, sha256: str) -> Path | None:
    """The folder under models/ whose config.json records weights of this sha256."""
    if not models.is_dir():
        return None
    first = [models / name] if isinstance(name, str) and NAME_PATTERN.fullmatch(name.lower()) else []
    for folder in first + sorted(p for p in models.iterdir() if p.is_dir()):
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(cfg, dict) and (cfg.get("weights") or {}).get("sha256") == sha256:
            return folder
    return None


def _loading(label: str, file: str, what: str, fix: str, load):
    # Parsers of untrusted files fail in their own ways (SafetensorError, ValueError,
    # KeyError, InputError...); any failure means this one file is broken.
    try:
        return load()
    except Exception as e:  # noqa: BLE001
        raise IdentityError(f"{label}: {file} does not load as {what} ({_reason(e)}); {fix}") from None


def _face_tensors(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    emb, embs, neutral, clip = t.get("embedding"), t.get("embeddings"), t.get("neutral"), t.get("clip_landmarks")
    if emb is None or embs is None or neutral is None or clip is None:
        raise ValueError("lacks embedding, embeddings, neutral or clip_landmarks")
    if (emb.shape != (EMBEDDING_DIM,) or embs.ndim != 2 or embs.shape[1] != EMBEDDING_DIM or neutral.shape != (68, 2)
            or clip.ndim != 3 or clip.shape[1:] != (68, 2)):
        raise ValueError(f"shapes embedding {emb.shape}, embeddings {embs.shape}, neutral {neutral.shape}, "
                         f"clip_landmarks {clip.shape}")
    return {"embedding": emb.astype(np.float32), "neutral": neutral.astype(np.float32),
            "clip_landmarks": clip.astype(np.float32)}


def _shape_table(data: object) -> np.ndarray:
    if not isinstance(data, dict):
        raise TypeError("shapes is not an object")
    table = shapes_from_json(data)
    if not np.isfinite(table).all():
        raise ValueError("shapes holds a value that is not a finite number")
    return table


# -- files -------------------------------------------------------------------------------


def file_digest(path: Path) -> dict:
    """{"sha256": hex, "size": bytes} of a file."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = os.fstat(f.fileno()).st_size
    return {"sha256": digest, "size": size}


def _hash_stage(st: Stage) -> dict[str, dict]:
    """Hash (and sync) the data files of a finished build; all four, the optional ones
    written (OPTIONAL_FILES), and nothing else."""
    present = {p.name for p in st.path.iterdir()}
    missing = [f for f in DATA_FILES if not (st.path / f).is_file()]
    if missing:
        raise IdentityError(f"cannot save {st.name}: the build did not write {', '.join(missing)}")
    extra = sorted(present - set(DATA_FILES) - set(OPTIONAL_FILES))
    if extra:
        raise IdentityError(f"cannot save {st.name}: unexpected files {', '.join(map(repr, extra))} in the version "
                            f"(it holds only {', '.join(DATA_FILES)}; the registry writes {MANIFEST})")
    files = {}
    for name in DATA_FILES + tuple(f for f in OPTIONAL_FILES if f in present):
        with (st.path / name).open("rb") as f:
            os.fsync(f.fileno())
        files[name] = file_digest(st.path / name)
    return files


def _complete_manifest(st: Stage, files: dict) -> dict:
    missing = [k for k in BUILDER_KEYS if k not in st.manifest]
    if missing:
        raise IdentityError(f"cannot save {st.name}: the build left {', '.join(missing)} out of {MANIFEST}")
    fixed = {"schema": SCHEMA_VERSION, "name": st.name, "version": 0, "facetalk": __version__,
             "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "files": files}
    manifest = {k: fixed[k] if k in fixed else st.manifest[k] for k in MANIFEST_KEYS}
    manifest.update({k: v for k, v in st.manifest.items() if k not in manifest})
    return manifest


def _to_json(data: dict) -> str:
    def plain(o):  # numpy numbers and arrays, paths: what a builder naturally hands over
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    return json.dumps(data, indent=2, ensure_ascii=False, default=plain) + "\n"


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_temp(folder: Path, text: str) -> Path:
    """A synced hidden file in folder (0o666 less the umask, like any new file)."""
    tmp = folder / f"{LATEST_TEMP_PREFIX}{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise IdentityError(f"cannot write in {folder} ({_reason(e)})") from None
    return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Remove a folder: first renamed to a hidden trash name (atomic, so it is gone from
    every listing at once), then deleted; a crash in between leaves only hidden trash."""
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}"
    try:
        os.rename(path, trash)
    except OSError as e:
        raise IdentityError(f"cannot remove {path} ({_reason(e)})") from None
    shutil.rmtree(trash, ignore_errors=True)


def _rmdir_quietly(folder: Path) -> None:
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return time.time()


def _vlist(versions: list[int]) -> str:
    return ", ".join(f"v{v}" for v in versions)


def _short(value: object) -> str:
    """A value from a (possibly edited) file, safe to put in a one-line message."""
    return " ".join(str(value).split())[:40]


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())[:200]
