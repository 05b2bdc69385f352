"""The retrieval renderer: the person's own mouth, taken from a bank of real mouth images.

For every output frame one entry of a MouthBank (an aligned crop of a real frame of
the person) is chosen whose lip and jaw shape best fits the target mouth shape; with a
plan (plan(mouth), before the frames), a dynamic-programming pass over the whole
sequence trades shape fit against smoothness in time, as Video Rewrite did (Bregler et
al. 1997): playing consecutive footage frames, or holding one, is free or cheap, any
other jump costs a constant plus how much the two entries differ.

Per frame the chosen entry's lips are placed on the face (canonical space, shifted so
its closed upper lip sits on the frame's closed upper lip, as mouth_shape.mouth_geometry
places a target shape), the frame is warped so its mouth and jaw points go there (so
chin and cheeks follow the retrieved mouth; warp.warp_region, shared with the warp
renderer), and the crop is mapped into the frame by one affine transform and blended in
through a mask around the lips with a soft edge on the skin, after a colour gain that
matches it to the warped frame on a ring around the lips. The teeth, lips and tongue are
the person's own, resampled once from the crop.

Descriptor for matching (what "shape" means above): the lip points 48-67 relative to the
mouth's closed upper lip, and the jaw points 5-11 relative to their closed position (the
jaw drop), weighted lower; all in canonical units (IOD 1), so the cost is an RMS point
distance in inter-ocular distances. The closed position is estimated the same way
(mouth_shape.neutral_from) for an entry and for a target shape, so an entry of exactly
the target's shape costs nothing. Retrieving held-out frames of a clip by their own
landmarks, this descriptor finds entries as close as the best in the bank (placed-lip
distance 0.0089 IOD against 0.0088 for the best, 0.030 for a random entry); anchoring at
the nose or not at all did worse (0.0105, 0.0110).

The renderer keeps no module state, and render only reads what prepare and plan left:
it may run from several threads at once, and the same inputs give the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

from ..errors import FacetalkError
from ..face.geometry import apply, invert, to_canonical
from ..identity.bank import MouthBank
from ..types import MOUTH_PARAMS, Patch
from .mouth_shape import MOVED, neutral_from, shape_canonical
from .warp import close_lids, region_mask, warp_region

LIPS = slice(48, 68)
UPPER_LIP = slice(48, 55)  # outer upper lip, corners included: the anchor of every shape
JAW = slice(5, 12)
_INTERP = {"cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "linear": cv2.INTER_LINEAR}
# canonical box (relative to the closed upper lip) of the appearance thumbnail
_THUMB_BOX = (-0.45, -0.12, 0.45, 0.36)
_THUMB_SIZE = (24, 12)  # (w, h) pixels
LOOK_COMPONENTS = 16  # principal components of the thumbnails kept for jump costs
# Extra unsharp-mask amount when a crop is enlarged onto the frame (face IOD above the
# bank's scale): measured on two clips, the mouth's Laplacian variance falls to 0.6-0.7
# of the footage's at 1.15-1.5x enlargement without it, and comes back to 0.85-1.0 with it.
UPSAMPLE_SHARPEN = 0.35


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class RetrievalRenderer:
    """Mouth renderer that pastes the person's real mouth images from a MouthBank."""

    name = "retrieval"

    def __init__(
        self,
        bank: MouthBank | None = None,
        *,
        candidates: int = 24,
        smoothness: float = 1.0,
        jump_cost: float = 0.02,
        repeat_cost: float = 0.004,
        max_step: int = 3,
        jaw_weight: float = 0.3,
        appearance_weight: float = 0.5,
        pose_weight: float = 0.05,
        blend_radius: float = 0.05,
        feather: float = 0.09,
        margin: float = 0.45,
        smooth: float = 0.03,
        interpolation: str = "cubic",
        sharpen: float = 0.1,
    ) -> None:
        """bank: the person's mouth bank (an identity's; required).

        Tuning, all distances in inter-ocular distances (IOD), all costs in the shape
        cost's unit (an RMS point distance in IOD):
        candidates: entries per frame the plan chooses among (least shape cost first);
        smoothness: weight of the transition costs against the shape cost;
        jump_cost: cutting to an entry that does not play on from the last one (plus
        how much the two differ in shape and look);
        repeat_cost: holding an entry one more frame;
        max_step: the largest forward step, in the bank's own step between neighbouring
        entries of one footage, that still plays on (each step of difference from the
        bank's own costs repeat_cost);
        jaw_weight: weight of the jaw points 5-11 against the lip points in the shape cost;
        appearance_weight: weight of the difference in look (teeth, shading) in a jump's cost;
        pose_weight: cost per unit of nose-direction difference between an entry and the
        reference face (entries filmed turned away cost more);
        blend_radius: how far beyond the outer lips the crop covers fully;
        feather: the width of its soft edge on the skin;
        margin, smooth: of the warp, as the warp renderer's;
        interpolation: "cubic", "lanczos" or "linear" resampling of the crop;
        sharpen: amount of unsharp masking of the placed crop at the bank's own scale
        (UPSAMPLE_SHARPEN more when the crop is enlarged onto a bigger face); 0.1 gives
        back what the two resamplings take (mouth sharpness 0.9 -> 1.0 of the footage's).
        """
        if bank is None:
            raise FacetalkError("the retrieval renderer needs an identity: use --identity NAME")
        if len(bank) == 0:
            raise FacetalkError("the retrieval renderer needs an identity with mouth images; its bank is empty")
        if interpolation not in _INTERP:
            raise FacetalkError(f"unknown interpolation {interpolation!r}: use one of {', '.join(_INTERP)}")
        self.bank = bank
        self.candidates = int(candidates)
        self.smoothness = float(smoothness)
        self.jump_cost = float(jump_cost)
        self.repeat_cost = float(repeat_cost)
        self.max_step = int(max_step)
        self.jaw_weight = float(jaw_weight)
        self.appearance_weight = float(appearance_weight)
        self.pose_weight = float(pose_weight)
        self.blend_radius = float(blend_radius)
        self.feather = float(feather)
        self.margin = float(margin)
        self.smooth = float(smooth)
        self.interp = _INTERP[interpolation]
        self.sharpen = float(sharpen)
        self._neutral: np.ndarray | None = None
        self._plan: np.ndarray | None = None
        self._entries = _EntryTable(bank, self.jaw_weight, self.appearance_weight)
        self._prior = np.zeros(len(bank), np.float64)  # per-entry cost (pose) added to every frame

    # ---- set-up ---------------------------------------------------------------------

    def prepare(
        self, reference: np.ndarray, landmarks: np.ndarray, teeth_refs: Sequence[tuple[np.ndarray, np.ndarray]] = ()
    ) -> None:
        """Learn the closed neutral mouth of the face in reference (the target shapes are
        built on it) and its pose (entries filmed in another pose cost more). teeth_refs
        is not needed: the teeth come from the bank."""
        lm = np.asarray(landmarks, dtype=np.float64)
        self._neutral = neutral_from(lm)
        pose = _nose_direction(apply(to_canonical(lm), lm)[None])[0]
        self._prior = self.pose_weight * np.linalg.norm(self._entries.pose - pose, axis=1)
        self._plan = None

    def target_descriptor(self, mouth: np.ndarray) -> np.ndarray:
        """(d,) descriptor of the target shape for a mouth vector (len(MOUTH_PARAMS),)."""
        if self._neutral is None:
            raise RuntimeError("prepare() first")
        shaped = shape_canonical(self._neutral, mouth)
        return _descriptor(shaped[None], neutral_from(shaped)[None], self.jaw_weight)[0]

    def target_costs(self, mouth: np.ndarray) -> np.ndarray:
        """(n_entries,) shape cost (RMS point distance, IOD) of every entry for one mouth vector, plus its pose cost."""
        d = self._entries.desc - self.target_descriptor(mouth)
        return np.sqrt(np.einsum("ij,ij->i", d, d)) + self._prior

    # ---- planning -------------------------------------------------------------------

    def plan(self, mouth: np.ndarray) -> None:
        """Choose an entry for every output frame of the mouth sequence (n, len(MOUTH_PARAMS)).

        Per frame the `candidates` entries of least shape cost compete; a Viterbi pass
        picks the path of least total shape cost + smoothness * transition cost. Time
        and memory are linear in n (15,000 frames and a 1,500-entry bank: ~3 s on 2
        CPU cores, most of it building the target shapes)."""
        if self._neutral is None:
            raise RuntimeError("prepare() first")
        mouth = np.clip(np.asarray(mouth, dtype=np.float64).reshape(-1, len(MOUTH_PARAMS)), 0.0, 1.0)
        n = len(mouth)
        if n == 0:
            self._plan = np.zeros(0, np.int32)
            return
        cand, cost = self._candidates(mouth)
        self._plan = self._viterbi(cand, cost)

    @property
    def chosen(self) -> np.ndarray | None:
        """(n,) int32 bank entry per output frame of the last plan, or None."""
        return None if self._plan is None else self._plan.copy()

    def _candidates(self, mouth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-K entries per frame by shape cost: (n, K) int32 indices, (n, K) float64 costs."""
        uniq, inverse = np.unique(mouth, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        shaped = np.stack([shape_canonical(self._neutral, m) for m in uniq])
        q = _descriptor(shaped, np.stack([neutral_from(x) for x in shaped]), self.jaw_weight)
        e = self._entries.desc
        k = min(self.candidates, len(e))
        e_sq = np.einsum("ij,ij->i", e, e)
        cand = np.empty((len(uniq), k), np.int32)
        cost = np.empty((len(uniq), k), np.float64)
        for s in range(0, len(uniq), 2048):  # (chunk, n_entries) at a time
            qs = q[s : s + 2048]
            d2 = np.maximum(np.einsum("ij,ij->i", qs, qs)[:, None] + e_sq[None] - 2.0 * qs @ e.T, 0.0)
            c = np.sqrt(d2) + self._prior[None]
            part = np.argpartition(c, k - 1, axis=1)[:, :k] if k < c.shape[1] else np.tile(np.arange(k), (len(c), 1))
            pc = np.take_along_axis(c, part, axis=1)
            order = np.lexsort((part, pc), axis=1)  # by cost, ties by index: deterministic
            cand[s : s + 2048] = np.take_along_axis(part, order, axis=1)
            cost[s : s + 2048] = np.take_along_axis(pc, order, axis=1)
        return cand[inverse], cost[inverse]

    def _transitions(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Transition costs (m, K, K) from entries a (m, K) at frame t-1 to b (m, K) at t."""
        t = self._entries
        fa, fb = t.source[a], t.source[b]  # (m, K, 2)
        same = fa[:, :, None, 0] == fb[:, None, :, 0]
        step = fb[:, None, :, 1] - fa[:, :, None, 1]
        plays_on = same & (step > 0) & (step <= self.max_step * t.stride)
        repeat = a[:, :, None] == b[:, None, :]
        # playing on at the footage's own pace is free; faster or slower costs like a hold
        pace = self.repeat_cost * np.abs(step - t.stride) / t.stride
        # shape and look difference of a jump: |x|^2 + |y|^2 - 2 x.y on the joint vectors
        va, vb = t.joint[a], t.joint[b]  # (m, K, d)
        sq_a = np.einsum("mkd,mkd->mk", va, va)
        sq_b = np.einsum("mkd,mkd->mk", vb, vb)
        diff = np.sqrt(np.maximum(sq_a[:, :, None] + sq_b[:, None, :] - 2.0 * va @ vb.transpose(0, 2, 1), 0.0))
        jump = self.jump_cost + diff
        out = np.where(plays_on, pace, np.where(repeat, self.repeat_cost, jump))
        return out

    def _viterbi(self, cand: np.ndarray, cost: np.ndarray) -> np.ndarray:
        n, k = cand.shape
        back = np.zeros((n, k), np.int16 if k < 32768 else np.int32)
        acc = cost[0].copy()
        cols = np.arange(k)
        chunk = 1024
        for s in range(1, n, chunk):
            e = min(n, s + chunk)
            trans = self.smoothness * self._transitions(cand[s - 1 : e - 1], cand[s:e])
            for i, t in enumerate(range(s, e)):
                tot = acc[:, None] + trans[i]
                best = np.argmin(tot, axis=0)
                back[t] = best
                acc = tot[best, cols] + cost[t]
        path = np.empty(n, np.int32)
        j = int(np.argmin(acc))
        for t in range(n - 1, -1, -1):
            path[t] = cand[t, j]
            j = int(back[t, j])
        return path

    # ---- rendering ------------------------------------------------------------------

    def choose(self, mouth: np.ndarray, k: int | None = None) -> int:
        """Bank entry drawn for output frame k (the plan's choice), or, with k None or
        outside the plan, the entry of least cost for this mouth vector alone."""
        if k is not None and self._plan is not None and 0 <= k < len(self._plan):
            return int(self._plan[k])
        return int(np.argmin(self.target_costs(mouth)))

    def render(
        self,
        frame: np.ndarray,
        landmarks: np.ndarray | None,
        mouth: np.ndarray,
        blink: float = 0.0,
        k: int | None = None,
    ) -> Patch | None:
        """Patch of frame (H, W, 3) uint8 showing the chosen real mouth for mouth
        (len(MOUTH_PARAMS),) and blink in [0, 1]; k: output frame index into the plan."""
        if landmarks is None:
            return None
        lm = np.asarray(landmarks, dtype=np.float64)
        if self._neutral is None:
            self.prepare(frame, lm)  # no reference given: the frame is its own
        e = self.choose(mouth, k)
        t = self._entries
        blink = float(np.clip(blink, 0.0, 1.0))

        # the entry's lips on this frame: canonical, its closed upper lip on the frame's;
        # the jaw as the frame's closed jaw plus the entry's drop
        to_c = to_canonical(lm)
        closed = neutral_from(lm)
        shift = closed[UPPER_LIP].mean(axis=0) - t.anchor[e]
        canon = closed.copy()
        canon[LIPS] = t.landmarks[e, LIPS] + shift
        canon[4:13] = closed[4:13] + t.drop[e]
        from_c = invert(to_c)
        tgt = lm.copy()
        tgt[MOVED] = apply(from_c, canon[MOVED])
        close_lids(tgt, blink)
        region = warp_region(frame, lm, tgt, blink, margin=self.margin, smooth=self.smooth)
        if region is None:
            return None
        image = region.image
        h, w = image.shape[:2]
        origin = np.array([region.x0, region.y0], np.float64)
        iod = region.iod

        # blend mask: the outer lips, grown by blend_radius, soft over feather, all in roi pixels
        lips = tgt[48:60] - origin
        grow, soft = self.blend_radius * iod, max(2.0, self.feather * iod)
        reach = grow + soft + 2
        bx0, by0 = np.floor(lips.min(axis=0) - reach).astype(int)
        bx1, by1 = np.ceil(lips.max(axis=0) + reach).astype(int)
        bx0, by0, bx1, by1 = max(bx0, 1), max(by0, 1), min(bx1, w - 1), min(by1, h - 1)
        alpha_full = np.zeros((h, w), np.float32)
        if bx1 - bx0 >= 4 and by1 - by0 >= 4:
            bw, bh = bx1 - bx0, by1 - by0
            poly = np.zeros((bh, bw), np.uint8)
            cv2.fillPoly(poly, [np.round((lips - [bx0, by0]) * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
            # px outside the lips (scipy's exact transform: OpenCV's varies in the last bit
            # with buffer alignment, and renders must repeat exactly)
            dist = distance_transform_edt(poly == 0).astype(np.float32)
            alpha = _smoothstep((grow + soft - dist) / soft).astype(np.float32)

            # crop pixel -> entry canonical -> frame canonical (+shift) -> frame pixel -> box pixel
            c2c = invert(self.bank.canon_to_crop())
            c2c[:, 2] += shift
            m = _compose(from_c, c2c)
            m[:, 2] -= origin + [bx0, by0]
            up = iod / self.bank.scale  # frame pixels per crop pixel
            source = self.bank.images[e]
            if up < 0.8:  # the crop is finer than the frame: low-pass it so it does not alias
                sigma = 0.45 * np.sqrt(1.0 / up**2 - 1.0)
                source = gaussian_filter(source.astype(np.float32), (sigma, sigma, 0), mode="nearest", truncate=3.0)
                source = np.clip(source + 0.5, 0, 255).astype(np.uint8)  # 8-bit warps are exact fixed-point
            crop = cv2.warpAffine(source, m, (bw, bh), flags=self.interp, borderMode=cv2.BORDER_REPLICATE)
            out = crop.astype(np.float32)
            amount = self.sharpen + UPSAMPLE_SHARPEN * float(np.clip((up - 1.0) / 0.1, 0.0, 1.0))
            if amount > 0:
                # unsharp mask: gives back what the two resamplings (footage -> crop ->
                # frame) take from the finest detail; sigma: a crop pixel on the frame
                sigma = 0.8 * max(1.0, up)
                out += amount * (out - gaussian_filter(out, (sigma, sigma, 0), mode="nearest", truncate=3.0))

            # colour: per-channel gain matching the crop to the warped frame on a ring
            # of skin and lip edge around the lips
            under = image[by0:by1, bx0:bx1]
            ring = ((dist > 0.3 * grow) & (dist < grow + soft)).astype(np.uint8)
            if cv2.countNonZero(ring) >= 16:
                mine = np.array(cv2.mean(crop, ring)[:3])  # (8-bit sums: exact)
                theirs = np.array(cv2.mean(under, ring)[:3])
                gain = np.clip((theirs + 1.0) / (mine + 1.0), 0.75, 1.33)
                out *= gain.astype(np.float32)
            a = alpha[..., None]
            blended = np.clip(out, 0.0, 255.0) * a + under.astype(np.float32) * (1.0 - a)
            image[by0:by1, bx0:bx1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
            alpha_full[by0:by1, bx0:bx1] = alpha
        mask = region_mask(region, (alpha_full,), solid=alpha_full)
        return Patch(image=image, mask=mask, x0=region.x0, y0=region.y0)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine a after b."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def _nose_direction(canon: np.ndarray) -> np.ndarray:
    """(n, 2) nose bridge direction (27 -> 30) of canonical landmarks (n, 68, 2): head yaw and pitch."""
    return canon[:, 30] - canon[:, 27]


def _descriptor(shapes: np.ndarray, closed: np.ndarray, jaw_weight: float) -> np.ndarray:
    """(n, d) shape descriptors of canonical landmarks (n, 68, 2) with their closed forms
    (n, 68, 2): lips relative to the closed upper lip, jaw drop weighted by jaw_weight,
    scaled so the Euclidean distance of two descriptors is their weighted RMS point distance."""
    anchor = closed[:, UPPER_LIP].mean(axis=1, keepdims=True)
    lips = (shapes[:, LIPS] - anchor).reshape(len(shapes), -1)
    jaw = (shapes[:, JAW] - closed[:, JAW]).reshape(len(shapes), -1)
    norm = np.sqrt(20 + jaw_weight * 7)
    return np.concatenate([lips, np.sqrt(jaw_weight) * jaw], axis=1) / norm


class _EntryTable:
    """What the renderer needs of each bank entry, computed once: canonical landmarks,
    closed upper-lip anchor, jaw drop, shape descriptor, a small look thumbnail, pose,
    and footage order."""

    def __init__(self, bank: MouthBank, jaw_weight: float, look_weight: float) -> None:
        lm = np.asarray(bank.landmarks, dtype=np.float64)
        closed = np.stack([neutral_from(x) for x in lm])
        self.landmarks = lm
        self.anchor = closed[:, UPPER_LIP].mean(axis=1)  # (n, 2)
        self.drop = lm[:, 4:13] - closed[:, 4:13]  # (n, 9, 2)
        self.desc = _descriptor(lm, closed, jaw_weight)
        self.pose = _nose_direction(lm)
        self.source = np.asarray(bank.source, dtype=np.int64)
        self.stride = _stride(self.source)
        self.look = _principal(_thumbnails(bank, self.anchor, look_weight), LOOK_COMPONENTS)
        self.joint = np.concatenate([self.desc, self.look], axis=1)

    def __len__(self) -> int:
        return len(self.desc)


def _stride(source: np.ndarray) -> int:
    """Footage frames between neighbouring entries of a bank (1 when it keeps runs of
    consecutive frames): the most common forward step within one footage."""
    order = np.lexsort((source[:, 1], source[:, 0]))
    s = source[order]
    step = np.diff(s[:, 1])[np.diff(s[:, 0]) == 0]
    step = step[step > 0]
    if len(step) == 0:
        return 1
    values, counts = np.unique(step, return_counts=True)
    return int(values[np.argmax(counts)])


def _principal(x: np.ndarray, k: int) -> np.ndarray:
    """x (n, d) projected on its k leading principal axes (centred): Euclidean
    distances between rows are kept up to the variance left out (16 axes keep 93-95 %
    of mouth thumbnails' on three clips), and jump costs get several times cheaper."""
    if x.shape[1] <= k:
        return x.astype(np.float64)
    c = x.astype(np.float64) - x.mean(axis=0)
    # the leading eigenvectors of the (d, d) scatter matrix are the leading right singular
    # vectors of c; LAPACK's SVD of c took 0.1-2.4 s on two busy cores, this 0.03-0.17 s
    _, vecs = np.linalg.eigh(c.T @ c)  # eigenvalues ascending
    return c @ vecs[:, : -k - 1 : -1]


def _thumbnails(bank: MouthBank, anchor: np.ndarray, weight: float) -> np.ndarray:
    """(n, d) grey thumbnails of each entry's mouth (mean removed, in [0, 1] units)
    scaled so their Euclidean distance is weight times the RMS grey difference."""
    tw, th = _THUMB_SIZE
    x0, y0, x1, y1 = _THUMB_BOX
    to_crop = bank.canon_to_crop()
    out = np.empty((len(bank), th * tw), np.float32)
    for i, img in enumerate(bank.images):
        # thumbnail pixel -> canonical (relative to the anchor) -> crop pixel
        sx, sy = (x1 - x0) / tw, (y1 - y0) / th
        t2c = np.array([[sx, 0.0, x0 + anchor[i, 0] + 0.5 * sx], [0.0, sy, y0 + anchor[i, 1] + 0.5 * sy]])
        m = _compose(to_crop, t2c)
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        # box-filter to the thumbnail's pixel size first, so it is not aliased
        k = max(1, round(bank.scale * sx))
        grey = cv2.blur(grey, (k, k)) if k > 1 else grey
        thumb = cv2.warpAffine(grey, m, (tw, th), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
        out[i] = (thumb - thumb.mean()).ravel()
    return out * (weight / np.sqrt(th * tw))
