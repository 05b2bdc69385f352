"""Reading a photo: JPEG, PNG or WebP to an upright RGB uint8 array of bounded size.

Huge photos are handled without decoding them at full size where the format allows:
a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (Image.draft) when that is still
larger than the target, so a 30000x30000 JPEG never exists in memory at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from ..errors import InputError
from .formats import classify, error_reason

# Decoded pixels we accept at once (after JPEG draft reduction): 100 MP is 300 MB as RGB.
# Pillow's own decompression-bomb check (about 179 MP) is replaced by this one, which
# counts the pixels actually decoded rather than the header's full size.
DEFAULT_MAX_PIXELS = 100_000_000

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class LoadedImage:
    """A photo ready for the pipeline.

    rgb: (H, W, 3) uint8, upright (EXIF orientation applied), long side <= max_side.
    note: what was changed on the way, for the user (downscaled, transparency), or None.
    original_size: (width, height) of the upright image as stored in the file.
    """

    rgb: np.ndarray
    note: str | None
    original_size: tuple[int, int]


def _open_by_signature(path: Path) -> Image.Image:
    """Open the header only, choosing the decoder from the file's first bytes.

    The plugin classes are used directly (not Image.open) because Image.open applies
    Pillow's process-wide decompression-bomb limit to the full size even when the image
    will be decoded reduced; load_image applies its own limit to the decoded size.
    """
    with open(path, "rb") as fp:
        head = fp.read(16)
    if head.startswith(b"\xff\xd8\xff"):
        return JpegImagePlugin.JpegImageFile(str(path))
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PngImagePlugin.PngImageFile(str(path))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WebPImagePlugin.WebPImageFile(str(path))
    raise InputError(f"{path} is not a JPEG, PNG or WebP image: convert it to one of those")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info


def _to_rgb(im: Image.Image) -> tuple[Image.Image, bool]:
    """Any loaded mode -> 8-bit RGB; transparent pixels composited on white.

    Returns the RGB image and whether it had transparency.
    """
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im)
        if im.mode.startswith("I;16") or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
            arr = np.clip(arr, 0, 65535).astype(np.uint16) >> 8  # 16-bit -> top 8 bits
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] == 255:  # an alpha channel that hides nothing
            return rgba.convert("RGB"), False
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), True
    return (im if im.mode == "RGB" else im.convert("RGB")), False


def load_image(
    path: str | Path, max_side: int = 1920, max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Load a JPEG/PNG/WebP photo as upright RGB, downscaled so its long side <= max_side.

    The size is read from the header first; a JPEG larger than needed is decoded at a
    reduced scale. If the pixels that would be decoded exceed max_pixels (possible for
    PNG and WebP, which cannot decode reduced), InputError asks for a smaller file.
    Raises InputError for missing, unsupported, truncated or damaged files.
    """
    p = Path(path)
    classify(p, "image")
    try:
        im = _open_by_signature(p)
        try:
            return _load_opened(im, p, max_side, max_pixels)
        finally:
            im.close()
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {p}: {error_reason(e)} (is it truncated or damaged?)") from e


def _load_opened(im: Image.Image, p: Path, max_side: int, max_pixels: int) -> LoadedImage:
    w, h = im.size
    orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    swaps = transpose in (
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
    )
    original_size = (h, w) if swaps else (w, h)

    # Fitting the long side is symmetric, so the target is computed before rotating.
    scale = min(1.0, max_side / max(w, h))
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 1.0 and isinstance(im, JpegImagePlugin.JpegImageFile):
        im.draft(None, target)  # libjpeg DCT scaling: keeps at least `target`
    dw, dh = im.size
    if dw * dh > max_pixels:
        raise InputError(
            f"{p} is {original_size[0]}x{original_size[1]} ({w * h / 1e6:.0f} megapixels), too large "
            f"to decode: save it with at most {max_side} px on its long side (or as JPEG)"
        )
    im.load()
    rgb, had_alpha = _to_rgb(im)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if transpose is not None:
        rgb = rgb.transpose(transpose)

    notes = []
    if scale < 1.0:
        notes.append(
            f"{p.name} is {original_size[0]}x{original_size[1]}; downscaled to {rgb.size[0]}x{rgb.size[1]}"
        )
    if had_alpha:
        notes.append(f"{p.name} has transparency; composited on white")
    return LoadedImage(
        rgb=np.array(rgb, dtype=np.uint8), note="; ".join(notes) or None, original_size=original_size
    )
