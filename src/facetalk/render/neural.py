"""The neural renderer: a U-Net base model, plus an identity's LoRA adapter, repaints the
lower half of an aligned face crop for the target mouth shape.

Per frame: the frame is cut to the model's canonical face crop (neural.data.align_crop,
one similarity transform from the eyes); the target landmarks of the mouth vector
(mouth_shape.target_landmarks, the same shapes the warp renderer draws) are drawn as the
condition; the model repaints the crop's lower half from the masked crop, the reference
crop (prepare) and that drawing; the result is mapped back into the frame by the inverse
transform and blended through a feathered mask over the lower face (the old and the new
jaw line both inside it), zero on the patch's border. Where the face is larger in the
frame than in the crop, the frame's own fine detail (what the crop's resolution cannot
hold) is added back wherever the model left the crop unchanged, so skin and beard keep
their sharpness and only the changed mouth is at the model's resolution. Blinks reuse
the warp renderer's lid warp.

torch is imported when a renderer is made, never when this module is imported. A long-
lived worker passes one neural.adapters.BaseModelPool to every renderer (pool=), so the
base is loaded once and each job's adapter is switched in (set_adapter); merge=True runs
a copy with the adapter fused into the weights instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import FacetalkError
from ..neural.data import FACE_BOUNDS, align_crop, draw_mouth, mask_row
from ..types import Patch
from .mouth_shape import neutral_from, target_landmarks
from .warp import _border_window, close_lids, region_mask, warp_region

DETAIL_TOLERANCE = 0.06  # crop difference (0-1 units) at which the frame's own detail fades out


def adapter_name(ref: str) -> str:
    """A peft adapter name for an identity ref (peft names cannot hold '.')."""
    return re.sub(r"[^A-Za-z0-9_]", "_", ref)


class NeuralRenderer:
    """Mouth renderer running a neural base model, with an identity's adapter when it has one."""

    name = "neural"

    def __init__(
        self,
        base: str | Path | None = None,
        identity=None,
        adapter: str | Path | None = None,
        device: str = "cpu",
        merge: bool = False,
        pool=None,
        trust_pickle: bool = False,
        detail: bool = True,
        home: str | Path | None = None,
        bank=None,  # accepted (the pipeline hands identities' banks to renderers); not used
    ) -> None:
        """base: a base model folder (None: the one the identity's adapter was trained on,
        found under $FACETALK_HOME/models); identity: a loaded identity (identity.model.
        Identity) whose version holds an adapter (or a model of its own); adapter: an
        adapter folder instead of an identity's; device: "cpu" or "cuda"; merge: fuse the
        adapter into a copy of the weights (faster, no switching); pool: a shared
        BaseModelPool; trust_pickle: accept a pickle base weights file (weights_only=True);
        detail: add the frame's own fine detail back where the model changed nothing."""
        from ..neural import require_torch
        from ..neural.fit import adapter_entry, base_for

        require_torch()
        from ..neural.adapters import BaseModelPool
        from ..neural.check import ModelError

        entry = adapter_entry(identity) if identity is not None else None
        kind = entry.get("kind") if entry else None
        self.adapter: str | None = None
        folder: Path | None = None
        if kind == "model" and base is None:
            base_dir: Path | None = identity.path  # a model of the person's own: the version folder is its base folder
        elif kind == "lora":
            base_dir = base_for(identity, Path(base) if base is not None else None, Path(home) if home else None)
            folder, self.adapter = identity.path, adapter_name(identity.ref)
        else:
            base_dir = Path(base) if base is not None else None
        if adapter is not None:
            folder, self.adapter = Path(adapter), adapter_name(f"adapter-{Path(adapter).resolve()}")
        if base_dir is None and pool is None:
            raise FacetalkError("the neural renderer needs a base model (--base DIR) or an identity trained for it "
                                "('facetalk identity train NAME --base DIR')")
        if pool is None:
            pool = BaseModelPool(base_dir, device=device, trust_pickle=trust_pickle)
        elif base_dir is not None and kind != "model":
            from ..neural.check import check_base

            want = check_base(base_dir, trust_pickle=trust_pickle).sha256
            if want != pool.base.sha256:
                raise ModelError(f"the shared base model ({pool.base.name}) is not {base_dir}: "
                                 "give the pool that base, or no pool")
        self.pool = pool
        if folder is not None and self.adapter not in pool.adapters:
            label = f"{identity.ref}: adapter" if identity is not None and adapter is None else f"adapter {folder}"
            pool.add(self.adapter, folder, label=label)
        self.merge = bool(merge) and self.adapter is not None
        if self.merge:
            pool.merged(self.adapter)
        self.size = pool.base.config.size
        self.row = mask_row(self.size)
        self.detail = detail
        self._reference = None  # (1, 3, s, s) torch tensor
        self._neutral: np.ndarray | None = None

    # ---- set-up ---------------------------------------------------------------------

    def prepare(
        self, reference: np.ndarray, landmarks: np.ndarray, teeth_refs: Sequence[tuple[np.ndarray, np.ndarray]] = ()
    ) -> None:
        """The reference crop the model repaints from, and the person's closed neutral
        mouth (target shapes are built on it); teeth_refs is not needed."""
        import torch

        lm = np.asarray(landmarks, dtype=np.float64)
        crop, _, _ = align_crop(reference, lm, self.size)
        self._reference = torch.from_numpy(crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0).to(
            self.pool.device)
        self._neutral = neutral_from(lm)

    def plan(self, mouth: np.ndarray) -> None:
        """Nothing to plan: every frame is drawn from its own mouth vector."""

    # ---- rendering ------------------------------------------------------------------

    def crop_output(self, crop: np.ndarray, target_crop_lm: np.ndarray) -> np.ndarray:
        """The model's (s, s, 3) float32 crop in [0, 1]: crop's upper half, the lower half
        repainted for the target landmarks (68, 2) in crop pixels."""
        import torch

        s, row = self.size, self.row
        x = torch.from_numpy(crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0).to(self.pool.device)
        masked = x.clone()
        masked[:, :, row:] = 0.0
        cond = torch.from_numpy(draw_mouth(target_crop_lm, s)[None]).to(self.pool.device)
        out = self.pool.run(self.adapter, masked, self._reference, cond, merge=self.merge)
        gen = x[0].clone()
        gen[:, row:] = out[0, :, row:].float().clamp(0.0, 1.0)
        return gen.permute(1, 2, 0).cpu().numpy()

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
        if self._reference is None or self._neutral is None:
            self.prepare(frame, lm)  # no reference given: the frame is its own
        blink = float(np.clip(blink, 0.0, 1.0))
        tgt = target_landmarks(lm, self._neutral, np.asarray(mouth, dtype=np.float64)).astype(np.float64)

        # the eyes first (the warp renderer's lid warp), on a working copy of the frame
        work, eyes = frame, None
        if blink > 0.0:
            region = warp_region(frame, lm, close_lids(lm.copy(), blink), blink, moved=())
            if region is not None:
                eyes = (region, region_mask(region))
                work = frame.copy()
                h, w = region.image.shape[:2]
                m = eyes[1][..., None]
                sl = np.s_[region.y0 : region.y0 + h, region.x0 : region.x0 + w]
                work[sl] = np.clip(region.image * m + frame[sl] * (1.0 - m) + 0.5, 0, 255).astype(np.uint8)

        s = self.size
        crop, src_c, m_fc = align_crop(work, lm, s)
        tgt_c = tgt @ m_fc[:, :2].T + m_fc[:, 2]
        gen = self.crop_output(crop, tgt_c)
        mask_c = self._crop_mask(src_c, tgt_c)

        # frame box covered by the crop's mask
        ys, xs = np.nonzero(mask_c > 0)
        if len(xs) == 0:
            return None
        corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1],
                            [xs.max() + 1, ys.max() + 1]], np.float64)
        inv = cv2.invertAffineTransform(m_fc)
        pts = corners @ inv[:, :2].T + inv[:, 2]
        h_img, w_img = frame.shape[:2]
        x0, y0 = (np.floor(pts.min(axis=0)) - 2).astype(int)
        x1, y1 = (np.ceil(pts.max(axis=0)) + 3).astype(int)
        if eyes is not None:
            region = eyes[0]
            x0, y0 = min(x0, region.x0), min(y0, region.y0)
            x1, y1 = max(x1, region.x0 + region.image.shape[1]), max(y1, region.y0 + region.image.shape[0])
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        w, h = x1 - x0, y1 - y0

        # crop -> frame box: region pixel (x, y) samples crop pixel m_fc @ (x + x0, y + y0)
        m_r = m_fc.copy()
        m_r[:, 2] += m_fc[:, :2] @ np.array([x0, y0], np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        gen_f = cv2.warpAffine(gen, m_r, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        mask_f = cv2.warpAffine(mask_c, m_r, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        under = work[y0:y1, x0:x1].astype(np.float32) / 255.0
        scale = float(np.hypot(m_fc[0, 0], m_fc[0, 1]))  # crop px per frame px
        if self.detail and scale < 0.9:
            # what the crop cannot hold: the frame minus its blur to the crop's pixel size
            sigma = 0.5 * np.sqrt(1.0 / scale**2 - 1.0)
            fine = under - gaussian_filter(under, (sigma, sigma, 0), mode="nearest", truncate=3.0)
            diff = np.abs(gen - crop.astype(np.float32) / 255.0).max(axis=2)
            agree = np.exp(-((gaussian_filter(diff, 1.0, mode="nearest") / DETAIL_TOLERANCE) ** 2)).astype(np.float32)
            agree_f = cv2.warpAffine(agree, m_r, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            gen_f = gen_f + agree_f[..., None] * fine
        mask_f = np.clip(mask_f, 0.0, 1.0) * _border_window(h, w, 2.0)
        image = np.where(mask_f[..., None] > 0, gen_f, under)
        mask = mask_f
        if eyes is not None:  # the lids' mask beside the mouth's (the image there is the lid warp's)
            region, m_eyes = eyes
            eh, ew = m_eyes.shape
            ox, oy = region.x0 - x0, region.y0 - y0
            full = np.zeros((h, w), np.float32)
            full[oy : oy + eh, ox : ox + ew] = m_eyes
            mask = np.maximum(mask, full * _border_window(h, w, 2.0))
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Patch(image=image, mask=mask.astype(np.float32), x0=int(x0), y0=int(y0))

    def _crop_mask(self, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
        """(s, s) float32 mask of the repainted lower face in the crop: the hull of the old
        and new jaw lines and the nose base, grown and feathered, only below the mask row
        (ramping in), zero on the crop's border."""
        s, row = self.size, self.row
        unit = s / (FACE_BOUNDS[2] - FACE_BOUNDS[0])  # crop px per inter-ocular distance
        pts = np.concatenate([src[2:15], tgt[2:15], src[31:36], tgt[48:68]])
        hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
        m = np.zeros((s, s), np.uint8)
        cv2.fillConvexPoly(m, hull, 255, cv2.LINE_AA, 4)
        grow = max(1, int(round(0.06 * unit)))
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        mask = gaussian_filter(m.astype(np.float32) / 255.0, max(0.8, 0.04 * unit), mode="constant", truncate=3.0)
        ramp = np.clip((np.arange(s, dtype=np.float32) - row) / max(1.0, 0.08 * unit), 0.0, 1.0)
        mask *= (ramp * ramp * (3 - 2 * ramp))[:, None]
        mask *= _border_window(s, s, max(2.0, 0.03 * unit))
        return mask.astype(np.float32)

