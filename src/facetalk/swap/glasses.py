"""Glasses on a source face: found and painted out once, before the face is warped.

Glasses are worn, not part of the face (swappers built on face embeddings do not carry
them over either). Pasted onto a target their rims are the sharpest edges around the
eyes, brows and nose, and dlib's landmark fit on the swapped face catches on them
frame by frame: measured, the re-detected landmarks of a face swapped from a portrait
with glasses jittered ~1.8x as much as the target's own.

Found in a canonical view of the face (eyes level, IOD = CANON_IOD px) as thin dark
structures (morphological black-hat) in a band around each eye and across the nose
bridge, outside the eye openings and the brows. A face counts as wearing glasses only
when that dark structure crosses the bridge from side to side and rings both eyes; eye
creases, crow's feet and under-eye folds of a face without glasses run along one side
of the eye and never across the bridge. Found rims are inpainted (cv2.inpaint) in the
photo.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..face import geometry as geo

CANON_IOD = 120  # px: the scale rims are looked for at
RIM_WIDTH = 0.12  # IOD: the black-hat's kernel, wider than any rim, narrower than an eye
RIM_DARKNESS = 18.0  # L levels (0-255) below the surroundings for a pixel to be rim
BRIDGE_COVER = 0.75  # fraction of the bridge's columns a dark structure must cross
RING_COVER = 0.55  # fraction of the directions around an eye (its upper third aside) with rim
ANGLE_BINS = 24


def _canonical(lm: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """2x3 map from photo pixels to the canonical view (eyes level, IOD CANON_IOD, eye
    midpoint at the view's (1.6, 1.3) IOD) and the view's (w, h)."""
    m = geo.to_canonical(lm) * CANON_IOD
    m[:, 2] += (1.6 * CANON_IOD, 1.3 * CANON_IOD)
    return m, (int(3.2 * CANON_IOD), int(2.6 * CANON_IOD))


def _fill(mask: np.ndarray, pts: np.ndarray) -> None:
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts * 16).astype(np.int32)), 1, cv2.LINE_8, 4)


def _disc(r: float) -> np.ndarray:
    r = max(1, int(round(r)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def find_rims(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray | None, dict[str, float]]:
    """((h, w) uint8 mask, 1 on glasses rims, or None when the face wears none; the
    measures the decision rests on: how much of the bridge the rim structure crosses and
    how far around the lesser-ringed eye it runs)."""
    lm = np.asarray(landmarks, np.float64)[:68]
    # shrink first (area-averaged: a 400 px IOD photo's pores would alias into specks)
    shrink = min(1.0, 1.5 * CANON_IOD / geo.interocular(lm))
    small = cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA) if shrink < 1 else rgb
    scale = np.diag([shrink, shrink, 1.0])
    m, size = _canonical(lm)
    m_small = m @ np.linalg.inv(scale)  # canonical from small-image pixels
    view = cv2.warpAffine(small, m_small, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    c = geo.apply(m, lm)
    u = float(CANON_IOD)
    lum = cv2.cvtColor(view, cv2.COLOR_RGB2Lab)[..., 0]
    dark = cv2.morphologyEx(lum, cv2.MORPH_BLACKHAT, _disc(RIM_WIDTH * u / 2)) > RIM_DARKNESS
    # where rims may be: an ellipse around each eye and the bridge between them
    zone = np.zeros(dark.shape, np.uint8)
    centres = [c[geo.LEFT_EYE].mean(axis=0), c[geo.RIGHT_EYE].mean(axis=0)]
    for e in centres:
        cv2.ellipse(zone, (int(e[0]), int(e[1])), (int(0.66 * u), int(0.42 * u)), 0, 0, 360, 1, -1)
    mid = (centres[0] + centres[1]) / 2
    cv2.rectangle(zone, (int(mid[0] - 0.3 * u), int(mid[1] - 0.4 * u)), (int(mid[0] + 0.3 * u), int(mid[1] + 0.25 * u)),
                  1, -1)
    # never the eyes (with their lashes and lids) or the brows
    keep_out = np.zeros_like(zone)
    for part in (geo.LEFT_EYE, geo.RIGHT_EYE):
        _fill(keep_out, c[part])
    keep_out = cv2.dilate(keep_out, _disc(0.07 * u))
    brows = np.zeros_like(zone)
    for part in (slice(17, 22), slice(22, 27)):
        p = c[part]
        # a brow is a band: its points and the same points a little lower
        _fill(brows, np.concatenate([p + (0, -0.04 * u), p + (0, 0.045 * u)]))
    keep_out |= brows
    allowed = (zone > 0) & (keep_out == 0)
    rims = cv2.morphologyEx((dark & allowed).astype(np.uint8), cv2.MORPH_CLOSE, _disc(0.02 * u))
    # glasses are one structure: a rim round each eye joined by the bridge
    n, labels = cv2.connectedComponents(rims, connectivity=8)
    x0, x1 = int(c[39, 0] + 0.08 * u), int(c[42, 0] - 0.08 * u)
    y0, y1 = int(mid[1] - 0.4 * u), int(c[29, 1])
    centre = (np.arange(ANGLE_BINS) + 0.5) * 2 * np.pi / ANGLE_BINS - np.pi
    counted = np.abs(centre + np.pi / 2) > np.pi / 3  # the top third (brows) not counted
    best = {"bridge": 0.0, "ring": 0.0}
    found = np.zeros_like(rims)
    for k in range(1, n):
        part = labels == k
        bridge = float(part[y0:y1, x0:x1].any(axis=0).mean()) if x1 > x0 and y1 > y0 else 0.0
        if bridge < 0.3:
            continue
        ys, xs = np.nonzero(part)
        rings = []
        for e in centres:
            ang = np.arctan2(ys - e[1], xs - e[0])  # image y down: -pi/2 is up
            near = ((xs - e[0]) / (0.58 * u)) ** 2 + ((ys - e[1]) / (0.42 * u)) ** 2 <= 1
            counts = np.histogram(ang[near], ANGLE_BINS, (-np.pi, np.pi))[0]
            rings.append(float((counts[counted] >= 2).mean()))
        if (bridge, min(rings)) > (best["bridge"], best["ring"]):
            best = {"bridge": bridge, "ring": min(rings)}
        if bridge >= BRIDGE_COVER and min(rings) >= RING_COVER:
            found |= part.astype(np.uint8)
    if not found.any():
        return None, best
    # the rims found (all the dark structure in the zone: a lens's lower rim may be apart
    # from the bridge's part), a little grown for their soft edge, in photo pixels
    rims = cv2.dilate(rims, _disc(0.02 * u))
    back = cv2.warpAffine(rims * 255, geo.invert(m), (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR)
    return (back > 0).astype(np.uint8), best


def remove_glasses(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, bool]:
    """(rgb with the glasses' rims inpainted, whether there were any). rgb is returned
    as it is (the same array) when the face wears no glasses."""
    rims, _ = find_rims(rgb, landmarks)
    if rims is None:
        return rgb, False
    iod = geo.interocular(np.asarray(landmarks, np.float64)[:68])
    return cv2.inpaint(rgb, rims, max(3.0, 0.05 * iod), cv2.INPAINT_TELEA), True
