"""The identity registry on disk and `facetalk identity`: versions appear complete or not
at all, every way a version can break gives exit 2 and one line naming the file, and an
exported version imports to identical arrays while a hostile zip writes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from facetalk import __version__
from facetalk.errors import IdentityError
from facetalk.home import facetalk_home
from facetalk.identity import archive
from facetalk.identity.model import (
    BANK_FILE,
    CLIP_FILE,
    DATA_FILES,
    FACE_FILE,
    MANIFEST,
    MANIFEST_KEYS,
    REFERENCE_FILE,
    SCHEMA_VERSION,
)
from facetalk.identity.registry import STALE_SECONDS, Registry, file_digest, parse_ref
from facetalk.motion.shapes import target_table

from .cli_helpers import assert_one_line_error, run_cli
from .identity_fixtures import synthetic_data, write_version

REPO = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: a snapshot to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("FACETALK_HOME", str(h))
    return h


@pytest.fixture
def reg(home) -> Registry:
    return Registry(home)


@pytest.fixture
def lecturer(reg) -> Path:
    """lecturer@v1, the latest; returns its folder."""
    assert write_version(reg, "lecturer") == "lecturer@v1"
    return reg.path("lecturer", 1)


# -- home and refs ------------------------------------------------------------------------


def test_home_is_env_or_user_data_dir(monkeypatch, tmp_path):
    assert facetalk_home({"FACETALK_HOME": "/srv/ft"}) == Path("/srv/ft")
    default = Path(platformdirs.user_data_dir("facetalk", appauthor=False))
    assert facetalk_home({}) == default
    assert facetalk_home({"FACETALK_HOME": ""}) == default
    # read on every call, never cached
    monkeypatch.setenv("FACETALK_HOME", str(tmp_path / "a"))
    assert facetalk_home() == tmp_path / "a"
    monkeypatch.setenv("FACETALK_HOME", str(tmp_path / "b"))
    assert facetalk_home() == tmp_path / "b"


@pytest.mark.parametrize("ref, parsed", [
    ("lecturer", ("lecturer", None)), ("lecturer@v2", ("lecturer", 2)), ("lecturer@2", ("lecturer", 2)),
    ("a", ("a", None)), ("dr.smith_2-b@v10", ("dr.smith_2-b", 10)), ("x" * 64, ("x" * 64, None)),
])
def test_parse_ref(ref, parsed):
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["Lecturer", "", "-x", ".hidden", "a/b", "../x", "x" * 65, "x@v0", "x@vx",
                                 "x@", "x@v2@v3", "x y", "x@-1"])
def test_bad_refs_are_rejected(ref):
    with pytest.raises(IdentityError):
        parse_ref(ref)


# -- building -----------------------------------------------------------------------------


def test_stage_writes_a_complete_version(reg, lecturer):
    assert sorted(p.name for p in lecturer.iterdir()) == sorted([MANIFEST, *DATA_FILES])
    manifest = json.loads((lecturer / MANIFEST).read_text())
    assert list(manifest)[:len(MANIFEST_KEYS)] == list(MANIFEST_KEYS)
    assert manifest["schema"] == SCHEMA_VERSION and manifest["facetalk"] == __version__
    assert (manifest["name"], manifest["version"]) == ("lecturer", 1)
    assert time.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%SZ")
    for name in DATA_FILES:
        data = (lecturer / name).read_bytes()
        assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert (reg.root / "lecturer" / "latest").read_text().strip() == "v1"
    # nothing else beside the version: no staging or temporary files remain
    assert sorted(p.name for p in (reg.root / "lecturer").iterdir()) == ["latest", "v1"]


def test_next_version_keeps_latest(reg, lecturer):
    assert write_version(reg, "lecturer", seed=1) == "lecturer@v2"
    assert reg.versions("lecturer") == [1, 2]
    assert reg.latest("lecturer") == 1
    assert reg.resolve("lecturer") == ("lecturer", 1)
    assert reg.resolve("lecturer@2") == ("lecturer", 2)


def test_load_returns_the_written_arrays(reg, lecturer):
    write_version(reg, "lecturer", seed=7)
    ident = reg.load("lecturer@v2")
    want = synthetic_data(7)
    assert ident.ref == "lecturer@v2" and ident.path == reg.path("lecturer", 2)
    assert np.array_equal(ident.bank.images, want["bank"].images)
    assert np.array_equal(ident.bank.landmarks, want["bank"].landmarks)
    assert np.array_equal(ident.bank.source, want["bank"].source)
    assert ident.bank.scale == want["bank"].scale
    assert np.array_equal(ident.embedding, want["face"]["embedding"])
    assert np.array_equal(ident.neutral, want["face"]["neutral"])
    assert np.array_equal(ident.shapes, target_table())
    assert ident.reference.is_file() and ident.clip.is_file()
    assert ident.manifest["settings"]["seed"] == 7


def test_exception_in_stage_block_leaves_nothing(reg, home):
    with pytest.raises(RuntimeError), reg.stage("newbie") as st:
        (st.path / BANK_FILE).write_bytes(b"partial")
        raise RuntimeError("build failed")
    assert not (reg.root / "newbie").exists()
    assert reg.names() == []


def test_failed_build_of_an_existing_identity_changes_nothing(reg, lecturer):
    before = tree(reg.root)
    with pytest.raises(KeyboardInterrupt), reg.stage("lecturer") as st:
        (st.path / CLIP_FILE).write_bytes(b"partial")
        raise KeyboardInterrupt
    assert tree(reg.root) == before
    assert sorted(p.name for p in (reg.root / "lecturer").iterdir()) == ["latest", "v1"]


@pytest.mark.parametrize("mistake, words", [
    ("no clip", ["face.mp4", "did not write"]),
    ("no settings", ["settings"]),
    ("extra file", ["'notes.txt'", "unexpected"]),
])
def test_incomplete_build_is_refused(reg, mistake, words):
    with pytest.raises(IdentityError) as e, reg.stage("newbie") as st:
        for name in DATA_FILES:
            if not (mistake == "no clip" and name == CLIP_FILE):
                (st.path / name).write_bytes(b"x")
        if mistake == "extra file":
            (st.path / "notes.txt").write_text("x")
        st.manifest.update(consent=None, footage=[], frames={}, shapes={})
        if mistake != "no settings":
            st.manifest["settings"] = {}
    for w in words:
        assert w in str(e.value)
    assert not (reg.root / "newbie").exists()


def test_concurrent_build_takes_the_next_number(reg, lecturer, monkeypatch):
    # Another process saved v1 after this build chose its number: the rename must not
    # overwrite it but land on v2.
    monkeypatch.setattr(reg, "versions", lambda name: [])
    assert write_version(reg, "lecturer", seed=3) == "lecturer@v2"
    monkeypatch.undo()
    assert json.loads((lecturer / MANIFEST).read_text())["version"] == 1
    assert json.loads((reg.path("lecturer", 2) / MANIFEST).read_text())["version"] == 2
    reg.verify("lecturer@v1")
    reg.verify("lecturer@v2")
    assert reg.latest("lecturer") == 1


def test_leftover_staging_is_ignored_and_cleaned_when_stale(reg, lecturer, capsys):
    dead = reg.root / "lecturer" / ".staging-dead"
    fresh = reg.root / "lecturer" / ".staging-fresh"
    orphan = reg.root / "ghost" / ".staging-crashed"
    for d in (dead, fresh, orphan):
        d.mkdir(parents=True)
        (d / BANK_FILE).write_bytes(b"half a bank")
    dead_latest = reg.root / "lecturer" / ".latest.dead.tmp"
    dead_latest.write_text("v9\n")
    old = time.time() - STALE_SECONDS - 60
    for p in (dead, dead_latest):
        os.utime(p, (old, old))
    assert reg.names() == ["lecturer"] and reg.versions("lecturer") == [1]
    code, out, err = run_cli(capsys, "identity", "list", "--json")
    assert code == 0, err
    assert [(r["name"], r["versions"]) for r in json.loads(out)] == [("lecturer", [1])]
    assert run_cli(capsys, "identity", "verify", "lecturer")[0] == 0
    write_version(reg, "lecturer", seed=1)
    assert not dead.exists() and not dead_latest.exists()
    assert fresh.is_dir()  # a build still running keeps its folder
    assert reg.versions("lecturer") == [1, 2]


def test_killed_build_leaves_only_a_hidden_staging_folder(reg, home, capsys):
    script = (
        "import os, signal, sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
        "from facetalk.identity.registry import Registry;"
        "from facetalk.identity.model import BANK_FILE\n"
        "with Registry(Path(sys.argv[1])).stage('victim') as st:\n"
        "    (st.path / BANK_FILE).write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(home), str(REPO)], capture_output=True, check=False)
    assert proc.returncode == -9, proc.stderr
    left = list((reg.root / "victim").iterdir())
    assert len(left) == 1 and left[0].name.startswith(".staging-")
    assert reg.names() == []
    code, out, _ = run_cli(capsys, "identity", "list")
    assert code == 0 and out.startswith("no identities in")
    assert_one_line_error(*run_cli(capsys, "identity", "verify", "victim")[::2], "unknown identity 'victim'")


# -- list, show, verify -------------------------------------------------------------------


def test_list_show_verify(reg, lecturer, capsys, tmp_path):
    code, out, err = run_cli(capsys, "identity", "list")
    assert code == 0 and out.startswith("NAME")
    write_version(reg, "lecturer", seed=1)
    write_version(reg, "anchor", seed=2, consent=None)

    code, out, err = run_cli(capsys, "identity", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "LATEST", "VERSIONS", "CREATED", "FRAMES"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["lecturer"][1:4] == ["v1", "v1", "v2"] and rows["lecturer"][-1] == "5"
    assert rows["anchor"][1:3] == ["v1", "v1"]

    code, out, _ = run_cli(capsys, "identity", "list", "--json")
    data = json.loads(out)
    assert [(r["name"], r["latest"], r["versions"]) for r in data] == [("anchor", 1, [1]), ("lecturer", 1, [1, 2])]

    code, out, _ = run_cli(capsys, "identity", "show", "lecturer")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "lecturer@v1 (latest)"
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert fields["path"] == str(lecturer)
    assert fields["consent"] == '"recorded with consent"'
    assert fields["footage"].startswith("talk.mp4 (123.5 kB")
    assert fields["frames"] == "5 used, 1 skipped (no_face 1)"
    assert fields["settings"] == "crop_scale=16 seed=0"
    assert "mouth_bank.safetensors" in fields["files"] and "face.mp4" in fields["files"]
    code, out, _ = run_cli(capsys, "identity", "show", "anchor")
    assert "consent   none recorded" in out

    code, out, _ = run_cli(capsys, "identity", "show", "lecturer@2", "--json")
    shown = json.loads(out)
    assert (shown["ref"], shown["latest"], shown["manifest"]["version"]) == ("lecturer@v2", False, 2)

    code, out, err = run_cli(capsys, "identity", "verify", "lecturer@v2")
    assert code == 0, err
    assert out.startswith("lecturer@v2: ok (4 files, ")

    # --home overrides FACETALK_HOME
    code, out, _ = run_cli(capsys, "identity", "--home", tmp_path / "elsewhere", "list")
    assert code == 0 and out.startswith(f"no identities in {tmp_path / 'elsewhere' / 'identities'}")


def test_unknown_name_and_version_list_the_known_ones(reg, lecturer, capsys):
    assert_one_line_error(*run_cli(capsys, "identity", "show", "nobody")[::2], "unknown identity 'nobody'", "known: lecturer")
    assert_one_line_error(*run_cli(capsys, "identity", "verify", "lecturer@v4")[::2], "lecturer has no version v4",
                 "versions: v1")
    assert_one_line_error(*run_cli(capsys, "identity", "show", "Lecturer")[::2], "bad identity name", "try 'lecturer'")


# -- broken versions ----------------------------------------------------------------------


def _edit_manifest(folder: Path, edit) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    edit(data)
    (folder / MANIFEST).write_text(json.dumps(data))


def _relist(folder: Path, name: str) -> None:
    """Record a file's current hash in identity.json, as if identity.json had been edited too."""
    _edit_manifest(folder, lambda m: m["files"].__setitem__(name, file_digest(folder / name)))


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _break_bank_header(folder: Path) -> None:
    path = folder / BANK_FILE
    data = bytearray(path.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")  # a header length past the end of the file
    path.write_bytes(bytes(data))
    _relist(folder, BANK_FILE)


def _face_without_neutral(folder: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"embedding": np.zeros(128, np.float32), "embeddings": np.zeros((2, 128), np.float32)},
              str(folder / FACE_FILE))
    _relist(folder, FACE_FILE)


BREAKAGES = {
    "manifest missing": (lambda f: (f / MANIFEST).unlink(), ["lecturer@v1: identity.json is missing"]),
    "manifest not json": (lambda f: (f / MANIFEST).write_text("{\"schema\": 1,"), ["identity.json is not valid JSON"]),
    "manifest keys missing": (lambda f: _edit_manifest(f, lambda m: (m.pop("frames"), m.pop("shapes"))),
                              ["identity.json lacks frames, shapes"]),
    "schema newer": (lambda f: _edit_manifest(f, lambda m: m.update(schema=SCHEMA_VERSION + 1, facetalk="9.0")),
                     [f"schema {SCHEMA_VERSION + 1}, newer", "facetalk 9.0", "upgrade"]),
    "schema older": (lambda f: _edit_manifest(f, lambda m: m.update(schema=SCHEMA_VERSION - 1, facetalk="0.0.1")),
                     [f"schema {SCHEMA_VERSION - 1}, older", "facetalk 0.0.1", "facetalk identity create lecturer"]),
    "file missing": (lambda f: (f / BANK_FILE).unlink(),
                     ["lecturer@v1: mouth_bank.safetensors is missing (listed in identity.json)",
                      "rebuild with 'facetalk identity create lecturer'"]),
    "file renamed": (lambda f: (f / FACE_FILE).rename(f / "face (copy).safetensors"),
                     ["face.safetensors was renamed to face (copy).safetensors", "rename it back"]),
    "file changed": (lambda f: _flip_byte(f / REFERENCE_FILE, 100), ["reference.png has changed or is corrupted"]),
    "file truncated": (lambda f: (f / CLIP_FILE).write_bytes((f / CLIP_FILE).read_bytes()[:500]),
                       ["face.mp4 has changed or is corrupted"]),
    "bank does not load": (_break_bank_header, ["mouth_bank.safetensors does not load as a mouth bank"]),
    "face tensors incomplete": (_face_without_neutral, ["face.safetensors does not load as face tensors"]),
    "clip does not load": (lambda f: ((f / CLIP_FILE).write_bytes(b"\0" * 64), _relist(f, CLIP_FILE)),
                           ["face.mp4 does not load as a video"]),
    "shape table incomplete": (lambda f: _edit_manifest(f, lambda m: m["shapes"].pop("D")),
                               ["identity.json does not load as a shape table", "shape D"]),
    "files entry unlisted": (lambda f: _edit_manifest(f, lambda m: m["files"].pop(CLIP_FILE)),
                             ["identity.json does not list face.mp4"]),
    "files entry escapes": (lambda f: _edit_manifest(f, lambda m: m["files"].__setitem__("../x", {"sha256": "0", "size": 1})),
                            ["identity.json lists unknown files '../x'"]),
    "folder renamed": (lambda f: _edit_manifest(f, lambda m: m.update(version=3)),
                       ["identity.json says this folder holds lecturer@v3", "move it back"]),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_broken_version_gives_one_line_naming_the_file(reg, lecturer, capsys, case):
    breakage, words = BREAKAGES[case]
    breakage(lecturer)
    assert_one_line_error(*run_cli(capsys, "identity", "verify", "lecturer")[::2], *words)
    with pytest.raises(IdentityError) as e:
        reg.load("lecturer@v1")
    assert "\n" not in str(e.value)
    # a broken version is never made the default nor exported
    write_version(reg, "lecturer", seed=1)
    run_cli(capsys, "identity", "promote", "lecturer@v2")
    assert_one_line_error(*run_cli(capsys, "identity", "promote", "lecturer@v1")[::2], *words)
    assert reg.latest("lecturer") == 2
    assert_one_line_error(*run_cli(capsys, "identity", "export", "lecturer@v1", "-o", lecturer.parent / "x.zip")[::2], *words)
    assert not (lecturer.parent / "x.zip").exists()


def test_unreadable_file(reg, lecturer, capsys, monkeypatch):
    target = lecturer / FACE_FILE
    real_open = Path.open

    def deny(self, *args, **kwargs):
        if self == target:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)  # tests may run as root, which chmod cannot stop
    assert_one_line_error(*run_cli(capsys, "identity", "verify", "lecturer")[::2],
                 "face.safetensors is not readable (permission denied)", f"chmod u+r {target}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_by_mode(reg, lecturer, capsys):
    (lecturer / BANK_FILE).chmod(0)
    try:
        assert_one_line_error(*run_cli(capsys, "identity", "verify", "lecturer")[::2], "mouth_bank.safetensors is not readable")
    finally:
        (lecturer / BANK_FILE).chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("content, words", [("v5\n", ["latest names v5, which does not exist", "promote"]),
                                            ("banana", ["holds 'banana'", "promote"])])
def test_latest_pointing_nowhere(reg, lecturer, capsys, content, words):
    (reg.root / "lecturer" / "latest").write_text(content)
    assert_one_line_error(*run_cli(capsys, "identity", "verify", "lecturer")[::2], *words)
    assert run_cli(capsys, "identity", "verify", "lecturer@v1")[0] == 0
    assert run_cli(capsys, "identity", "list")[0] == 0
    # promote repairs it
    assert run_cli(capsys, "identity", "promote", "lecturer@v1")[0] == 0
    assert reg.resolve("lecturer") == ("lecturer", 1)


def test_latest_missing(reg, lecturer, capsys):
    (reg.root / "lecturer" / "latest").unlink()
    assert_one_line_error(*run_cli(capsys, "identity", "show", "lecturer")[::2], "latest is missing",
                 "facetalk identity promote lecturer@v1")


# -- promote and remove -------------------------------------------------------------------


def test_promote_moves_latest(reg, lecturer, capsys):
    write_version(reg, "lecturer", seed=1)
    code, out, err = run_cli(capsys, "identity", "promote", "lecturer@v2")
    assert (code, out.strip()) == (0, "lecturer: latest is now v2"), err
    assert (reg.root / "lecturer" / "latest").read_text() == "v2\n"
    assert run_cli(capsys, "identity", "show", "lecturer")[1].splitlines()[0] == "lecturer@v2 (latest)"
    assert not [p for p in (reg.root / "lecturer").iterdir() if p.name.startswith(".")]  # no temp file left
    assert_one_line_error(*run_cli(capsys, "identity", "promote", "lecturer")[::2], "promote needs a version")
    assert_one_line_error(*run_cli(capsys, "identity", "promote", "lecturer@v9")[::2], "no version v9", "v1, v2")
    assert reg.latest("lecturer") == 2


def test_remove_semantics(reg, lecturer, capsys):
    write_version(reg, "lecturer", seed=1)
    write_version(reg, "lecturer", seed=2)
    assert_one_line_error(*run_cli(capsys, "identity", "remove", "lecturer@v1")[::2], "lecturer@v1 is the latest",
                 "promote another version first")
    assert_one_line_error(*run_cli(capsys, "identity", "remove", "lecturer")[::2], "--all")
    assert_one_line_error(*run_cli(capsys, "identity", "remove", "lecturer@v2", "--all")[::2], "bare name")
    assert reg.versions("lecturer") == [1, 2, 3]

    code, out, err = run_cli(capsys, "identity", "remove", "lecturer@2")
    assert (code, out.strip()) == (0, "removed lecturer@v2"), err
    assert reg.versions("lecturer") == [1, 3]
    assert sorted(p.name for p in (reg.root / "lecturer").iterdir()) == ["latest", "v1", "v3"]  # no trash left

    run_cli(capsys, "identity", "promote", "lecturer@v3")
    assert run_cli(capsys, "identity", "remove", "lecturer@v1")[0] == 0
    # the only version left, the latest: removing it removes the identity
    code, out, _ = run_cli(capsys, "identity", "remove", "lecturer@v3")
    assert code == 0 and not (reg.root / "lecturer").exists()
    assert_one_line_error(*run_cli(capsys, "identity", "remove", "lecturer@v3")[::2], "unknown identity 'lecturer'")


def test_remove_all(reg, lecturer, capsys):
    write_version(reg, "lecturer", seed=1)
    write_version(reg, "anchor", seed=2)
    code, out, err = run_cli(capsys, "identity", "remove", "lecturer", "--all")
    assert (code, out.strip()) == (0, "removed lecturer (2 versions)"), err
    assert reg.names() == ["anchor"]
    assert sorted(p.name for p in reg.root.iterdir()) == ["anchor"]
    assert_one_line_error(*run_cli(capsys, "identity", "remove", "lecturer", "--all")[::2], "unknown identity", "known: anchor")


# -- export and import --------------------------------------------------------------------


def test_export_import_round_trip(reg, lecturer, capsys, tmp_path):
    write_version(reg, "lecturer", seed=5)
    out_zip = tmp_path / "lecturer.zip"
    code, out, err = run_cli(capsys, "identity", "export", "lecturer@v2", "-o", out_zip)
    assert code == 0, err
    assert out.startswith(f"wrote {out_zip} (lecturer@v2, ")
    with zipfile.ZipFile(out_zip) as z:
        assert sorted(z.namelist()) == sorted(f"lecturer/v2/{m}" for m in (MANIFEST, *DATA_FILES))
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    other = Registry(tmp_path / "other")
    code, out, err = run_cli(capsys, "identity", "--home", other.home, "import", out_zip)
    assert code == 0, err
    assert out.strip() == f"imported lecturer@v1 from {out_zip} (archived as lecturer@v2)"
    original, copy = reg.load("lecturer@v2"), other.load("lecturer")
    assert copy.ref == "lecturer@v1"
    for a, b in [(original.bank.images, copy.bank.images), (original.bank.landmarks, copy.bank.landmarks),
                 (original.bank.source, copy.bank.source), (original.embedding, copy.embedding),
                 (original.neutral, copy.neutral), (original.shapes, copy.shapes)]:
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert (original.bank.bounds, original.bank.scale) == (copy.bank.bounds, copy.bank.scale)
    for name in DATA_FILES:
        assert file_digest(original.path / name) == file_digest(copy.path / name)
    assert copy.manifest["files"] == original.manifest["files"]
    assert copy.manifest["imported_from"] == "lecturer@v2"
    for key in ("consent", "footage", "frames", "shapes", "settings"):
        assert copy.manifest[key] == original.manifest[key]


def test_import_as_new_name_or_next_version(reg, lecturer, capsys, tmp_path):
    out_zip = tmp_path / "l.zip"
    assert run_cli(capsys, "identity", "export", "lecturer", "-o", out_zip)[0] == 0
    code, out, err = run_cli(capsys, "identity", "import", out_zip, "--name", "guest")
    assert code == 0 and out.startswith("imported guest@v1 "), err
    assert reg.load("guest").manifest["imported_from"] == "lecturer@v1"
    code, out, _ = run_cli(capsys, "identity", "import", out_zip)
    assert out.startswith("imported lecturer@v2 ")
    assert reg.latest("lecturer") == 1  # an import is not the default unless asked
    code, out, _ = run_cli(capsys, "identity", "import", out_zip, "--promote")
    assert out.startswith("imported lecturer@v3 ") and reg.latest("lecturer") == 3
    assert_one_line_error(*run_cli(capsys, "identity", "import", out_zip, "--name", "Bad Name")[::2], "bad identity name")


def test_export_never_overwrites_unless_forced(reg, lecturer, capsys, tmp_path):
    out_zip = tmp_path / "taken.zip"
    out_zip.write_bytes(b"precious")
    assert_one_line_error(*run_cli(capsys, "identity", "export", "lecturer", "-o", out_zip)[::2], "already exists", "--force")
    assert out_zip.read_bytes() == b"precious"
    assert run_cli(capsys, "identity", "export", "lecturer", "-o", out_zip, "--force")[0] == 0
    assert zipfile.is_zipfile(out_zip)
    assert_one_line_error(*run_cli(capsys, "identity", "export", "lecturer", "-o", tmp_path / "x.tar")[::2], ".zip")
    assert_one_line_error(*run_cli(capsys, "identity", "export", "lecturer", "-o", tmp_path / "no" / "x.zip")[::2],
                 "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["taken.zip"]


def _members(z: zipfile.ZipFile) -> dict[str, bytes]:
    return {i.filename: z.read(i) for i in z.infolist()}


def _write_zip(path: Path, members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, data)
    return path


def _tamper(m: dict[str, bytes], case: str) -> tuple[dict[str, bytes], tuple[str, ...]]:
    prefix = "lecturer/v1/"
    if case == "traversal":
        return {**m, "lecturer/v1/../../../evil.txt": b"pwned"}, ()
    if case == "traversal folder":
        return {k.replace(prefix, "../lecturer/v1/"): v for k, v in m.items()}, ()
    if case == "absolute":
        return {**m, "/tmp/evil.txt": b"pwned"}, ()
    if case == "symlink":
        return {**m, prefix + CLIP_FILE: b"/etc/passwd"}, (prefix + CLIP_FILE,)
    if case == "two folders":
        return {**m, "other/v1/" + MANIFEST: m[prefix + MANIFEST]}, ()
    if case == "stray folder":
        return {**m, "elsewhere/": b""}, ()
    if case == "extra member":
        return {**m, prefix + "notes.txt": b"hello"}, ()
    if case == "missing member":
        return {k: v for k, v in m.items() if not k.endswith(CLIP_FILE)}, ()
    if case == "tampered data":
        data = bytearray(m[prefix + REFERENCE_FILE])
        data[100] ^= 0xFF
        return {**m, prefix + REFERENCE_FILE: bytes(data)}, ()
    if case == "manifest of another version":
        manifest = json.loads(m[prefix + MANIFEST])
        manifest["version"] = 7
        return {**m, prefix + MANIFEST: json.dumps(manifest).encode()}, ()
    raise AssertionError(case)


@pytest.mark.parametrize("case, words", [
    ("traversal", ["leaves its folder"]),
    ("traversal folder", ["leaves its folder"]),
    ("absolute", ["absolute path"]),
    ("symlink", ["symbolic link"]),
    ("two folders", ["more than one"]),
    ("stray folder", ["unexpected folder 'elsewhere/'"]),
    ("extra member", ["unexpected member", "notes.txt"]),
    ("missing member", ["lacks face.mp4"]),
    ("tampered data", ["reference.png has changed or is corrupted", "export it again"]),
    ("manifest of another version", ["says this folder holds lecturer@v7"]),
])
def test_hostile_or_damaged_archive_writes_nothing(reg, lecturer, capsys, tmp_path, case, words):
    good = tmp_path / "good.zip"
    assert run_cli(capsys, "identity", "export", "lecturer", "-o", good)[0] == 0
    with zipfile.ZipFile(good) as z:
        members, links = _tamper(_members(z), case)
    bad = _write_zip(tmp_path / "bad.zip", members, links)
    before = tree(tmp_path)
    assert_one_line_error(*run_cli(capsys, "identity", "import", bad, "--name", "intruder")[::2], *words)
    assert tree(tmp_path) == before
    assert reg.names() == ["lecturer"]
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_archive_size_and_kind_are_checked(reg, lecturer, capsys, tmp_path, monkeypatch):
    good = tmp_path / "good.zip"
    run_cli(capsys, "identity", "export", "lecturer", "-o", good)
    before = tree(reg.home)
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 1000)
    assert_one_line_error(*run_cli(capsys, "identity", "import", good, "--name", "big")[::2], "unpacks to")
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    assert_one_line_error(*run_cli(capsys, "identity", "import", not_zip)[::2], "is not a zip archive")
    assert_one_line_error(*run_cli(capsys, "identity", "import", tmp_path / "missing.zip")[::2], "not found")
    assert tree(reg.home) == before


# -- create -------------------------------------------------------------------------------


@pytest.fixture
def fake_learn(monkeypatch):
    """Stands in for facetalk.identity.learn: records its arguments, builds a tiny version."""
    calls = []

    def create_identity(registry, name, footage, transcripts, consent, allow_mixed, ctx):
        calls.append({"name": name, "footage": footage, "transcripts": transcripts, "consent": consent,
                      "allow_mixed": allow_mixed, "home": registry.home})
        ctx.report("learn", 1.0)
        ctx.warn("only 5 frames")
        ref = write_version(registry, name, seed=len(calls), consent=consent)
        return types.SimpleNamespace(ref=ref, frames_used=5, frames_skipped={"no_face": 2, "blurred": 0},
                                     seconds=1.25, warnings=["only 5 frames", "footage is short"])

    module = types.ModuleType("facetalk.identity.learn")
    module.create_identity = create_identity
    monkeypatch.setitem(sys.modules, "facetalk.identity.learn", module)
    return calls


@pytest.fixture
def footage(tmp_path) -> dict[str, Path]:
    files = {"a": tmp_path / "a.mp4", "b": tmp_path / "b.mp4", "ta": tmp_path / "a.txt", "tb": tmp_path / "b.txt"}
    for key, path in files.items():
        path.write_text(f"words of {key}" if key.startswith("t") else "video")
    return files


def test_create_calls_learn_and_promotes(reg, lecturer, capsys, fake_learn, footage):
    code, out, err = run_cli(capsys, "identity", "create", "lecturer", "--footage", footage["a"],
                             "--footage", footage["b"], "--transcript", footage["ta"], "--transcript", footage["tb"],
                             "--consent", "Ann agreed on 2024-05-01", "--promote", "--quiet")
    assert code == 0, err
    assert fake_learn == [{"name": "lecturer", "footage": [str(footage["a"]), str(footage["b"])],
                           "transcripts": ["words of ta", "words of tb"], "consent": "Ann agreed on 2024-05-01",
                           "allow_mixed": False, "home": reg.home}]
    assert out == "" and err == ""  # --quiet
    assert reg.latest("lecturer") == 2

    code, out, err = run_cli(capsys, "identity", "create", "lecturer", "--footage", footage["a"], "--allow-mixed")
    assert code == 0, err
    assert out.strip() == "created lecturer@v3: 5 frames used, 2 skipped (no_face 2), in 1.2 s"
    assert fake_learn[-1]["transcripts"] == [None] and fake_learn[-1]["allow_mixed"] is True
    # each warning once, whether it came through the context or the result
    assert err.count("facetalk: warning: only 5 frames") == 1 and "facetalk: warning: footage is short" in err
    assert reg.latest("lecturer") == 2


def test_create_json_progress(reg, capsys, fake_learn, footage):
    code, _, err = run_cli(capsys, "identity", "create", "newbie", "--footage", footage["a"], "--json-progress")
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines()]
    result = [e for e in events if e["event"] == "result"]
    assert len(result) == 1 and result[0]["ref"] == "newbie@v1" and result[0]["latest"] is True
    assert result[0]["frames_skipped"] == {"no_face": 2, "blurred": 0}
    assert any(e["event"] == "warning" for e in events)


@pytest.mark.parametrize("args, words", [
    (["--transcript", "{ta}"], ["--transcript given 1 times for 2 --footage"]),
    (["--footage", "{missing}"], ["not found"]),
    (["--transcript", "{missing}", "--transcript", "{tb}"], ["transcript file not found"]),
])
def test_create_rejects_bad_arguments_before_learning(reg, capsys, fake_learn, footage, tmp_path, args, words):
    paths = {k: str(v) for k, v in footage.items()} | {"missing": str(tmp_path / "missing.mp4")}
    extra = [a.format(**paths) for a in args]
    base = ["identity", "create", "lecturer", "--footage", paths["a"]]
    if extra[0] == "--transcript":
        base += ["--footage", paths["b"]]
    assert_one_line_error(*run_cli(capsys, *base, *extra)[::2], *words)
    assert_one_line_error(*run_cli(capsys, "identity", "create", "Bad/Name", "--footage", paths["a"])[::2], "bad identity name")
    assert fake_learn == [] and reg.names() == []
