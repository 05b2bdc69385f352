"""Colour grading with .cube LUTs (Adobe/IRIDAS format, as Resolve and most editors export).

    lut = load_lut("look.cube")                   # LutError on any malformed file
    graded = lut.apply(rgb, strength=0.8)         # (H, W, 3) uint8 -> same shape, uint8

Colour space: facetalk's frames are gamma-encoded BT.709 R'G'B' code values, as decoded
from the video (media.video). A .cube "look" for Rec.709 video is defined on exactly
those code values, so the LUT is applied to R'G'B' / 255 without linearising, and its
output is read as R'G'B' / 255 again (clipped to 0..1 and rounded to 8 bits).

Speed: the input is 8-bit, so a 3D LUT is evaluated once per interpolation for all
256^3 inputs (tetrahedral or trilinear, the exact formula, in float32) into a table of
packed 8-bit outputs (64 MiB), and a frame is then one gather with the index
r | g << 8 | b << 16: exact for 8-bit input, not an approximation. The table is built
on first use (a second or two) and kept on the Lut; apply() is thread-safe. A 1D LUT is
three 256-entry tables applied with cv2.LUT.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..atomic import replacing
from ..errors import InputError

Interpolation = Literal["tetrahedral", "trilinear"]
INTERPOLATIONS: tuple[str, ...] = ("tetrahedral", "trilinear")

_BAKE_VERSION = 1  # bump when the baked table's layout or arithmetic changes (invalidates caches)
_BAND_PIXELS = 1 << 15  # pixels per band of apply(): its 0.5 MB of scratch stays in L2
_CACHE_KEEP = 8  # baked tables (64 MiB each) kept in a cache folder

MAX_3D_SIZE = 65  # the largest grid editors export; 65^3 rows is already 275k lines
MAX_1D_SIZE = 65536  # Adobe's limit for LUT_1D_SIZE
# Table values a display-referred look may hold. Exporters overshoot 0..1 a little
# (1.0002, -0.0001: clipped on output); values far outside mean a scene-referred or
# HDR transform, which makes no sense on 8-bit Rec.709 frames.
VALUE_MIN, VALUE_MAX = -1.0, 2.0
_MAX_BYTES = 64 << 20  # a 65^3 .cube is ~10 MB; far larger is not a LUT

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
# ASCII only: Python's \d would also take other scripts' digits
_ROW = re.compile(rf"\s*({_NUM})\s+({_NUM})\s+({_NUM})\s*", re.ASCII)
_NUMBER = re.compile(_NUM, re.ASCII)
_KEYWORD = re.compile(r"[A-Z][A-Z0-9_]*", re.ASCII)  # .cube keywords are upper case


class LutError(InputError):
    """A .cube file that is missing, unreadable or malformed; the message names the file
    and, where there is one, the line."""


class Lut:
    """A parsed .cube LUT.

    title: the TITLE, or None.  kind: "1d" or "3d".  size: entries per axis.
    table: float32, (size, size, size, 3) indexed [b, g, r] for 3D (the file's order: red
    changes fastest), (size, 3) for 1D.  domain_min, domain_max: float64 (3,), the input
    values that map to the first and last entries (inputs outside are clamped).
    path: the file it came from, or None.
    """

    def __init__(
        self,
        table: np.ndarray,
        kind: Literal["1d", "3d"],
        title: str | None = None,
        domain_min: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
        domain_max: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0),
        path: str | Path | None = None,
    ) -> None:
        table = np.array(table, dtype=np.float32)  # a copy: it is made read-only below
        if kind == "3d":
            n = table.shape[0]
            if table.shape != (n, n, n, 3) or n < 2:
                raise ValueError(f"3D LUT table must be (n, n, n, 3) with n >= 2, got {table.shape}")
        elif kind == "1d":
            n = table.shape[0]
            if table.shape != (n, 3) or n < 2:
                raise ValueError(f"1D LUT table must be (n, 3) with n >= 2, got {table.shape}")
        else:
            raise ValueError(f"kind must be '1d' or '3d', got {kind!r}")
        lo = np.asarray(domain_min, dtype=np.float64).reshape(3)
        hi = np.asarray(domain_max, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise ValueError(f"domain must be finite with min < max, got {lo} and {hi}")
        self.table = table
        self.table.setflags(write=False)  # the baked tables are derived from it
        self.kind = kind
        self.size = int(n)
        self.title = title
        self.domain_min = lo
        self.domain_max = hi
        self.path = Path(path) if path is not None else None
        self._baked: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread scratch arrays of apply()
        # where built tables are kept between runs (None: rebuilt by every process); see baked()
        self.cache_dir: Path | None = None

    def __getstate__(self) -> dict:
        # Picklable (for worker processes) without the lock or the 64 MiB tables.
        return {k: v for k, v in self.__dict__.items() if k not in ("_baked", "_lock", "_local")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._baked = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def __repr__(self) -> str:
        name = f" {self.title!r}" if self.title else ""
        return f"<Lut{name} {self.kind} size {self.size}>"

    def transform(self, rgb: np.ndarray, interpolation: Interpolation = "tetrahedral") -> np.ndarray:
        """The LUT's output for float R'G'B' in (..., 3) (0..1 is the domain's default
        range), as float32 of the same shape, unclipped. What apply() rounds to 8 bits."""
        _check_interpolation(interpolation)
        x = np.asarray(rgb, dtype=np.float32)
        if x.shape[-1:] != (3,):
            raise ValueError(f"rgb must have 3 channels in its last axis, got shape {x.shape}")
        pos = [self._position(x[..., c], c) for c in range(3)]
        if self.kind == "1d":
            out = np.empty(x.shape, np.float32)
            for c in range(3):
                i, f = pos[c]
                col = self.table[:, c]
                out[..., c] = col[i] * (1 - f) + col[i + 1] * f
            return out
        interp = _tetrahedral if interpolation == "tetrahedral" else _trilinear
        return interp(self.table, pos[0], pos[1], pos[2])

    def apply(
        self, rgb: np.ndarray, strength: float = 1.0, interpolation: Interpolation = "tetrahedral"
    ) -> np.ndarray:
        """Grade 8-bit R'G'B' frames: (..., 3) uint8 in, a new array of the same shape out.

        strength: 0..1, the mix of graded and original (0 gives the input back, 0.5 is
        halfway, rounded). interpolation: "tetrahedral" (what Resolve uses) or "trilinear";
        a 1D LUT interpolates linearly either way. Thread-safe. The first call for a 3D
        LUT and an interpolation builds its 256^3 table (about a second or two).
        """
        _check_interpolation(interpolation)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be within 0..1, got {strength}")
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim < 2 or rgb.shape[-1] != 3:
            raise ValueError(f"apply takes (..., 3) uint8 R'G'B', got {rgb.shape} {rgb.dtype}")
        if strength == 0.0:
            return rgb.copy()
        # OpenCV wants an image: (rows, cols, 3), contiguous.
        img = np.ascontiguousarray(rgb.reshape(rgb.shape[0] if rgb.ndim == 3 else 1, -1, 3))
        if self.kind == "1d":
            graded = cv2.LUT(img, self._baked_1d())
        else:
            table = self.baked(interpolation)
            graded = np.empty_like(img)
            # In bands of rows whose scratch arrays (kept per thread) stay in the CPU's
            # cache: whole-frame temporaries (40 MB at 1080p) would go through main memory,
            # which two render threads and the encoder are already using.
            rows = max(1, _BAND_PIXELS // img.shape[1])
            rgba8, index, out = self._scratch((rows, img.shape[1]))
            for y in range(0, img.shape[0], rows):
                band = img[y : y + rows]
                n = band.shape[0]
                cv2.cvtColor(band, cv2.COLOR_RGB2RGBA, dst=rgba8[:n])
                rgba = rgba8[:n].view("<u4")[..., 0]  # a<<24 | b<<16 | g<<8 | r
                np.bitwise_and(rgba, 0xFFFFFF, out=index[:n], casting="unsafe")  # r | g << 8 | b << 16
                np.take(table, index[:n], out=out[:n], mode="clip")  # always in range: "clip" skips the check
                cv2.cvtColor(out[:n].view(np.uint8).reshape(n, -1, 4), cv2.COLOR_RGBA2RGB, dst=graded[y : y + n])
        if strength < 1.0:
            graded = cv2.addWeighted(graded, float(strength), img, 1.0 - float(strength), 0.0)
        return graded.reshape(rgb.shape)

    def _scratch(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This thread's (RGBA bytes, gather index, gathered words) arrays for frames of shape."""
        held = getattr(self._local, "scratch", None)
        if held is None or held[1].shape != shape:
            held = (np.empty((*shape, 4), np.uint8), np.empty(shape, np.intp), np.empty(shape, "<u4"))
            self._local.scratch = held
        return held

    def baked(self, interpolation: Interpolation = "tetrahedral") -> np.ndarray:
        """The 3D LUT over all 8-bit inputs: (2^24,) little-endian uint32, entry
        r | g << 8 | b << 16 holding the output bytes R, G, B, 0. Built once, then shared."""
        _check_interpolation(interpolation)
        if self.kind != "3d":
            raise ValueError("baked() is for 3D LUTs; a 1D LUT is applied with cv2.LUT")
        table = self._baked.get(interpolation)
        if table is None:
            with self._lock:  # two threads finishing frames must not both build it
                table = self._baked.get(interpolation)
                if table is None:
                    table = self._cached_bake(interpolation)
                    self._baked[interpolation] = table
        return table

    def fingerprint(self, interpolation: str) -> str:
        """sha256 of what a baked table depends on: the grid, the domain, the method."""
        import hashlib

        h = hashlib.sha256(f"{_BAKE_VERSION}:{self.kind}:{interpolation}:".encode())
        for a in (self.table, self.domain_min, self.domain_max):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def _cached_bake(self, interpolation: str) -> np.ndarray:
        """The baked table from cache_dir when an earlier run built it (memory-mapped: a
        frame reads only the colours it holds), else built and stored there. A colorist
        uses the same few looks again and again; building one costs a second of CPU per
        render, reading it back ~nothing. The cache keeps the _CACHE_KEEP newest tables."""
        if self.cache_dir is None:
            return self._bake_3d(interpolation)
        path = Path(self.cache_dir) / f"{self.fingerprint(interpolation)[:32]}.npy"
        try:
            table = np.load(path, mmap_mode="r")
            if table.shape == (1 << 24,) and table.dtype == np.dtype("<u4"):
                os.utime(path)  # recently used: kept by the clean-up below
                return table
        except (OSError, ValueError):
            pass  # not there yet, or damaged: build it again
        table = self._bake_3d(interpolation)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(path) as tmp, open(tmp, "wb") as f:  # whole or not at all: another process may read it
                np.save(f, table)
            for old in sorted(path.parent.glob("*.npy"), key=lambda q: q.stat().st_mtime)[:-_CACHE_KEEP]:
                old.unlink(missing_ok=True)
        except OSError:  # only a cache: the table is built either way
            pass
        return table

    def _position(self, x: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Input values of channel c -> (lower grid index, fraction 0..1 towards the next)."""
        n = self.size
        lo, hi = self.domain_min[c], self.domain_max[c]
        t = np.clip((x.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * (n - 1)
        i = np.minimum(np.floor(t), n - 2).astype(np.intp)
        return i, (t - i).astype(np.float32)

    def _baked_1d(self) -> np.ndarray:
        table = self._baked.get("1d")
        if table is None:
            codes = np.repeat(np.arange(256, dtype=np.float32)[:, None] / 255.0, 3, axis=1)
            out = _to_uint8(self.transform(codes))  # (256, 3); no lock: cheap and idempotent
            table = self._baked.setdefault("1d", out.reshape(1, 256, 3))
        return table

    def _bake_3d(self, interpolation: str) -> np.ndarray:
        codes = np.arange(256) / 255.0
        (ir, fr), (ig, fg), (ib, fb) = (self._position(codes, c) for c in range(3))
        table = np.empty(1 << 24, dtype="<u4")
        out = table.view(np.uint8).reshape(256, 256, 256, 4)  # [b, g, r, channel]
        out[..., 3] = 0
        step = 16  # blue planes per chunk: 1M points, ~100 MB of temporaries
        if interpolation == "trilinear":
            # Separable: along red, then green over the whole grid, then blue per chunk
            # (the same numbers as _trilinear's eight corners, a fifth of the work).
            t = self.table
            a = t[:, :, ir] * (1 - fr)[:, None] + t[:, :, ir + 1] * fr[:, None]  # (n, n, 256, 3)
            a = a[:, ig] * (1 - fg)[:, None, None] + a[:, ig + 1] * fg[:, None, None]  # (n, 256, 256, 3)
            for b0 in range(0, 256, step):
                sl = slice(b0, b0 + step)
                w = fb[sl, None, None, None]
                out[sl, :, :, :3] = _to_uint8(a[ib[sl]] * (1 - w) + a[ib[sl] + 1] * w)
        else:
            for b0 in range(0, 256, step):
                sl = slice(b0, b0 + step)
                # grid of (step, 256, 256) points by broadcasting the per-axis positions
                rgb = _tetrahedral(
                    self.table,
                    (ir[None, None, :], fr[None, None, :]),
                    (ig[None, :, None], fg[None, :, None]),
                    (ib[sl, None, None], fb[sl, None, None]),
                )
                out[sl, :, :, :3] = _to_uint8(rgb)
        table.setflags(write=False)
        return table


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gather(flat: np.ndarray, index: np.ndarray) -> np.ndarray:
    """flat (n^3, 3) float32 rows at index (any shape) -> (*index.shape, 3)."""
    return np.take(flat, index, axis=0)  # ~6x faster than flat[index] for row gathers


def _tetrahedral(table: np.ndarray, pr, pg, pb) -> np.ndarray:
    """Tetrahedral interpolation of the 3D table (indexed [b, g, r]) at positions given
    per axis as (lower index, fraction) arrays that broadcast together.

    The unit cube of a grid cell is cut into six tetrahedra along its grey diagonal; the
    one holding the point is picked by the order of the fractions, and the point is
    weighted between its four corners: base, base + the axis of the largest fraction,
    base + all but the axis of the smallest, base + (1, 1, 1). Exact on the grid points
    and for any LUT linear in R, G, B.
    """
    n = table.shape[0]
    flat = table.reshape(-1, 3)
    (ir, fr), (ig, fg), (ib, fb) = pr, pg, pb
    stride_r, stride_g, stride_b = 1, n, n * n
    diag = stride_r + stride_g + stride_b
    base = ib * stride_b + ig * stride_g + ir * stride_r
    fmax = np.maximum(np.maximum(fr, fg), fb)
    fmin = np.minimum(np.minimum(fr, fg), fb)
    fmid = fr + fg + fb - fmax - fmin
    # stride of the axis with the largest / smallest fraction (ties give zero weights)
    r_max = (fr >= fg) & (fr >= fb)
    s_max = np.where(r_max, stride_r, np.where(fg >= fb, stride_g, stride_b))
    r_min = (fr < fg) & (fr < fb)  # strict, so that an all-equal point picks distinct axes
    s_min = np.where(r_min, stride_r, np.where(fg < fb, stride_g, stride_b))
    out = _gather(flat, base) * (1 - fmax)[..., None]
    out += _gather(flat, base + s_max) * (fmax - fmid)[..., None]
    out += _gather(flat, base + diag - s_min) * (fmid - fmin)[..., None]
    out += _gather(flat, base + diag) * fmin[..., None]
    return out


def _trilinear(table: np.ndarray, pr, pg, pb) -> np.ndarray:
    """Trilinear interpolation (the eight corners of the cell, weighted by volume);
    positions as for _tetrahedral."""
    n = table.shape[0]
    flat = table.reshape(-1, 3)
    (ir, fr), (ig, fg), (ib, fb) = pr, pg, pb
    base = ib * (n * n) + ig * n + ir
    out = None
    for db, wb in ((0, 1 - fb), (n * n, fb)):
        for dg, wg in ((0, 1 - fg), (n, fg)):
            wbg = wb * wg
            for dr, wr in ((0, 1 - fr), (1, fr)):
                term = _gather(flat, base + (db + dg + dr)) * (wbg * wr)[..., None]
                out = term if out is None else out + term
    assert out is not None
    return out


# ---------------------------------------------------------------- parsing


def load_lut(path: str | Path) -> Lut:
    """Read a .cube file (1D or 3D). Raises LutError with the file and line at fault.

    Accepted: TITLE "...", LUT_3D_SIZE 2..65 or LUT_1D_SIZE 2..65536, DOMAIN_MIN and
    DOMAIN_MAX (three values each, min < max), Resolve's LUT_1D_INPUT_RANGE /
    LUT_3D_INPUT_RANGE (min max for all channels), comments (#) and blank lines, then
    the rows "R G B" with red changing fastest. Other keywords in the header are
    ignored, as Resolve and OCIO do. Rejected: a file with both a 1D and a 3D table
    (Resolve's shaper + cube form), a count of rows other than the size says, values that
    are not numbers or outside -1..2 (not a display-referred look).
    """
    p = Path(path)
    if p.suffix.lower() != ".cube":
        raise LutError(f"LUT {p} is not a .cube file: export the look as .cube (Adobe/Resolve format)")
    try:
        if not p.is_file():
            what = "does not exist" if not p.exists() else "is not a file"
            raise LutError(f"LUT file {p} {what}: check the path")
        if p.stat().st_size > _MAX_BYTES:
            raise LutError(f"LUT {p} is larger than {_MAX_BYTES >> 20} MB: not a .cube LUT facetalk can use")
        data = p.read_bytes()
    except OSError as e:
        raise LutError(f"cannot read LUT {p}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LutError(f"{p}:{line}: not UTF-8 text: is {p.name} really a .cube LUT?") from None
    return parse_cube(text, p)


def parse_cube(text: str, path: str | Path = "<text>") -> Lut:
    """Parse the text of a .cube file; `path` names it in errors. See load_lut."""
    return _CubeParser(text, Path(path)).parse()


class _CubeParser:
    def __init__(self, text: str, path: Path) -> None:
        self.lines = text.splitlines()
        self.path = path
        self.title: str | None = None
        self.size_1d: int | None = None
        self.size_3d: int | None = None
        self.domain: dict[str, tuple[float, float, float]] = {}
        self.seen: dict[str, int] = {}  # keyword -> line number

    def error(self, line: int, problem: str) -> LutError:
        return LutError(f"{self.path}:{line}: {problem}")

    def parse(self) -> Lut:
        rows: list[tuple[str, str, str]] = []
        first_row_line = 0
        row_lines: list[int] = []
        expected: int | None = None
        for no, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("TITLE"):
                self.keyword_line(no, line, bool(rows))
                continue
            line = line.split("#", 1)[0].strip()  # a trailing comment
            m = _ROW.fullmatch(line)
            if m is None:
                self.keyword_line(no, line, bool(rows))
                continue
            if expected is None:
                expected = self.expected_rows(no)
                first_row_line = no
            if len(rows) == expected:
                raise self.error(
                    no, f"more rows than {self.size_keyword()} {self.size} needs ({expected}): "
                        "the size line or the table is wrong")
            rows.append(m.groups())
            row_lines.append(no)
        end = max(1, len(self.lines))
        if expected is None:
            if self.size_3d is None and self.size_1d is None:
                raise self.error(end, "no LUT_3D_SIZE or LUT_1D_SIZE line: not a .cube LUT")
            raise self.error(end, f"no table rows after {self.size_keyword()}: the file is cut off")
        if len(rows) < expected:
            raise self.error(
                end,
                f"{len(rows)} rows of table data, {self.size_keyword()} {self.size} needs {expected}: "
                "the file is cut off or the size line is wrong")
        values = np.array(rows, dtype=np.float64)  # the regex admits only numbers
        self.check_values(values, row_lines, first_row_line)
        lo, hi = self.domain_bounds()
        if self.size_3d is not None:
            n = self.size_3d
            table = values.reshape(n, n, n, 3)  # rows: red fastest, so [b, g, r]
            return Lut(table, "3d", self.title, lo, hi, self.path)
        return Lut(values, "1d", self.title, lo, hi, self.path)

    @property
    def size(self) -> int:
        return self.size_3d if self.size_3d is not None else (self.size_1d or 0)

    def size_keyword(self) -> str:
        return "LUT_3D_SIZE" if self.size_3d is not None else "LUT_1D_SIZE"

    def expected_rows(self, no: int) -> int:
        if self.size_3d is None and self.size_1d is None:
            raise self.error(no, "table data before any LUT_3D_SIZE or LUT_1D_SIZE line: add the size line")
        return self.size_3d**3 if self.size_3d is not None else int(self.size_1d or 0)

    def keyword_line(self, no: int, line: str, after_rows: bool) -> None:
        parts = line.split(None, 1)
        key = parts[0]
        rest = parts[1] if len(parts) > 1 else ""
        if _KEYWORD.fullmatch(key) is None:
            raise self.error(no, f"expected a table row of three numbers (R G B) or a keyword, got {_clip(line)!r}")
        known = key in ("TITLE", "LUT_1D_SIZE", "LUT_3D_SIZE", "DOMAIN_MIN", "DOMAIN_MAX",
                        "LUT_1D_INPUT_RANGE", "LUT_3D_INPUT_RANGE")
        if after_rows:
            raise self.error(no, f"{_clip(key)} after the table rows: keywords belong before the table")
        if not known:
            return  # other exporters' keywords (LUT_IN_VIDEO_RANGE, ...): no effect here
        if key in self.seen:
            raise self.error(no, f"{key} given twice (first on line {self.seen[key]})")
        self.seen[key] = no
        if key == "TITLE":
            self.title = self.parse_title(no, rest)
        elif key in ("LUT_1D_SIZE", "LUT_3D_SIZE"):
            self.parse_size(no, key, rest)
        elif key in ("DOMAIN_MIN", "DOMAIN_MAX"):
            vals = self.numbers(no, key, rest, 3)
            self.domain[key] = (vals[0], vals[1], vals[2])
        else:  # LUT_nD_INPUT_RANGE min max
            lo, hi = self.numbers(no, key, rest, 2)
            self.domain[key] = (lo, hi, 0.0)

    def parse_title(self, no: int, rest: str) -> str:
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == rest[-1] == '"':
            return rest[1:-1]
        if rest.startswith('"'):
            raise self.error(no, 'TITLE with an unclosed quote: write TITLE "name"')
        return rest

    def parse_size(self, no: int, key: str, rest: str) -> None:
        other = "LUT_3D_SIZE" if key == "LUT_1D_SIZE" else "LUT_1D_SIZE"
        if other in self.seen:
            raise self.error(
                no, "both LUT_1D_SIZE and LUT_3D_SIZE: a 1D shaper with a 3D cube is not supported; "
                    "export a plain 3D (or 1D) LUT")
        limit = MAX_3D_SIZE if key == "LUT_3D_SIZE" else MAX_1D_SIZE
        token = rest.strip()
        if not token.isdigit() or not token.isascii():
            raise self.error(no, f"{key} must be a whole number 2..{limit}, got {_clip(token)!r}")
        n = int(token)
        if not 2 <= n <= limit:
            raise self.error(no, f"{key} {_clip(token)} outside 2..{limit}")
        if key == "LUT_3D_SIZE":
            self.size_3d = n
        else:
            self.size_1d = n

    def numbers(self, no: int, key: str, rest: str, count: int) -> list[float]:
        tokens = rest.split()
        if len(tokens) != count or not all(_NUMBER.fullmatch(t) for t in tokens):
            raise self.error(no, f"{key} needs {count} numbers, got {_clip(rest)!r}")
        vals = [float(t) for t in tokens]
        if not all(math.isfinite(v) for v in vals):
            raise self.error(no, f"{key} values must be finite, got {_clip(rest)!r}")
        return vals

    def domain_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.zeros(3)
        hi = np.ones(3)
        rng = "LUT_3D_INPUT_RANGE" if self.size_3d is not None else "LUT_1D_INPUT_RANGE"
        if rng in self.domain:
            lo[:] = self.domain[rng][0]
            hi[:] = self.domain[rng][1]
        if "DOMAIN_MIN" in self.domain:
            lo = np.array(self.domain["DOMAIN_MIN"])
        if "DOMAIN_MAX" in self.domain:
            hi = np.array(self.domain["DOMAIN_MAX"])
        if not all(math.isfinite(h - l) for l, h in zip(lo.tolist(), hi.tolist())):
            no = max(self.seen[k] for k in ("DOMAIN_MIN", "DOMAIN_MAX", rng) if k in self.seen)
            raise self.error(no, f"domain {_fmt(lo)} to {_fmt(hi)} is too wide to use")
        if not np.all(lo < hi):
            keys = [k for k in ("DOMAIN_MIN", "DOMAIN_MAX", rng) if k in self.seen]
            no = max(self.seen[k] for k in keys) if keys else 1
            raise self.error(no, f"domain minimum {_fmt(lo)} not below maximum {_fmt(hi)} in every channel")
        return lo, hi

    def check_values(self, values: np.ndarray, row_lines: list[int], first: int) -> None:
        bad = ~np.isfinite(values) | (values < VALUE_MIN) | (values > VALUE_MAX)
        if bad.any():
            k = int(np.argmax(bad.any(axis=1)))
            v = values[k][bad[k]][0]
            raise self.error(
                row_lines[k],
                f"value {v:g} outside {VALUE_MIN:g}..{VALUE_MAX:g}: not a display-referred (Rec.709) look LUT")


def _clip(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _fmt(v: np.ndarray) -> str:
    return " ".join(f"{x:g}" for x in v)


if sys.byteorder != "little":  # the packed index and table are little-endian views
    raise ImportError("facetalk.finish.lut needs a little-endian machine")
