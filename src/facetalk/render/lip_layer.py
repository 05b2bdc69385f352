"""The lips redrawn from the person's own lip pixels, and the seam where closed lips meet.

A piecewise-affine warp alone cannot close a mouth that shows its teeth: dlib puts the
inner-lip points of such a mouth on the teeth's edges, so what lies between the lips in
the source (teeth, a dark gap) is squeezed into the lip line and shows through the
warp's smoothing as a dotted dark seam with light specks. Here the lips are drawn as a
layer of their own:

- on the source frame, each column of the mouth is scanned from the outer lip edge
  inwards for where the lip really ends (the first teeth-bright or cavity-dark pixels),
  so the source's lip bands hold lip only;
- each target lip band (outer edge to inner edge, in canonical face space) is filled by
  resampling the matching source band column by column: the lip's texture is stretched
  or squeezed with the lip (thicker when rounded, thinner when spread), never a pixel
  from between the lips;
- where the lips meet (or nearly), one continuous seam is shaded in: a narrow dark line
  with a soft shadow under the upper lip, darker towards the corners.
Nothing here is random: the same inputs give the same pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d, label, maximum_filter1d, median_filter, minimum_filter1d

from ..face.geometry import apply, invert
from .mouth_shape import hairline
from .pchip import pchip

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
GREY_REDNESS = 0.03  # lips less red than this: a grey photo (or grey lips)
CLOSED_PX = 3.0  # a source mouth open nowhere wider than this (px) is closed: its seam is kept
UPPER_OUTER = [48, 49, 50, 51, 52, 53, 54]
LOWER_OUTER = [48, 59, 58, 57, 56, 55, 54]
UPPER_INNER = [48, 60, 61, 62, 63, 64, 54]
LOWER_INNER = [48, 60, 67, 66, 65, 64, 54]


def _smooth_curve(c: np.ndarray, idx: list[int], n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of a smooth curve through canonical points c[idx] (a monotone cubic)."""
    pts = c[idx]
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    xs = pts[:, 0].copy()
    for k in range(1, len(xs)):
        xs[k] = max(xs[k], xs[k - 1] + 1e-5)
    tx = np.linspace(xs[0], xs[-1], n)
    return tx, pchip(xs, pts[:, 1], tx)


class _Curve:
    """y(x) of a lip line, read from a table of its smooth curve."""

    def __init__(self, c: np.ndarray, idx: list[int]) -> None:
        self.tx, self.ty = _smooth_curve(c, idx)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.tx, self.ty)


def _redness(rgb: np.ndarray) -> np.ndarray:
    """(R - G) / (R + G + B): high on lips, low on teeth (pale, or yellowish in shadow)."""
    return (rgb[..., 0] - rgb[..., 1]) / np.maximum(rgb.sum(axis=-1), 1e-3)


def _lip_classes(rgb: np.ndarray, lip: np.ndarray) -> np.ndarray:
    """(...) bool: pixels (float RGB in [0, 1]) that are not lip, against the person's
    lip colour `lip` (RGB): teeth (far less red than the lip, or on a grey photo far
    brighter) or the cavity (far darker)."""
    luma = rgb @ LUMA
    lip_luma = float(lip @ LUMA)
    lip_red = float(_redness(np.asarray(lip, np.float32)))
    if lip_red > GREY_REDNESS:
        teeth = _redness(rgb) < 0.5 * lip_red
    else:  # a grey photo (or grey lips): brightness is all there is
        teeth = luma > lip_luma + 0.18
    cavity = luma < 0.55 * lip_luma
    return teeth | cavity


def source_inner_edges(frame: np.ndarray, to_c: np.ndarray, src: np.ndarray, lip: np.ndarray,
                       px_per_unit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the source's lips really end, column by column.

    frame: (H, W, 3) uint8; to_c: its 2x3 frame-to-canonical similarity; src: (68, 2)
    canonical landmarks of the frame; lip: the person's lip colour (RGB in [0, 1]).
    Returns (xs, upper, lower): canonical x of each column between the outer mouth
    corners, and the canonical y of the upper lip's and the lower lip's inner edge there
    (dlib's inner-lip line where the mouth is closed or no edge is found).
    """
    ou, ol = _Curve(src, UPPER_OUTER), _Curve(src, LOWER_OUTER)
    iu, il = _Curve(src, UPPER_INNER), _Curve(src, LOWER_INNER)
    x_l, x_r = float(src[48, 0]), float(src[54, 0])
    n_cols = int(np.clip((x_r - x_l) * px_per_unit, 8, 400))
    xs = np.linspace(x_l, x_r, n_cols)
    up_edge, lo_edge = iu(xs), il(xs)
    top, bottom = ou(xs), ol(xs)
    gap = lo_edge - up_edge
    if float(np.max(gap)) * px_per_unit < CLOSED_PX:  # closed already: its dark line is its seam
        return xs, up_edge, lo_edge
    n_rows = int(np.clip((bottom - top).max() * px_per_unit * 1.5, 8, 400))
    f = np.linspace(0.0, 1.0, n_rows)
    cy = top[None, :] + f[:, None] * (bottom - top)[None, :]  # (rows, cols), top to bottom
    cx = np.broadcast_to(xs[None, :], cy.shape)
    pts = apply(invert(to_c), np.stack([cx.ravel(), cy.ravel()], axis=1)).astype(np.float32)
    rgb = cv2.remap(frame, pts[:, 0].reshape(cy.shape), pts[:, 1].reshape(cy.shape), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
    foreign = _lip_classes(rgb, np.asarray(lip, np.float32))
    foreign = median_filter(foreign.astype(np.uint8), size=(3, 3), mode="nearest") > 0
    # what lies between the lips: the foreign pixels connected to the band between
    # dlib's inner-lip lines (at least the middle fifth of the mouth's height, for a
    # smile's dark corners where dlib's lines meet); a highlight on a lip, cut off from
    # the opening by lip pixels, stays lip
    band = (cy >= np.minimum(up_edge, top + 0.4 * (bottom - top))[None, :]) & \
        (cy <= np.maximum(lo_edge, top + 0.6 * (bottom - top))[None, :])
    within = (cy >= (top + 0.3 * (up_edge - top))[None, :]) & (cy <= (bottom - 0.3 * (bottom - lo_edge))[None, :])
    labels, n = label(foreign & within)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[band & (labels > 0)])] = True
    keep[0] = False
    inner = keep[labels]
    has = inner.any(axis=0)
    first = np.argmax(inner, axis=0)
    last = n_rows - 1 - np.argmax(inner[::-1], axis=0)
    cols = np.arange(n_cols)
    found_up = np.where(has, cy[first, cols], up_edge)
    found_lo = np.where(has, cy[last, cols], lo_edge)
    has_lo = has
    # smooth along the lip, and step a pixel back into the lip where an edge was found,
    # so no anti-aliased tooth pixel is sampled
    k = max(3, (n_cols // 24) | 1)
    sigma = max(1.0, n_cols / 60)
    # the envelope on the lip's side: a scalloped edge (tooth crowns, gums) must not be
    # averaged into the band that is sampled
    found_up = gaussian_filter1d(minimum_filter1d(found_up, k, mode="nearest"), sigma, mode="nearest")
    found_lo = gaussian_filter1d(maximum_filter1d(found_lo, k, mode="nearest"), sigma, mode="nearest")
    back = np.where(has, 2.0 / px_per_unit, 0.0)
    # the lower lip keeps at least 40 % of the thickness dlib gives it, and on a grey
    # photo (where only brightness tells teeth from lip) its edge lies no further into it
    # than half the local gap plus 0.02 IOD: a highlight on a full lower lip must not pass
    # for teeth and leave a sliver to stretch. The upper lip keeps 15 % (dlib's inner
    # points of a smile lie low on the teeth, far from the lip's edge)
    limit = bottom - 0.4 * (bottom - lo_edge)
    if _redness(np.asarray(lip, np.float32)) <= GREY_REDNESS:
        limit = np.minimum(limit, lo_edge + 0.5 * np.maximum(gap, 0.0) + 0.02)
    found_up = np.clip(found_up - back, top + 0.15 * (up_edge - top), None)
    found_lo = np.clip(found_lo + back, None, limit)
    found_lo = np.maximum(found_lo, found_up)
    return xs, found_up, found_lo


def redraw_lips(
    roi: np.ndarray,
    roi_to_canon: np.ndarray,
    frame: np.ndarray,
    to_c: np.ndarray,
    src: np.ndarray,
    shaped: np.ndarray,
    lip: np.ndarray,
    px_per_unit: float,
) -> np.ndarray:
    """Draw the target lips into roi (in place) from the source frame's own lip pixels.

    roi: (h, w, 3) uint8, the warped region; roi_to_canon: 2x3 roi pixel -> canonical;
    frame: the source (H, W, 3) uint8 with to_c its frame -> canonical similarity and src
    its (68, 2) canonical landmarks; shaped: (68, 2) canonical target landmarks; lip: the
    lip colour (RGB in [0, 1]); px_per_unit: pixels per canonical unit.
    Returns the (h, w) float32 coverage of the drawn lips (1 inside, soft at the edge).
    """
    h, w = roi.shape[:2]
    alpha_full = np.zeros((h, w), np.float32)
    sx_cols, s_iu, s_il = source_inner_edges(frame, to_c, src, lip, px_per_unit)
    s_ou, s_ol = _Curve(src, UPPER_OUTER), _Curve(src, LOWER_OUTER)
    t_ou, t_ol = _Curve(shaped, UPPER_OUTER), _Curve(shaped, LOWER_OUTER)
    t_iu, t_il = _Curve(shaped, UPPER_INNER), _Curve(shaped, LOWER_INNER)
    tx_l, tx_r = float(shaped[48, 0]), float(shaped[54, 0])
    sx_l, sx_r = float(src[48, 0]), float(src[54, 0])
    if tx_r - tx_l < 1e-3 or sx_r - sx_l < 1e-3:
        return alpha_full

    # pixel box of the target lips
    to_roi = invert(roi_to_canon)
    box_pts = apply(to_roi, shaped[48:68])
    bx0, by0 = np.floor(box_pts.min(axis=0) - 3).astype(int)
    bx1, by1 = np.ceil(box_pts.max(axis=0) + 4).astype(int)
    bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    if bx1 - bx0 < 3 or by1 - by0 < 3:
        return alpha_full
    py, px = np.mgrid[by0:by1, bx0:bx1].astype(np.float64)
    (a, b, c), (d, e, f) = np.asarray(roi_to_canon, np.float64).tolist()
    cx = a * px + b * py + c
    cy = d * px + e * py + f

    u = np.clip((cx - tx_l) / (tx_r - tx_l), 0.0, 1.0)
    xs = sx_l + u * (sx_r - sx_l)  # the source column each target column shows
    ou, iu, il, ol = t_ou(cx), t_iu(cx), t_il(cx), t_ol(cx)
    # the target keeps a hairline (MIN_GAP) between closed lips so the warp cannot fold;
    # the lips drawn here cover it and meet (re-detected, a closed mouth reads closed)
    half_gap = 0.5 * hairline(il - iu)
    iu, il = iu + half_gap, il - half_gap
    mid = 0.5 * (iu + il)
    so_u, so_l = s_ou(xs), s_ol(xs)
    si_u, si_l = np.interp(xs, sx_cols, s_iu), np.interp(xs, sx_cols, s_il)
    eps = 1e-4
    upper = cy < mid
    # upper lip: outer edge -> real inner edge; never past it
    fu = np.minimum((cy - ou) / np.maximum(iu - ou, eps), 1.0)
    fl = np.minimum((cy - ol) / np.minimum(il - ol, -eps), 1.0)
    sy = np.where(upper, so_u + fu * (si_u - so_u), so_l + fl * (si_l - so_l))
    pts = apply(invert(to_c), np.stack([xs.ravel(), sy.ravel()], axis=1)).astype(np.float32)
    layer = cv2.remap(frame, pts[:, 0].reshape(cx.shape), pts[:, 1].reshape(cx.shape), cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_REFLECT)
    # what the source's lip band still holds of the dark between the lips (a smile's
    # corner wedges reach above dlib's outer line) is filled in from the lip around it
    dark = ((layer.astype(np.float32) @ LUMA) < 0.5 * 255.0 * float(np.asarray(lip, np.float32) @ LUMA))
    if dark.any():
        dark = cv2.dilate(dark.astype(np.uint8), np.ones((3, 3), np.uint8))
        layer = cv2.inpaint(np.ascontiguousarray(layer), dark, max(2.0, 0.02 * px_per_unit), cv2.INPAINT_TELEA)
    layer = layer.astype(np.float32)

    # the seam where the lips meet: a narrow dark line and a soft shadow on the lower
    # lip, fading out as the lips part (the interior is drawn over an open mouth)
    gap_px = np.maximum(il - iu, 0.0) * px_per_unit
    thick_px = np.maximum(ol - ou, 1e-6) * px_per_unit
    meet = np.clip(1.0 - (gap_px - 1.0) / 3.0, 0.0, 1.0)
    src_gap = _Curve(src, LOWER_INNER)(src[48:55, 0]) - _Curve(src, UPPER_INNER)(src[48:55, 0])
    if float(np.max(src_gap)) * px_per_unit < CLOSED_PX:
        meet *= 0.3  # the source's own seam came with its lip pixels
    dist = (cy - mid) * px_per_unit
    width = np.maximum(0.7, 0.006 * px_per_unit) + 0.3 * gap_px
    ucen = np.abs(2.0 * u - 1.0)
    corner = np.clip((ucen - 0.55) / 0.45, 0.0, 1.0)
    # (not over the last 8 % towards each corner: there the lips taper to a thin tip,
    # and a shaded tip reads as a line drawn past the corner)
    ends = np.clip(np.minimum(u, 1.0 - u) / 0.08, 0.0, 1.0)
    depth = (0.2 + 0.06 * corner ** 2) * meet * ends * ends * (3 - 2 * ends)
    line = depth * np.exp(-((dist / width) ** 2))
    below = np.clip(dist, 0.0, None)
    shadow = 0.14 * meet * np.exp(-below / np.maximum(0.12 * thick_px, 1.0)) * (dist > 0)
    shade = (1.0 - line) * (1.0 - shadow)
    layer *= shade[..., None]

    # coverage: inside the target outer lips, anti-aliased over about a pixel
    d_out = np.minimum(cy - ou, ol - cy) * px_per_unit
    inside_x = np.clip(np.minimum(cx - tx_l, tx_r - cx) * px_per_unit + 0.5, 0.0, 1.0)
    alpha = np.clip(d_out + 0.5, 0.0, 1.0) * inside_x
    alpha = alpha.astype(np.float32)
    if not alpha.any():
        return alpha_full
    sub = roi[by0:by1, bx0:bx1].astype(np.float32)
    a3 = alpha[..., None]
    sub = sub * (1 - a3) + layer * a3
    roi[by0:by1, bx0:bx1] = np.clip(sub + 0.5, 0, 255).astype(np.uint8)
    alpha_full[by0:by1, bx0:bx1] = alpha
    return alpha_full


def clear_corners(roi: np.ndarray, roi_to_canon: np.ndarray, shaped: np.ndarray, lip: np.ndarray,
                  px_per_unit: float) -> np.ndarray:
    """Repaint the dark wedge a smile leaves at each mouth corner (roi changed in place).

    A smile's corners open into dark wedges that dlib's corner points sit inside of; when
    the corners are brought in (relax_expression, rounding) the warp carries the wedges
    with them and the closed mouth looks open at its ends. Pixels of roi (uint8) far
    darker than the lip (the cavity's test) within a small ellipse along the lip line
    just outside each target corner (shaped, canonical) are inpainted from around them.
    Returns the (h, w) float32 mask of repainted pixels.
    """
    h, w = roi.shape[:2]
    out = np.zeros((h, w), np.float32)
    to_roi = invert(roi_to_canon)
    left, right = shaped[48], shaped[54]
    axis = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
    lip_luma = float(np.asarray(lip, np.float32) @ LUMA)
    mask = np.zeros((h, w), np.uint8)
    for corner, outward in ((left, -axis), (right, axis)):
        centre = apply(to_roi, (corner + 0.005 * outward)[None])[0]
        a, b = 0.07 * px_per_unit, 0.028 * px_per_unit
        angle = float(np.degrees(np.arctan2(axis[1], axis[0])))  # canonical is a similarity of the roi
        angle += float(np.degrees(np.arctan2(roi_to_canon[1, 0], roi_to_canon[0, 0]))) * -1.0
        cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), (max(int(a), 1), max(int(b), 1)),
                    angle, 0, 360, 1, -1)
    if not mask.any():
        return out
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = max(ys.min() - 4, 0), min(ys.max() + 5, h), max(xs.min() - 4, 0), min(xs.max() + 5, w)
    box = np.ascontiguousarray(roi[y0:y1, x0:x1])
    luma = box.astype(np.float32) @ (LUMA / 255.0)
    dark = (luma < 0.6 * lip_luma) & (mask[y0:y1, x0:x1] > 0)
    if not dark.any():
        return out
    dark = cv2.dilate(dark.astype(np.uint8), np.ones((3, 3), np.uint8))
    roi[y0:y1, x0:x1] = cv2.inpaint(box, dark, max(2.0, 0.02 * px_per_unit), cv2.INPAINT_TELEA)
    out[y0:y1, x0:x1] = dark
    return out
