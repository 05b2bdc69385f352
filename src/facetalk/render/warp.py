"""The default renderer: a smooth dense warp of the frame's own pixels plus a drawn
mouth interior, all at the frame's native resolution.

Per frame: target landmarks from the mouth vector (mouth_shape); a piecewise-affine
displacement from the target points back to the source points, with fixed anchors on
the nose, eyes, upper jaw and the region's border, lightly blurred so it is smooth, and
applied with cv2.remap at full resolution. A window takes the displacement to exactly
zero at the region's border, so the patch has no seam. The lips are then redrawn from the
frame's own lip pixels with the seam where they meet (lip_layer.redraw_lips: never the
teeth or dark gap that lay between them), and the open mouth is painted by
interior.paint_interior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import Delaunay

from ..face.geometry import apply, interocular, invert
from ..types import MOUTH_PARAMS, Patch
from .interior import MouthLook, analyse_reference, paint_interior
from .lip_layer import clear_corners, redraw_lips
from .mouth_shape import MOVED, mouth_geometry, neutral_from, relax_expression, smile_amount

# upper-lid point -> the lower-lid point it closes onto
LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
# midpoints of upper-lid segments -> of the lower-lid segments they close onto
LID_MIDS = (((36, 37), (36, 41)), ((38, 39), (39, 40)), ((42, 43), (42, 47)), ((44, 45), (45, 46)))
FIXED = list(range(0, 4)) + list(range(13, 17)) + list(range(17, 48))  # never moved by the mouth


def piecewise_affine_field(ctrl: np.ndarray, values: np.ndarray, h: int, w: int) -> np.ndarray:
    """Displacement at every pixel of an (h, w) region, linear inside each triangle of
    the Delaunay triangulation of ctrl.

    ctrl: (n, 2) pixel points covering the region (its corners included); values:
    (n, 2) displacements at them. Returns (h, w, 2) float32. Unlike a global spline,
    this stays exact and free of ringing when the data are steep (lips or eyelids
    closing squeeze a whole opening into a line).
    """
    tri = Delaunay(ctrl).simplices  # (t, 3)
    index = np.full((h, w), -1, np.int32)
    fixed = np.round(ctrl * 16).astype(np.int32)  # 4 fractional bits, rounded once for all triangles
    for k, t in enumerate(tri):
        cv2.fillConvexPoly(index, fixed[t], int(k), cv2.LINE_8, 4)
    # per-triangle affine coefficients: [x, y, 1] @ coef = displacement
    verts = np.concatenate([ctrl[tri], np.ones((len(tri), 3, 1))], axis=2)  # (t, 3, 3)
    det = np.linalg.det(verts)
    good = np.abs(det) > 1e-9
    coef = np.zeros((len(tri), 3, 2), np.float32)
    coef[good] = np.linalg.solve(verts[good], values[tri][good])
    coef = np.concatenate([coef, np.zeros((1, 3, 2), np.float32)])  # index -1 -> zero displacement
    c = coef[index]  # (h, w, 3, 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = xs[..., None] * c[:, :, 0] + ys[..., None] * c[:, :, 1] + c[:, :, 2]
    return field.astype(np.float32)


@lru_cache(maxsize=32)
def _border_window(h: int, w: int, feather: float) -> np.ndarray:
    """(h, w) float32: 0 on the outermost pixels, rising smoothly to 1 over feather px.
    Cached (read-only): a face's region keeps nearly the same size from frame to frame."""
    def ramp(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        x = np.clip(d / max(feather, 1.0), 0, 1)
        return x * x * (3 - 2 * x)
    window = ramp(h)[:, None] * ramp(w)[None, :]
    window.setflags(write=False)
    return window


def close_lids(target: np.ndarray, blink: float) -> np.ndarray:
    """Move the upper-lid points of (68, 2) float64 target landmarks (in place) most of
    the way onto the lower lid for blink in [0, 1]; returns target."""
    b = float(np.clip(blink, 0.0, 1.0))
    for up, lo in LIDS:
        target[up] = target[up] + 0.9 * b * (target[lo] - target[up])
    return target


def lid_controls(lm: np.ndarray, blink: float) -> tuple[np.ndarray, np.ndarray]:
    """Extra (source, target) points along both lids, (k, 2) each, so the closing
    lid stays a smooth curve instead of a polyline kinked at the landmarks."""
    src, dst = [], []
    for (a, b), (c, d) in LID_MIDS:
        up, lo = (lm[a] + lm[b]) / 2, (lm[c] + lm[d]) / 2
        src.append(up)
        dst.append(up + 0.9 * blink * (lo - up))
    for up, lo in LIDS:  # the lower lid rises a little as the eye closes
        src.append(lm[lo])
        dst.append(lm[lo] + 0.05 * blink * (lm[up] - lm[lo]))
    return np.array(src), np.array(dst)


@dataclass(frozen=True)
class WarpedRegion:
    """A region of a frame warped so its landmarks land on target points.

    image: (h, w, 3) uint8, the warped pixels of frame rows y0:y0+h, cols x0:x0+w;
    field: (h, w, 2) float32, per output pixel the offset to the source pixel it was
    taken from (exactly 0 on the region's border); iod: the face's inter-ocular distance, px.
    """

    image: np.ndarray
    field: np.ndarray
    x0: int
    y0: int
    iod: float


def warp_region(
    frame: np.ndarray,
    landmarks: np.ndarray,
    target: np.ndarray,
    blink: float = 0.0,
    *,
    moved: Sequence[int] = MOVED,
    margin: float = 0.45,
    smooth: float = 0.03,
    interpolation: int = cv2.INTER_CUBIC,
) -> WarpedRegion | None:
    """Warp the lower face (and the eyes when blinking) of frame so that landmarks go to target.

    frame: (H, W, 3) uint8; landmarks, target: (68, 2) frame pixels, target differing
    from landmarks only at the points in `moved` (mouth and jaw) and, when blink > 0, at
    the upper lids (close_lids). The displacement is piecewise affine between the
    moved points, fixed anchors (nose, eyes, upper jaw) and the region's border, lightly
    blurred (smooth, in inter-ocular distances), windowed to exactly zero at the
    border (margin: border around the moved points, in inter-ocular distances), and
    applied with cv2.remap at full resolution. None when the region is under 8 px.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    blink = float(np.clip(blink, 0.0, 1.0))
    iod = interocular(lm)
    h_img, w_img = frame.shape[:2]
    moved = list(moved)

    # region: lower face (and eyes when blinking), source and target, plus a margin
    # wide enough that the border window never touches a moved point
    moved = moved + ([p for p, _ in LIDS] if blink > 0 else [])
    region = np.concatenate([lm[1:16], lm[29:36], lm[48:68], tgt[moved]])
    if blink > 0:
        region = np.concatenate([region, lm[17:27]])
    pad = margin * iod
    x0 = int(max(0, np.floor(region[:, 0].min() - pad)))
    y0 = int(max(0, np.floor(region[:, 1].min() - pad)))
    x1 = int(min(w_img, np.ceil(region[:, 0].max() + pad)))
    y1 = int(min(h_img, np.ceil(region[:, 1].max() + pad)))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    h, w = y1 - y0, x1 - x0

    # control points: moved and fixed landmarks plus points along the border
    origin = np.array([x0, y0], np.float64)
    lids = [i for pair in LIDS for i in pair] if blink > 0 else []
    fixed = [i for i in FIXED if i not in lids]
    moved_pts = [i for i in moved if i not in lids]
    src_pts = np.concatenate([lm[moved_pts], lm[fixed]])
    dst_pts = np.concatenate([tgt[moved_pts], lm[fixed]])
    if blink > 0:
        lid_src, lid_dst = lid_controls(lm, blink)
        src_pts = np.concatenate([src_pts, lm[[p for p, _ in LIDS]], lid_src])
        dst_pts = np.concatenate([dst_pts, tgt[[p for p, _ in LIDS]], lid_dst])
    nb = 8
    bx = np.linspace(0, w - 1, nb)
    by = np.linspace(0, h - 1, nb)
    border = np.concatenate([
        np.stack([bx, np.zeros(nb)], 1), np.stack([bx, np.full(nb, h - 1.0)], 1),
        np.stack([np.zeros(nb - 2), by[1:-1]], 1), np.stack([np.full(nb - 2, w - 1.0), by[1:-1]], 1),
    ])
    ctrl = np.concatenate([dst_pts - origin, border])
    disp = np.concatenate([src_pts - dst_pts, np.zeros((len(border), 2))])
    inside = (ctrl[:, 0] > 0.5) & (ctrl[:, 0] < w - 1.5) & (ctrl[:, 1] > 0.5) & (ctrl[:, 1] < h - 1.5)
    keep = inside | (np.arange(len(ctrl)) >= len(ctrl) - len(border))
    # the field is smooth (blurred by `smooth` IOD below), so it is built on a grid of
    # a fiftieth of the inter-ocular distance and upsampled; the pixels are not
    step = max(1, int(round(iod / 50)))
    gh, gw = -(-h // step), -(-w // step)
    field = piecewise_affine_field((ctrl[keep] + 0.5) / step - 0.5, disp[keep], gh, gw)
    # soften the creases along triangle edges; a small blur, so lips keep their place
    sigma = max(1.0, iod * smooth / step)
    # (scipy's filter, not OpenCV's: its SIMD paths vary in the last bit with
    # buffer alignment, and renders must repeat exactly)
    field = gaussian_filter(field, (sigma, sigma, 0), mode="nearest", truncate=3.0)
    if step > 1:
        field = cv2.resize(field, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
    window = _border_window(h, w, feather=round(0.3 * iod, 1))
    field *= window[..., None]

    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32) + x0, np.arange(h, dtype=np.float32) + y0)
    warped = cv2.remap(frame, xs + field[..., 0], ys + field[..., 1], interpolation, borderMode=cv2.BORDER_REFLECT)
    return WarpedRegion(image=warped, field=field, x0=x0, y0=y0, iod=iod)


def region_mask(region: WarpedRegion, covers: Sequence[np.ndarray] = (), solid: np.ndarray | None = None) -> np.ndarray:
    """The feathered (h, w) float32 mask of a warped region, exactly 0 on its border.

    1 where the warp moved pixels by more than half a pixel or where any of covers
    ((h, w) float32 in [0, 1], e.g. painted pixels) is 1; dilated and softened by
    ~IOD/60; solid ((h, w) float32), if given, is kept unsoftened under it.
    """
    field = region.field
    h, w = field.shape[:2]
    moved_px = np.hypot(field[..., 0], field[..., 1])
    mask = np.minimum(moved_px * 2.0, 1.0)
    for cover in covers:
        mask = np.maximum(mask, cover)
    sigma = max(1.0, region.iod / 60)
    mask = gaussian_filter(cv2.dilate(mask, np.ones((3, 3), np.uint8)), sigma, mode="nearest", truncate=3.0)
    if solid is not None:
        mask = np.maximum(mask, solid)
    return (mask * _border_window(h, w, feather=2.0)).astype(np.float32)


class WarpRenderer:
    """Landmark-driven warp renderer (the default)."""

    name = "warp"

    def __init__(
        self, margin: float = 0.45, smooth: float = 0.03, interpolation: str = "cubic", keep_expression: bool = False
    ) -> None:
        """margin: border around the moved points, in inter-ocular distances; smooth:
        blur of the warp field, in inter-ocular distances; interpolation: "cubic" or "linear" resampling;
        keep_expression: speak from the reference's own expression (a smile stays) instead
        of from a mouth at rest (mouth_shape.relax_expression)."""
        self.keep_expression = keep_expression
        self.margin = margin
        self.smooth = smooth
        self.interp = cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR
        self._neutral: np.ndarray | None = None
        self._smiled = False  # the reference smiles (its corners open into dark wedges)
        self._look: MouthLook | None = None

    def prepare(
        self, reference: np.ndarray, landmarks: np.ndarray, teeth_refs: Sequence[tuple[np.ndarray, np.ndarray]] = ()
    ) -> None:
        """Learn the neutral closed mouth (brought to rest from a smile unless
        keep_expression) and the colours of the person in reference, and their own teeth
        from reference or, failing that, from the open mouths in teeth_refs."""
        self._neutral = neutral_from(np.asarray(landmarks, dtype=np.float64))
        self._smiled = smile_amount(self._neutral) > 0
        if not self.keep_expression:  # speech starts from a mouth at rest, not a smile
            self._neutral = relax_expression(self._neutral)
        self._look = analyse_reference(reference, landmarks, teeth_refs)

    def target(self, landmarks: np.ndarray, mouth: np.ndarray, blink: float = 0.0) -> np.ndarray:
        """(68, 2) float32 landmarks the rendered frame is drawn to show."""
        _, shaped, to_c = mouth_geometry(landmarks, self._neutral, mouth)
        out = np.array(landmarks, dtype=np.float64, copy=True)
        out[MOVED] = apply(invert(to_c), shaped[MOVED])
        return close_lids(out, blink).astype(np.float32)

    def plan(self, mouth: np.ndarray) -> None:
        """Nothing to plan: every frame is drawn from its own mouth vector."""

    def render(
        self,
        frame: np.ndarray,
        landmarks: np.ndarray | None,
        mouth: np.ndarray,
        blink: float = 0.0,
        k: int | None = None,
    ) -> Patch | None:
        """Patch of frame (H, W, 3) uint8 showing mouth (len(MOUTH_PARAMS),) and blink
        (k, the output frame index, is not needed)."""
        if landmarks is None:
            return None
        lm = np.asarray(landmarks, dtype=np.float64)
        if self._neutral is None or self._look is None:
            self.prepare(frame, lm)  # no reference given: the frame is its own
        mouth = np.asarray(mouth, dtype=np.float64).reshape(-1)
        params = dict(zip(MOUTH_PARAMS, np.clip(mouth, 0, 1).tolist()))
        blink = float(np.clip(blink, 0.0, 1.0))
        closed, shaped, to_c = mouth_geometry(lm, self._neutral, mouth)
        tgt = self.target(lm, mouth, blink).astype(np.float64)
        region = warp_region(frame, lm, tgt, blink, margin=self.margin, smooth=self.smooth, interpolation=self.interp)
        if region is None:
            return None
        warped, iod = region.image, region.iod
        origin = np.array([region.x0, region.y0], np.float64)

        roi_to_canon = to_c.copy()
        roi_to_canon[:, 2] += to_c[:, :2] @ origin  # roi pixel -> frame pixel -> canonical
        # the lips, redrawn from the frame's own lip pixels (never what lay between
        # them: teeth, a dark gap), with the seam where they meet
        cleared = redraw_lips(warped, roi_to_canon, frame, to_c, apply(to_c, lm), shaped, self._look.lip, iod)
        if self._smiled:  # the smile's dark corner wedges, carried in with the corners
            cleared = np.maximum(cleared, clear_corners(warped, roi_to_canon, shaped, self._look.lip, iod))

        # the open mouth, painted in place on the warped pixels
        inner_a = paint_interior(warped, roi_to_canon, closed, shaped, self._look, params, iod)

        # mask: where the warp moved pixels by more than a fraction of one, or the
        # interior was drawn; softened, and zero on the border
        mask = region_mask(region, (inner_a, cleared), solid=inner_a)
        return Patch(image=warped, mask=mask, x0=region.x0, y0=region.y0)
