"""--enhancer MODEL.onnx: a user-supplied face-restoration model (GFPGAN, CodeFormer and
the like) run on the face of each frame through onnxruntime.

facetalk does the rest: the face is aligned from its landmarks to the FFHQ template the
models were trained on (the 5-point template of GFPGAN/facexlib, eyes, nose tip and mouth
corners, at 512 px), given as NCHW float32 RGB in [-1, 1], and the restored face is warped
back and blended in through a feathered square, so only pixels near the face change.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..face import geometry

# facexlib's FFHQ 5-point template for a 512 px face: left eye, right eye, nose tip,
# left and right mouth corners (image left/right)
FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)
DEFAULT_SIZE = 512  # a model without a fixed input size gets the template's
BORDER = (135, 133, 132)  # what facexlib fills outside the frame with: a neutral grey
THREADS = 2
FIDELITY = 0.5  # CodeFormer's second input (w): balance of quality and faithfulness


def five_points(lm: np.ndarray) -> np.ndarray:
    """(5, 2) points of 68 landmarks in the template's order."""
    lm = np.asarray(lm, dtype=np.float64)
    return np.array([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])


def _providers(device: str) -> tuple[list[str], str | None]:
    import onnxruntime as ort

    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"], None
        return ["CPUExecutionProvider"], "--device cuda: this onnxruntime has no CUDA, so --enhancer runs on the CPU"
    return ["CPUExecutionProvider"], None


class FaceRestorer:
    """An ONNX face-restoration model and how to feed it.

        restorer = FaceRestorer("gfpgan.onnx")        # InputError if it is not usable
        frame = restorer.apply(frame, landmarks)       # in place, near the face only

    Thread-safe: onnxruntime sessions may run from several threads at once."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("--enhancer needs onnxruntime: pip install 'facetalk[enhance]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"--enhancer file {self.path} does not exist: check the path")
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: a user's model may warn about its own graph
        providers, self.note = _providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several kinds for a bad file
            # onnxruntime quotes the path: named before cutting, so a long path is not cut in two
            reason = " ".join(str(e).replace(str(self.path), self.path.name).split())[:160]
            raise InputError(f"--enhancer {self.path} cannot be loaded by onnxruntime ({reason}): give a "
                             "face-restoration model exported to ONNX (GFPGAN, CodeFormer)") from None
        inputs = self.session.get_inputs()
        main = inputs[0]
        shape = list(main.shape)
        bad = f"--enhancer {self.path}: its input {main.name!r} has shape {shape}"
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise InputError(f"{bad}, not a batch of RGB images (N, 3, H, W): give a face-restoration model")
        if main.type != "tensor(float)":
            raise InputError(f"{bad} of {main.type}: facetalk feeds float32 images in [-1, 1]")
        h, w = shape[2], shape[3]
        if isinstance(h, int) and isinstance(w, int) and h != w:
            raise InputError(f"{bad}: the face crop must be square (H = W)")
        fixed = [d for d in (h, w) if isinstance(d, int) and d > 0]
        self.size = fixed[0] if fixed else DEFAULT_SIZE
        if self.size < 16:
            raise InputError(f"{bad}: too small a face ({self.size} px)")
        self.input = main.name
        self.extra = {}
        for extra in inputs[1:]:  # CodeFormer: a scalar fidelity weight
            dims = [d for d in extra.shape if d != 1]
            if dims or extra.type not in ("tensor(double)", "tensor(float)"):
                raise InputError(f"--enhancer {self.path}: its extra input {extra.name!r} ({extra.type} {extra.shape}) "
                                 "is not a scalar weight: facetalk feeds one image (and CodeFormer's weight)")
            dtype = np.float64 if extra.type == "tensor(double)" else np.float32
            self.extra[extra.name] = np.full([1] * len(extra.shape), FIDELITY, dtype=dtype)
        self.template = FFHQ_512 * (self.size / 512.0)
        self.mask = _feather(self.size)

    def align(self, lm: np.ndarray) -> np.ndarray:
        """2x3 similarity taking frame pixels to the model's size x size face crop."""
        return geometry.fit_similarity(five_points(lm), self.template)

    def run(self, face: np.ndarray) -> np.ndarray:
        """The model on one (size, size, 3) uint8 RGB face; the restored face, same shape."""
        x = face.astype(np.float32).transpose(2, 0, 1)[None] * np.float32(2 / 255) - np.float32(1)
        y = self.session.run(None, {self.input: np.ascontiguousarray(x), **self.extra})[0]
        y = np.asarray(y)
        if y.ndim != 4 or y.shape[1] != 3:
            raise InputError(f"--enhancer {self.path}: its output has shape {list(y.shape)}, not an RGB image "
                             "(1, 3, H, W): give a face-restoration model")
        img = np.clip((y[0].transpose(1, 2, 0) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        if img.shape[:2] != (self.size, self.size):
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return img

    def apply(self, frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """Restore the face of frame (H, W, 3) uint8 RGB with landmarks lm (68, 2), in
        place near the face; returns frame. Pixels outside the face square never change."""
        lm = np.asarray(lm, dtype=np.float64)
        if not np.isfinite(lm).all() or geometry.interocular(lm) < 4:
            return frame
        m = self.align(lm)
        s = self.size
        face = cv2.warpAffine(frame, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=BORDER)
        restored = self.run(face)
        inv = geometry.invert(m)
        corners = geometry.apply(inv, np.array([[0, 0], [s, 0], [0, s], [s, s]], dtype=np.float64))
        fh, fw = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), [fw, fh])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return frame
        # warp back only onto the face's box: cost follows the face, not the frame
        local = inv.copy()
        local[:, 2] -= (x0, y0)
        size = (int(x1 - x0), int(y1 - y0))
        back = cv2.warpAffine(restored, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        w = cv2.warpAffine(self.mask, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        w[w < 1e-3] = 0.0
        region = np.ascontiguousarray(frame[y0:y1, x0:x1])
        frame[y0:y1, x0:x1] = cv2.blendLinear(back, region, w, np.float32(1.0) - w)
        return frame


def _feather(size: int) -> np.ndarray:
    """(size, size) float32 weight: 1 inside, falling to 0 over the outer ~1/10 of the square."""
    m = np.zeros((size, size), np.float32)
    inset = max(2, size // 16)
    m[inset:-inset, inset:-inset] = 1.0
    return cv2.GaussianBlur(m, (0, 0), max(1.0, size / 40))


__all__ = ["FFHQ_512", "FaceRestorer", "five_points"]
