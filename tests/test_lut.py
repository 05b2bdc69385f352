"""facetalk.finish.lut: .cube parsing (valid, malformed, fuzzed) and LUTs whose result is known."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facetalk.errors import InputError
from facetalk.finish.lut import Lut, LutError, load_lut, parse_cube

RNG = np.random.default_rng(7)


def grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input R, G, B of each entry of an n^3 table indexed [b, g, r]."""
    g = np.linspace(0.0, 1.0, n)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    return r, gg, b


def cube_text(table: np.ndarray, header: str = "") -> str:
    """A .cube file's text: 3D for (n, n, n, 3) [b, g, r] tables (rows with red fastest), 1D for (n, 3)."""
    if table.ndim == 4:
        size = f"LUT_3D_SIZE {table.shape[0]}"
    else:
        size = f"LUT_1D_SIZE {table.shape[0]}"
    rows = "\n".join(f"{r:.7f} {g:.7f} {b:.7f}" for r, g, b in table.reshape(-1, 3))
    return f"{header}{size}\n{rows}\n"


def write_cube(path: Path, table: np.ndarray, header: str = "") -> Path:
    path.write_text(cube_text(table, header))
    return path


def identity_table(n: int) -> np.ndarray:
    return np.stack(grid(n), axis=-1)


def random_image(h: int = 64, w: int = 96) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def every_code() -> np.ndarray:
    """Greys 0..255 and a random sample of colours, as an image."""
    greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.concatenate([greys, RNG.integers(0, 256, (4096 - 256, 3), dtype=np.uint8)]).reshape(64, 64, 3)


# ---------------------------------------------------------------- known results
# Exact 8-bit comparisons hold on any CPU: the expected codes are whole numbers the exact
# formula hits (identity, swaps, inversion, grid points), and lut.py gets there with plain
# float32 arithmetic (IEEE, the same everywhere; no BLAS, no exp or log) a few ulps away,
# never near a rounding boundary at .5. Results that may round either way use atol=1.


@pytest.mark.parametrize("n", [2, 17, 33])
@pytest.mark.parametrize("interp", ["tetrahedral", "trilinear"])
def test_identity_3d_gives_the_input_back(tmp_path, n, interp):
    lut = load_lut(write_cube(tmp_path / "id.cube", identity_table(n)))
    assert (lut.kind, lut.size) == ("3d", n)
    img = every_code()
    np.testing.assert_array_equal(lut.apply(img, interpolation=interp), img)


def test_channel_swap_swaps(tmp_path):
    r, g, b = grid(9)
    lut = load_lut(write_cube(tmp_path / "swap.cube", np.stack([b, r, g], axis=-1)))  # out = (B, R, G)
    img = random_image(1080 // 8, 1920 // 8)
    for interp in ("tetrahedral", "trilinear"):
        out = lut.apply(img, interpolation=interp)
        np.testing.assert_array_equal(out, img[..., [2, 0, 1]])


def test_1d_invert_inverts(tmp_path):
    ramp = np.linspace(1.0, 0.0, 1024)
    lut = load_lut(write_cube(tmp_path / "inv.cube", np.stack([ramp] * 3, axis=1)))
    assert (lut.kind, lut.size) == ("1d", 1024)
    img = every_code()
    np.testing.assert_array_equal(lut.apply(img), 255 - img)


def test_1d_curves_are_per_channel(tmp_path):
    x = np.linspace(0.0, 1.0, 256)
    table = np.stack([x**2, np.sqrt(x), np.full_like(x, 0.5)], axis=1)
    lut = load_lut(write_cube(tmp_path / "curves.cube", table))
    codes = every_code()
    out = lut.apply(codes).astype(int)
    img = codes.astype(float) / 255
    np.testing.assert_allclose(out[..., 0], np.rint(img[..., 0] ** 2 * 255), atol=1)
    np.testing.assert_allclose(out[..., 1], np.rint(np.sqrt(img[..., 1]) * 255), atol=1)
    assert (out[..., 2] == 128).all()


def test_3d_domain_scales_the_input(tmp_path):
    # grid values are the grid's own 0..1 position; with DOMAIN_MAX 2 the input x sits at x / 2
    header = "DOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n"
    lut = load_lut(write_cube(tmp_path / "dom.cube", identity_table(5), header))
    img = every_code()
    expected = np.rint(img.astype(float) / 2).astype(int)
    np.testing.assert_allclose(lut.apply(img).astype(int), expected, atol=1)


def test_3d_domain_min_clamps_inputs_below_it(tmp_path):
    header = "DOMAIN_MIN 0.5 0 0\nDOMAIN_MAX 1 1 1\n"
    lut = load_lut(write_cube(tmp_path / "dom.cube", identity_table(3), header))
    np.testing.assert_array_equal(lut.domain_min, [0.5, 0, 0])
    img = every_code()
    out = lut.apply(img).astype(int)
    x = img[..., 0].astype(float) / 255
    np.testing.assert_allclose(out[..., 0], np.rint(np.clip((x - 0.5) / 0.5, 0, 1) * 255), atol=1)
    np.testing.assert_array_equal(out[..., 1:], img[..., 1:])


def test_resolve_input_range_is_the_domain(tmp_path):
    a = load_lut(write_cube(tmp_path / "a.cube", identity_table(4), "LUT_3D_INPUT_RANGE 0.0 0.5\n"))
    b = load_lut(write_cube(tmp_path / "b.cube", identity_table(4), "DOMAIN_MIN 0 0 0\nDOMAIN_MAX 0.5 0.5 0.5\n"))
    np.testing.assert_array_equal(a.domain_max, [0.5, 0.5, 0.5])
    img = random_image()
    np.testing.assert_array_equal(a.apply(img), b.apply(img))
    ramp = np.stack([np.linspace(0, 1, 16)] * 3, axis=1)
    c = load_lut(write_cube(tmp_path / "c.cube", ramp, "LUT_1D_INPUT_RANGE 0 0.5\n"))
    codes = every_code()
    out = c.apply(codes).astype(int)
    np.testing.assert_allclose(out, np.rint(np.minimum(codes / 127.5, 1) * 255), atol=1)


def _ref_tetrahedral(table: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The six-case textbook formula, one pixel at a time in float64 (independent of lut.py)."""
    n = table.shape[0]
    out = np.empty(rgb.shape)
    for k, px in enumerate(rgb.reshape(-1, 3).astype(float) / 255):
        t = px * (n - 1)
        i = np.minimum(np.floor(t), n - 2).astype(int)
        fr, fg, fb = t - i

        def c(dr, dg, db, i=i):
            return table[i[2] + db, i[1] + dg, i[0] + dr].astype(float)

        if fr > fg:
            if fg > fb:
                v = (1 - fr) * c(0, 0, 0) + (fr - fg) * c(1, 0, 0) + (fg - fb) * c(1, 1, 0) + fb * c(1, 1, 1)
            elif fr > fb:
                v = (1 - fr) * c(0, 0, 0) + (fr - fb) * c(1, 0, 0) + (fb - fg) * c(1, 0, 1) + fg * c(1, 1, 1)
            else:
                v = (1 - fb) * c(0, 0, 0) + (fb - fr) * c(0, 0, 1) + (fr - fg) * c(1, 0, 1) + fg * c(1, 1, 1)
        elif fb > fg:
            v = (1 - fb) * c(0, 0, 0) + (fb - fg) * c(0, 0, 1) + (fg - fr) * c(0, 1, 1) + fr * c(1, 1, 1)
        elif fb > fr:
            v = (1 - fg) * c(0, 0, 0) + (fg - fb) * c(0, 1, 0) + (fb - fr) * c(0, 1, 1) + fr * c(1, 1, 1)
        else:
            v = (1 - fg) * c(0, 0, 0) + (fg - fr) * c(0, 1, 0) + (fr - fb) * c(1, 1, 0) + fb * c(1, 1, 1)
        out.reshape(-1, 3)[k] = v
    return out


def _ref_trilinear(table: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    n = table.shape[0]
    out = np.empty(rgb.shape)
    for k, px in enumerate(rgb.reshape(-1, 3).astype(float) / 255):
        t = px * (n - 1)
        i = np.minimum(np.floor(t), n - 2).astype(int)
        f = t - i
        c = table[i[2] : i[2] + 2, i[1] : i[1] + 2, i[0] : i[0] + 2].astype(float)  # [b, g, r]
        c = c[0] * (1 - f[2]) + c[1] * f[2]
        c = c[0] * (1 - f[1]) + c[1] * f[1]
        out.reshape(-1, 3)[k] = c[0] * (1 - f[0]) + c[1] * f[0]
    return out


@pytest.mark.parametrize("interp,ref", [("tetrahedral", _ref_tetrahedral), ("trilinear", _ref_trilinear)])
def test_random_lut_matches_the_textbook_formula(tmp_path, interp, ref):
    table = RNG.uniform(-0.05, 1.05, (7, 7, 7, 3))  # overshoot is clipped on output
    lut = load_lut(write_cube(tmp_path / "rand.cube", table))
    img = random_image(40, 50)
    out = lut.apply(img, interpolation=interp).astype(int)
    expected = np.rint(np.clip(ref(lut.table, img), 0, 1) * 255).astype(int)
    diff = np.abs(out - expected)
    assert diff.max() <= 1  # float32 against float64 at a .5 boundary
    assert (diff == 0).mean() > 0.99
    np.testing.assert_allclose(lut.transform(img / 255.0, interp), ref(lut.table, img), atol=2e-6)


def test_tetrahedral_and_trilinear_differ_inside_cells(tmp_path):
    table = RNG.uniform(0, 1, (5, 5, 5, 3))
    lut = load_lut(write_cube(tmp_path / "rand.cube", table))
    img = random_image()
    assert (lut.apply(img, interpolation="tetrahedral") != lut.apply(img, interpolation="trilinear")).mean() > 0.5


def test_interpolations_agree_on_grid_points(tmp_path):
    n = 18  # 255 / (n - 1) = 15: codes 0, 15, ..., 255 fall on grid points
    table = RNG.uniform(0, 1, (n, n, n, 3))
    lut = load_lut(write_cube(tmp_path / "grid.cube", table))
    codes = RNG.integers(0, n, (500, 3))
    img = (codes * 15).astype(np.uint8).reshape(20, 25, 3)
    expected = np.rint(lut.table[codes[:, 2], codes[:, 1], codes[:, 0]] * 255).reshape(20, 25, 3)
    for interp in ("tetrahedral", "trilinear"):
        np.testing.assert_array_equal(lut.apply(img, interpolation=interp), expected)
        np.testing.assert_allclose(
            lut.transform(img / 255.0, interp), lut.table[codes[:, 2], codes[:, 1], codes[:, 0]].reshape(20, 25, 3),
            atol=1e-6,
        )


def test_interpolations_agree_on_a_linear_lut(tmp_path):
    m = np.array([[0.6, 0.3, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.5]])  # rows: out R, G, B
    r, g, b = grid(9)
    table = np.stack([r, g, b], axis=-1) @ m.T + 0.05
    lut = load_lut(write_cube(tmp_path / "lin.cube", table))
    img = random_image()
    expected = np.rint(np.clip(img / 255.0 @ m.T + 0.05, 0, 1) * 255)
    for interp in ("tetrahedral", "trilinear"):
        np.testing.assert_allclose(lut.apply(img, interpolation=interp), expected, atol=1)


def test_strength_mixes_graded_and_original(tmp_path):
    r, g, b = grid(5)
    lut = load_lut(write_cube(tmp_path / "swap.cube", np.stack([b, g, r], axis=-1)))
    img = random_image()
    np.testing.assert_array_equal(lut.apply(img, strength=0.0), img)
    full = lut.apply(img).astype(float)
    half = lut.apply(img, strength=0.5).astype(float)
    np.testing.assert_allclose(half, (img + full) / 2, atol=0.5 + 1e-9)
    quarter = lut.apply(img, strength=0.25).astype(float)
    np.testing.assert_allclose(quarter, 0.75 * img + 0.25 * full, atol=0.5 + 1e-9)
    with pytest.raises(ValueError):
        lut.apply(img, strength=1.5)
    ramp = np.stack([np.linspace(1.0, 0.0, 256)] * 3, axis=1)
    inv = load_lut(write_cube(tmp_path / "inv.cube", ramp))
    np.testing.assert_allclose(inv.apply(img, strength=0.5), 127.5, atol=0.5 + 1e-9)


def test_apply_keeps_any_shape_and_copes_with_views(tmp_path):
    r, g, b = grid(3)
    lut = load_lut(write_cube(tmp_path / "swap.cube", np.stack([g, b, r], axis=-1)))
    img = random_image(30, 40)
    for x in (img, img[:, ::2], img.reshape(-1, 3), img.reshape(2, 15, 40, 3), img[5:9, 3:30]):
        out = lut.apply(x)
        assert out.shape == x.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, x[..., [1, 2, 0]])
    before = img.copy()
    lut.apply(img, strength=0.3)
    np.testing.assert_array_equal(img, before)  # the input is never written
    with pytest.raises(ValueError):
        lut.apply(img.astype(np.float32))
    with pytest.raises(ValueError):
        lut.apply(img, interpolation="cubic")


def test_two_threads_share_one_table(tmp_path, monkeypatch):
    lut = load_lut(write_cube(tmp_path / "rand.cube", RNG.uniform(0, 1, (6, 6, 6, 3))))
    img = random_image()
    bakes: list[str] = []
    bake = Lut._bake_3d

    def counting_bake(self, interpolation):
        bakes.append(interpolation)
        return bake(self, interpolation)

    monkeypatch.setattr(Lut, "_bake_3d", counting_bake)
    results: list[np.ndarray] = []
    tables: list[np.ndarray] = []

    def work():
        results.append(lut.apply(img))
        tables.append(lut.baked())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and tables[0] is tables[1]
    assert bakes == ["tetrahedral"]  # built once, the other thread waited for it
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], lut.apply(img))


def test_a_baked_table_is_kept_on_disk_and_read_back(tmp_path, monkeypatch):
    """With a cache folder the table is built once per look and machine: a second Lut of the
    same file reads it back (same numbers), a damaged file is built again, another look
    gets its own file, and apply() gives the same frames with or without the cache."""
    cube = write_cube(tmp_path / "rand.cube", RNG.uniform(0, 1, (5, 5, 5, 3)))
    img = random_image()
    plain = load_lut(cube).apply(img)
    bakes: list[str] = []
    bake = Lut._bake_3d
    monkeypatch.setattr(Lut, "_bake_3d", lambda self, i: bakes.append(i) or bake(self, i))

    def cached(path: Path) -> Lut:
        lut = load_lut(path)
        lut.cache_dir = tmp_path / "cache"
        return lut

    first, second = cached(cube), cached(cube)
    np.testing.assert_array_equal(first.apply(img), plain)
    (stored,) = (tmp_path / "cache").glob("*.npy")
    np.testing.assert_array_equal(second.apply(img), plain)
    assert bakes == ["tetrahedral"] and isinstance(second.baked(), np.memmap)
    stored.write_bytes(stored.read_bytes()[:1000])  # damaged: built again, and rewritten
    np.testing.assert_array_equal(cached(cube).apply(img), plain)
    assert bakes == ["tetrahedral"] * 2 and stored.stat().st_size > 1 << 26
    other = cached(write_cube(tmp_path / "other.cube", RNG.uniform(0, 1, (5, 5, 5, 3))))
    other.apply(img)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 and not list((tmp_path / "cache").glob(".*"))


def test_pickles_without_its_tables(tmp_path):
    lut = load_lut(write_cube(tmp_path / "swap.cube", np.stack(grid(3)[::-1], axis=-1)))
    img = random_image()
    graded = lut.apply(img)
    copy = pickle.loads(pickle.dumps(lut))
    assert len(pickle.dumps(lut)) < 10_000  # the 64 MiB table stays behind
    assert (copy.title, copy.kind, copy.size, copy.path) == (lut.title, lut.kind, lut.size, lut.path)
    np.testing.assert_array_equal(copy.apply(img), graded)


# ---------------------------------------------------------------- the file format


def test_header_title_comments_and_line_endings(tmp_path):
    body = cube_text(identity_table(2)).replace("LUT_3D_SIZE 2\n", "")
    text = (
        "# made by hand\r\n"
        'TITLE "Warm #2 look"\r\n'
        "\r\n"
        "LUT_IN_VIDEO_RANGE\r\n"  # another exporter's keyword: ignored
        "LUT_3D_SIZE 2   # cube\r\n"
        "DOMAIN_MIN 0.0 0.0 0.0\r\n"
        "DOMAIN_MAX 1.0 1.0 1.0\r\n"
        "\r\n# the table\r\n" + body.replace("\n", "\r\n") + "\r\n\r\n# end\r\n"
    )
    p = tmp_path / "Look.CUBE"
    p.write_bytes(("\ufeff" + text).encode("utf-8"))
    lut = load_lut(p)
    assert (lut.title, lut.kind, lut.size) == ("Warm #2 look", "3d", 2)
    np.testing.assert_array_equal(lut.table, identity_table(2))
    assert "Warm #2 look" in repr(lut)


def test_red_changes_fastest_in_the_file(tmp_path):
    rows = ["LUT_3D_SIZE 2"] + [f"{k / 10} 0 0" for k in range(8)]
    lut = load_lut(_write(tmp_path, "\n".join(rows)))
    # row k is (r, g, b) = (k & 1, k >> 1 & 1, k >> 2 & 1)
    assert lut.table[0, 0, 1, 0] == pytest.approx(0.1)  # r = 1
    assert lut.table[0, 1, 0, 0] == pytest.approx(0.2)  # g = 1
    assert lut.table[1, 0, 0, 0] == pytest.approx(0.4)  # b = 1
    assert lut.transform(np.array([1.0, 0.0, 0.0]))[0] == pytest.approx(0.1)


@pytest.mark.parametrize("n", [2, 65])
def test_3d_size_limits_accepted(tmp_path, n):
    lut = load_lut(write_cube(tmp_path / "x.cube", identity_table(n)))
    assert lut.size == n and lut.table.shape == (n, n, n, 3)


def test_big_1d_lut(tmp_path):
    ramp = np.stack([np.linspace(0, 1, 65536)] * 3, axis=1)
    lut = load_lut(write_cube(tmp_path / "big.cube", ramp))
    img = every_code()
    np.testing.assert_array_equal(lut.apply(img), img)


def _write(tmp_path: Path, text: str, name: str = "bad.cube") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(path: Path) -> str:
    with pytest.raises(LutError) as info:
        load_lut(path)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, InputError)
    return msg


ROWS8 = "\n".join(["0 0 0"] * 8)

MALFORMED = {
    # name: (text, line named, words in the message)
    "too few rows": ("LUT_3D_SIZE 2\n" + "\n".join(["0 0 0"] * 7) + "\n", 8, ["7 rows", "needs 8"]),
    "too many rows": ("LUT_3D_SIZE 2\n" + ROWS8 + "\n1 1 1\n", 10, ["more rows"]),
    "value out of range": ("LUT_3D_SIZE 2\n0 0 0\n0 0 0\n0 7.5 0\n" + "\n".join(["0 0 0"] * 5), 4, ["7.5", "outside"]),
    "not a number": ("LUT_3D_SIZE 2\n0 0 0\n0 x 0\n" + "\n".join(["0 0 0"] * 6), 3, ["expected a table row"]),
    "nan": ("LUT_3D_SIZE 2\nnan 0 0\n" + "\n".join(["0 0 0"] * 7), 2, ["expected a table row"]),
    "overflow": ("LUT_3D_SIZE 2\n1e999 0 0\n" + "\n".join(["0 0 0"] * 7), 2, ["outside"]),
    "two numbers": ("LUT_3D_SIZE 2\n0 0\n" + ROWS8, 2, ["expected a table row"]),
    "huge size": ("# big\nLUT_3D_SIZE 100000000000\n" + ROWS8, 2, ["LUT_3D_SIZE", "outside 2..65"]),
    "size 1": ("LUT_3D_SIZE 1\n0 0 0\n", 1, ["outside 2..65"]),
    "1d too big": ("LUT_1D_SIZE 65537\n0 0 0\n", 1, ["outside 2..65536"]),
    "size not a number": ("LUT_3D_SIZE 3.5\n" + ROWS8, 1, ["whole number"]),
    "missing size": ("TITLE \"x\"\n" + ROWS8, 2, ["before any LUT_3D_SIZE"]),
    "no size at all": ("# nothing\n", 1, ["no LUT_3D_SIZE"]),
    "both 1d and 3d": ("LUT_1D_SIZE 2\nLUT_3D_SIZE 2\n" + ROWS8, 2, ["both LUT_1D_SIZE and LUT_3D_SIZE"]),
    "size twice": ("LUT_3D_SIZE 2\nLUT_3D_SIZE 2\n" + ROWS8, 2, ["twice", "line 1"]),
    "keyword after rows": ("LUT_3D_SIZE 2\n" + ROWS8 + "\nDOMAIN_MIN 0 0 0\n", 10, ["after the table"]),
    "domain inverted": ("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1 0 1\n" + ROWS8, 3, ["not below"]),
    "domain short": ("LUT_3D_SIZE 2\nDOMAIN_MAX 1 1\n" + ROWS8, 2, ["needs 3 numbers"]),
    "title unclosed": ('TITLE "abc\nLUT_3D_SIZE 2\n' + ROWS8, 1, ["unclosed"]),
    "no rows": ("LUT_3D_SIZE 2\n", 1, ["no table rows"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_give_one_line_with_file_and_line(tmp_path, case):
    text, line, words = MALFORMED[case]
    p = _write(tmp_path, text)
    msg = _error(p)
    assert msg.startswith(f"{p}:{line}: "), msg
    for w in words:
        assert w in msg, msg


def test_unreadable_files(tmp_path):
    assert "does not exist" in _error(tmp_path / "missing.cube")
    (tmp_path / "dir.cube").mkdir()
    assert "is not a file" in _error(tmp_path / "dir.cube")
    assert "not a .cube file" in _error(_write(tmp_path, "LUT_3D_SIZE 2\n" + ROWS8, "look.3dl"))
    p = tmp_path / "bin.cube"
    p.write_bytes(b"LUT_3D_SIZE 2\n\xff\xfe\x00garbage\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:2: ") and "UTF-8" in msg


# ---------------------------------------------------------------- fuzzing

# deadline and too_slow are wall-clock checks: off, so a busy or slow machine is not a failure
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_lut_error(text: str) -> Lut | None:
    try:
        lut = parse_cube(text, "fuzz.cube")
    except LutError as e:
        assert str(e).startswith("fuzz.cube:") and "\n" not in str(e)
        return None
    # whatever parses is a usable LUT
    out = lut.transform(np.array([[0.0, 0.5, 1.0], [0.2, 0.9, 0.4]]))
    assert out.shape == (2, 3) and np.isfinite(out).all()
    return lut


@_FUZZ
@given(st.text())
def test_fuzz_any_text(text):
    _parse_or_lut_error(text)


_LINES = st.one_of(
    st.sampled_from([
        "LUT_3D_SIZE 2", "LUT_3D_SIZE 3", "LUT_1D_SIZE 2", "LUT_1D_SIZE 4", "LUT_3D_SIZE 0", "LUT_3D_SIZE -2",
        "LUT_3D_SIZE 99999999999999999999", "DOMAIN_MIN 0 0 0", "DOMAIN_MAX 1 1 1", "DOMAIN_MAX 0 0 0",
        "DOMAIN_MIN -1e308 0 0", "DOMAIN_MAX 1e308 1 1", "DOMAIN_MAX inf 1 1", "LUT_3D_INPUT_RANGE 0 1",
        "LUT_1D_INPUT_RANGE 1 0", 'TITLE "a"', "TITLE", 'TITLE "', "#", "# c", "", "   ", "0 0 0", "1 1 1",
        "0.5 0.25 1", "-0.5 2 1e-3", "1e999 0 0", "nan 0 0", ".5 .5 .5", "1. 1. 1.", "0 0 0 # c", "0 0",
        "0 0 0 0", "+1 -0 +0", "LUT_IN_VIDEO_RANGE", "\t0\t0\t0", "0\x0b0 0", "١ ٢ ٣", "1_0 0 0",
    ]),
    st.text(max_size=12),
)


@_FUZZ
@given(st.lists(_LINES, max_size=40), st.sampled_from(["\n", "\r\n", "\r"]))
def test_fuzz_cube_like_lines(lines, newline):
    _parse_or_lut_error(newline.join(lines))


@_FUZZ
@given(st.integers(2, 4), st.data())
def test_fuzz_mutated_valid_file(n, data):
    lines = cube_text(RNG.uniform(0, 1, (n, n, n, 3))).splitlines()
    k = data.draw(st.integers(0, len(lines) - 1))
    lines[k] = data.draw(_LINES)
    lut = _parse_or_lut_error("\n".join(lines))
    if lut is not None:
        assert lut.table.shape[-1] == 3


@settings(max_examples=100, deadline=None,  # no wall-clock checks: a busy machine is not a failure
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_bytes_through_load_lut(tmp_path, blob):
    p = tmp_path / "fuzz.cube"
    p.write_bytes(b"LUT_3D_SIZE 2\n" + blob)
    try:
        load_lut(p)
    except LutError as e:
        assert "\n" not in str(e)
