"""Image decoding and resizing shared by training and inference, so the two cannot drift.

Only Pillow and numpy: the inference worker imports this without TensorFlow's training
code. Every image a model sees, in training and in the worker, went through
``load_for_model``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageDecodeError", "load_for_model", "load_rgb", "resize_for_model"]

# Images over Image.MAX_IMAGE_PIXELS are refused by the explicit size check in _decoded,
# not by turning Pillow's warning into an error: warnings.catch_warnings() swaps the
# process-wide filter list, so in the decode threads one thread's exit could drop another's
# "error" filter mid-open. Pillow still raises DecompressionBombError above twice the limit.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can fully decode (unknown format, truncated, bomb)."""


def load_for_model(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes into the (size, size, 3) uint8 array a model of that input size sees.

    Exactly ``resize_for_model(load_rgb(data, at_least=size), size)``; an RGB image (every
    JPEG smear) goes from the decoder to the resize without a numpy round trip.
    Raises ImageDecodeError for bytes that are not a whole image.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    return _decoded(data, at_least=size, finish=lambda img: _model_input(img, size))


def _model_input(img: Image.Image, size: int) -> np.ndarray:
    if img.mode != "RGB":  # scaled, composited or converted first, as load_rgb does
        return resize_for_model(_to_rgb_array(img), size)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_rgb(data: bytes, *, at_least: int | None = None) -> np.ndarray:
    """Decode image bytes of any Pillow format to an upright RGB uint8 array (H, W, 3).

    EXIF orientation is applied; transparency is composited onto white (a slide is
    bright where nothing is); 16-bit and float greyscale are scaled to 0-255.

    ``at_least`` is for callers that will shrink the image to that many pixels a side: a
    JPEG is then decoded at the smallest of libjpeg's 1/2, 1/4 and 1/8 scales that keeps
    both sides at least that long. That reduction happens in the DCT domain, 2-3x faster
    than decoding a 640x480 smear whole, and the resized pixels differ by about 0.3 grey
    levels on average (tests/runtime/test_preprocess.py measures it on real smears).
    """
    return _decoded(data, at_least=at_least, finish=_to_rgb_array)


def _decoded(
    data: bytes, *, at_least: int | None, finish: Callable[[Image.Image], np.ndarray]
) -> np.ndarray:
    """``finish`` applied to the decoded, upright image; Pillow's errors as ImageDecodeError."""
    if not data:
        raise ImageDecodeError("empty file: no image data")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            limit = Image.MAX_IMAGE_PIXELS  # None only where someone turned Pillow's off
            if limit is not None and width * height > limit:
                raise ImageDecodeError(
                    f"image too large to decode safely: {width} x {height} pixels, "
                    f"more than {limit:,}"
                )
            if at_least is not None:
                img.draft(None, (at_least, at_least))  # a no-op for all but JPEG
            img.load()  # force the full decode now, so truncation fails here
            # In place: an upright image (every smear so far) is then not copied; the copy
            # was a third of decoding and resizing a 640x480 smear (1.3 -> 0.9 ms here).
            ImageOps.exif_transpose(img, in_place=True)
            return finish(img)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError/ValueError.
        raise ImageDecodeError(
            f"image could not be decoded (truncated or corrupt?): {exc}"
        ) from exc


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"decoded image has unusable shape {arr.shape}")
    return np.ascontiguousarray(arr)


def resize_for_model(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a whole RGB uint8 field to (size, size, 3) with Pillow's bilinear filter.

    The whole field is squeezed (no crop): a smear's cells may sit anywhere in it.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}")
    if arr.shape[0] == size and arr.shape[1] == size:
        return np.ascontiguousarray(arr)
    resized = Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
