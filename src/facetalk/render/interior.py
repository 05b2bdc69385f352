"""The inside of an open mouth, drawn at the frame's native resolution.

Everything is laid out in canonical face space (inter-ocular distance 1) and shaded
from colours measured on the person's reference frame, so it matches the face's own
lighting. The upper teeth are fixed to the skull: their edge sits just below the
person's closed lip line, so raising the upper lip or dropping the jaw reveals them the
way it does on a real face. Nothing here is random: the same inputs give the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataclasses import dataclass

import cv2
import numpy as np

from ..face.geometry import apply, interocular, invert, to_canonical
from .mouth_shape import JAW_DROP, hairline, neutral_from
from .pchip import pchip

# Tooth boundaries from the midline outwards (canonical units): centrals, laterals,
# canines, premolars; spacing shrinks to the side as the arch turns away.
TOOTH_EDGES = np.array([0.0, 0.125, 0.215, 0.295, 0.365, 0.43, 0.49])
TEETH_HALF_SPAN = 0.36  # where the upper teeth have faded into the mouth's shadow
TEX_X = (-0.6, 0.6)  # canonical extent of a stored teeth texture, around the mouth centre
TEX_Y = (-0.12, 0.30)  # and around the closed lip line


@dataclass(frozen=True)
class MouthLook:
    """Person-specific colours (RGB floats in [0, 1]) and, if seen, their own teeth.

    teeth_texture: (h, w, 3) float32 or None, the reference's open mouth resampled on a
    canonical grid spanning TEX_X by TEX_Y around the closed lip line; teeth_alpha:
    (h, w) float32, how much each texel is tooth.
    """

    lip: np.ndarray
    skin: np.ndarray
    teeth: np.ndarray
    cavity: np.ndarray
    tongue: np.ndarray
    teeth_texture: np.ndarray | None = None
    teeth_alpha: np.ndarray | None = None


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _polygon_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


class _LipLine:
    """Smooth y(x) through a few canonical lip points: a monotone cubic (PCHIP) sampled
    once on a fine table (render.pchip), then read with np.interp. Evaluating a spline on
    every pixel of the mouth cost more than the rest of the interior painting."""

    SAMPLES = 96

    def __init__(self, xs: np.ndarray, ys: np.ndarray) -> None:
        span = xs[-1] - xs[0]
        self.tx = np.linspace(xs[0] - 0.25 * span, xs[-1] + 0.25 * span, self.SAMPLES)
        self.ty = pchip(xs, ys, self.tx)  # extrapolated past the ends, as scipy's extrapolate=True

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return np.interp(x, self.tx, self.ty).astype(np.float32)


def _lip_line(c: np.ndarray, idx: list[int]) -> _LipLine:
    """Smooth y(x) through canonical points c[idx] (strictly increasing x enforced)."""
    pts = c[idx]
    pts = pts[np.argsort(pts[:, 0])]
    xs = pts[:, 0].copy()
    for k in range(1, len(xs)):
        xs[k] = max(xs[k], xs[k - 1] + 1e-4)
    return _LipLine(xs, pts[:, 1])


def analyse_reference(
    image: np.ndarray, landmarks: np.ndarray, teeth_refs: Sequence[tuple[np.ndarray, np.ndarray]] = ()
) -> MouthLook:
    """Measure lip, skin and lighting colours, and keep the person's own teeth if shown.

    image: (H, W, 3) uint8 RGB reference; landmarks: (68, 2) its landmarks. When the
    reference shows no teeth, the (frame, landmarks) pairs in `teeth_refs` are tried in turn.
    """
    img = image.astype(np.float32) / 255.0
    lm = np.asarray(landmarks, dtype=np.float64)
    h, w = img.shape[:2]
    outer = _polygon_mask((h, w), lm[48:60])
    inner = _polygon_mask((h, w), lm[60:68])
    lips = outer & ~inner
    lip = np.median(img[lips], axis=0) if lips.sum() > 10 else np.array([0.6, 0.35, 0.35])
    face = _polygon_mask((h, w), lm[[1, 2, 3, 31, 35, 13, 14, 15, 45, 42, 39, 36]])
    face_px = img[face] if face.sum() > 10 else img.reshape(-1, 3)
    skin = np.median(face_px, axis=0)
    luma = face_px @ np.array([0.299, 0.587, 0.114], np.float32)
    light = float(np.percentile(luma, 97))
    saturation = float(np.mean(face_px.max(axis=1) - face_px.min(axis=1)))
    colour = min(1.0, saturation / 0.08)  # 0 on a greyscale photo: no tints at all
    grey = lambda c: c.mean() + colour * (c - c.mean())  # noqa: E731
    tint = (skin / max(float(skin.mean()), 1e-3)) ** 0.2
    teeth = grey(np.array([0.96, 0.93, 0.86]) * tint) * np.clip(0.97 * light, 0.3, 0.93)
    cavity = grey(lip * np.array([0.30, 0.20, 0.20]) + np.array([0.035, 0.01, 0.01])) * (0.6 + 0.4 * light)
    tongue = grey(lip * np.array([0.78, 0.55, 0.55]) + np.array([0.06, 0.0, 0.0])) * 0.8
    tex, alpha = _teeth_texture(img, lm, light)
    for frame, frame_lm in teeth_refs:
        if tex is not None:
            break
        tex, alpha = _teeth_texture(frame.astype(np.float32) / 255.0, np.asarray(frame_lm, np.float64), light)
    return MouthLook(lip.astype(np.float32), skin.astype(np.float32), teeth.astype(np.float32),
                     cavity.astype(np.float32), tongue.astype(np.float32), tex, alpha)


def _teeth_texture(img: np.ndarray, lm: np.ndarray, light: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The reference's visible teeth on the canonical texture grid, or (None, None)."""
    c = apply(to_canonical(lm), lm)
    gap = float(np.mean([c[lo, 1] - c[up, 1] for up, lo in ((61, 67), (62, 66), (63, 65))]))
    if gap < 0.04:
        return None, None
    closed = neutral_from(lm)
    stomion = _lip_line(closed, [60, 61, 62, 63, 64])
    mid = (closed[60, 0] + closed[64, 0]) / 2
    res = float(np.clip(interocular(lm), 60, 400))  # texels per canonical unit
    xs = np.linspace(*TEX_X, int((TEX_X[1] - TEX_X[0]) * res))
    ys = np.linspace(*TEX_Y, int((TEX_Y[1] - TEX_Y[0]) * res))
    gx, gy = np.meshgrid(xs, ys)
    cx = gx + mid
    # texel (dx, dy) lies dy below the closed lip line: teeth are fixed to the skull, so
    # the same offset finds them on any later frame
    up = _lip_line(c, [60, 61, 62, 63, 64])
    lo = _lip_line(c, [64, 65, 66, 67, 60])
    cy = gy + stomion(cx)
    to_img = invert(to_canonical(lm))
    pts = apply(to_img, np.stack([cx.ravel(), cy.ravel()], axis=1)).astype(np.float32)
    mx = pts[:, 0].reshape(cx.shape)
    my = pts[:, 1].reshape(cx.shape)
    tex = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    inside = (cy > up(cx)) & (cy < lo(cx)) & (cx > c[60, 0]) & (cx < c[64, 0])
    luma = tex @ np.array([0.299, 0.587, 0.114], np.float32)
    chroma = tex.max(axis=2) - tex.min(axis=2)
    bright = _smoothstep((luma - 0.45 * light) / (0.2 * light + 1e-3))
    pale = _smoothstep((0.35 - chroma) / 0.15 + 0.5)
    alpha = bright * pale * inside * (gy < 0.12)
    if alpha.sum() < 0.004 * res * res:  # under ~0.4 % of a unit square: no teeth shown
        return None, None
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), 0.006 * res)
    return tex.astype(np.float32), alpha.astype(np.float32)


def paint_interior(
    roi: np.ndarray,
    roi_to_canon: np.ndarray,
    closed: np.ndarray,
    shaped: np.ndarray,
    look: MouthLook,
    params: dict[str, float],
    px_per_unit: float,
) -> np.ndarray:
    """Draw the mouth opening into roi (in place) and return its coverage.

    roi: (h, w, 3) uint8 RGB, the warped region; roi_to_canon: 2x3 affine
    from roi pixel coordinates to canonical space; closed, shaped: (68, 2) canonical
    points of the closed and the target mouth (mouth_shape.mouth_geometry); params:
    the mouth vector by name; px_per_unit: pixels per canonical unit.
    Returns (h, w) float32 alpha: 1 inside the opening, anti-aliased at the lips.
    """
    h, w = roi.shape[:2]
    alpha_full = np.zeros((h, w), np.float32)
    up = _lip_line(shaped, [60, 61, 62, 63, 64])
    lo = _lip_line(shaped, [64, 65, 66, 67, 60])
    x_left, x_right = float(shaped[60, 0]), float(shaped[64, 0])
    # closed lips keep a hairline (MIN_GAP) between their landmarks: that is the seam
    # (lip_layer), not an opening, so it is not painted
    gap_c = float(lo((x_left + x_right) / 2) - up((x_left + x_right) / 2))
    gap_c -= float(hairline(gap_c))
    if gap_c * px_per_unit < 0.3 or x_right - x_left < 1e-3:
        return alpha_full
    # pixel box of the opening, a little grown
    to_roi = invert(roi_to_canon)
    xs = np.linspace(x_left, x_right, 24)
    box_pts = apply(to_roi, np.concatenate([np.stack([xs, up(xs)], 1), np.stack([xs, lo(xs)], 1)]))
    bx0, by0 = np.floor(box_pts.min(axis=0) - 3).astype(int)
    bx1, by1 = np.ceil(box_pts.max(axis=0) + 3).astype(int)
    bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    if bx1 <= bx0 or by1 <= by0:
        return alpha_full
    # float32 throughout: canonical coordinates need no more, and it halves the traffic
    py, px = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
    (a, b, c), (d, e, f) = roi_to_canon.tolist()
    cx = a * px + b * py + c
    cy = d * px + e * py + f
    y_up, y_lo = up(cx), lo(cx)
    inside_x = (cx > x_left) & (cx < x_right)
    # anti-aliased coverage from the vertical distance to the nearer lip, in pixels
    dist = (np.minimum(cy - y_up, y_lo - cy) - 0.5 * hairline(y_lo - y_up)) * px_per_unit
    alpha = np.clip(dist + 0.2, 0.0, 1.0) * inside_x
    if not alpha.any():
        return alpha_full

    gap = np.maximum(y_lo - y_up, 1e-4)
    t = np.clip((cy - y_up) / gap, 0, 1)  # 0 at the upper lip, 1 at the lower
    mid = (closed[48, 0] + closed[54, 0]) / 2
    half = max((x_right - x_left) / 2, 1e-3)
    ux = np.clip((cx - (x_left + x_right) / 2) / half, -1, 1)

    # oral cavity: darkest at the back (centre), a little light near the lips
    r = np.sqrt(ux**2 + (2 * t - 1) ** 2)
    img = look.cavity[None, None, :] * (0.55 + 0.45 * np.clip(r, 0, 1))[..., None]

    # tongue: a soft reddish mound low in the cavity, when the mouth is open enough
    tongue_w = _smoothstep((gap_c - 0.07) / 0.12)
    if tongue_w > 0:
        ty = (cy - (y_lo - 0.05 * gap_c)) / (0.55 * gap_c)
        tx = (cx - (x_left + x_right) / 2) / (0.62 * half)
        d = tx**2 + ty**2
        tongue_a = tongue_w * 0.85 * _smoothstep((1.0 - d) / 0.45)
        shade = 0.55 + 0.45 * np.clip(t, 0, 1)  # lit from the front, dark at the back
        img = img * (1 - tongue_a[..., None]) + (look.tongue * shade[..., None]) * tongue_a[..., None]

    # teeth: upper row fixed below the closed lip line, lower row fixed to the jaw
    st = _lip_line(closed, [60, 61, 62, 63, 64])(cx)  # the closed lip line, under each pixel
    sx = cx - mid
    teeth_amount = params.get("teeth", 0.0)
    arch = (sx / TEETH_HALF_SPAN) ** 2
    edge = st + 0.075 - 0.07 * (1 - teeth_amount) - 0.045 * arch  # crown visible ~0.07 IOD, as in speech
    # small notches at the tooth corners so the incisal edge is not one straight line
    edge_px = 1.0 / px_per_unit
    notch = np.zeros_like(cx)
    gaps_line = np.zeros_like(cx)
    for e in TOOTH_EDGES:
        for s in ((1.0,) if e == 0 else (1.0, -1.0)):
            dd = sx - s * e
            notch = np.maximum(notch, np.exp(-((dd / 0.018) ** 2)))
            wline = max(0.006, 0.8 * edge_px)
            gaps_line = np.maximum(gaps_line, np.exp(-((dd / wline) ** 2)))
    edge = edge - 0.012 * notch
    upper_a = _smoothstep((edge - cy) * px_per_unit + 0.5) * _smoothstep((1.25 - np.abs(sx) / TEETH_HALF_SPAN) / 0.5)
    fade = 1 - 0.6 * np.clip(np.abs(sx) / TEETH_HALF_SPAN, 0, 1.3) ** 2  # arch turns into shadow
    depth = np.clip(cy - st + 0.06, 0, 0.12) / 0.12  # slightly translucent at the tip
    tooth_rgb = look.teeth[None, None, :] * (fade * (0.97 - 0.12 * depth ** 3) * (1 - 0.35 * gaps_line))[..., None]
    tooth_rgb = np.clip(tooth_rgb, 0, 1)
    if look.teeth_texture is not None and look.teeth_alpha is not None:
        tex_rgb, tex_a = _sample_texture(look, sx, cy - st)
        # the person's own teeth show as far down as the teeth amount lets them
        tex_edge = st + 0.14 - 0.17 * (1 - teeth_amount)
        tex_a = tex_a * _smoothstep((tex_edge - cy) * px_per_unit + 0.5)
        tooth_rgb = tooth_rgb * (1 - tex_a[..., None]) + tex_rgb * tex_a[..., None]
        upper_a = np.maximum(upper_a * (1 - np.minimum(1, 2 * tex_a)), tex_a)
    img = img * (1 - upper_a[..., None]) + tooth_rgb * upper_a[..., None]

    drop = JAW_DROP * params.get("open", 0.0)
    low_top = st - 0.03 + 0.97 * drop + 0.04 * (sx / 0.3) ** 2
    lower_a = (_smoothstep((cy - low_top) * px_per_unit + 0.5) * _smoothstep((1.0 - np.abs(sx) / 0.3) / 0.4)
               * teeth_amount * _smoothstep((drop - 0.08) / 0.1))
    low_rgb = look.teeth[None, None, :] * (0.72 * (1 - 0.5 * np.clip(np.abs(sx) / 0.3, 0, 1) ** 2)
                                           * (1 - 0.3 * gaps_line))[..., None]
    img = img * (1 - lower_a[..., None]) + low_rgb * lower_a[..., None]

    # soft shadow under the upper lip, and darker corners
    below_lip = np.maximum(cy - y_up, 0)
    shadow = 1 - 0.45 * np.exp(-below_lip / 0.03)
    corners = 1 - 0.45 * np.abs(ux) ** 3
    img = img * (shadow * corners)[..., None]

    sub = roi[by0:by1, bx0:bx1].astype(np.float32) / 255.0
    a3 = alpha[..., None].astype(np.float32)
    sub = sub * (1 - a3) + img.astype(np.float32) * a3
    roi[by0:by1, bx0:bx1] = np.clip(sub * 255.0 + 0.5, 0, 255).astype(np.uint8)
    alpha_full[by0:by1, bx0:bx1] = alpha
    return alpha_full


def _sample_texture(look: MouthLook, sx: np.ndarray, sy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample the stored teeth texture at canonical offsets (sx from the mouth centre,
    sy below the closed lip line). Returns ((..., 3) rgb, (...,) alpha)."""
    tex, alpha = look.teeth_texture, look.teeth_alpha
    th, tw = alpha.shape
    mx = ((sx - TEX_X[0]) / (TEX_X[1] - TEX_X[0]) * (tw - 1)).astype(np.float32)
    my = ((sy - TEX_Y[0]) / (TEX_Y[1] - TEX_Y[0]) * (th - 1)).astype(np.float32)
    rgb = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rgb, a
