"""Turn an uploaded file into a clean smear image, or refuse it with a clear message.

No Django here: bytes in, a `CleanImage` (or `UploadRejected`) out, so the rules
can be tested and reused without a database.

What is stored, and why:

- JPEG whose pixels need no rotation: the original bytes with the metadata
  segments cut out (EXIF, XMP, IPTC, comments, MPF previews, anything after the
  image). The compressed pixel data is copied byte for byte, so the decoded
  pixels are exactly the uploader's; re-saving a JPEG would degrade them.
- PNG whose pixels need no rotation: the original chunks, minus text, time,
  EXIF and unknown ancillary chunks; the compressed pixel data is copied as is.
- Everything else (TIFF, BMP, or a JPEG/PNG with an EXIF orientation to apply):
  decoded, rotated upright and stored as PNG, which is lossless. Browsers cannot
  show TIFF, and BMP is uncompressed, so PNG also suits serving.

Colour profiles (ICC, Adobe, sRGB, gamma) are kept: they describe how to render
the pixels, not who or what took them.
"""

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")
THUMBNAIL_SIZE = (320, 320)
ORIENTATION_TAG = 0x0112

# PNG chunks that describe pixels or their rendering; every other chunk is dropped.
PNG_KEPT_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}
    | {b"pHYs", b"bKGD", b"cICP", b"mDCv", b"cLLi"}
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SAVABLE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})


class UploadRejected(ValueError):
    """The file is not an image we keep; the message is written for the uploader."""


@dataclass(frozen=True)
class CleanImage:
    content: bytes
    format: str  # what is stored: "JPEG" or "PNG"
    original_format: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes  # JPEG: a preview may be lossy, the stored image never is


def image_clean(stream: BinaryIO, *, name: str, max_bytes: int, max_pixels: int) -> CleanImage:
    """Validate an uploaded image and return what to store; raise UploadRejected otherwise."""
    data = stream.read(max_bytes + 1)
    if not data:
        raise UploadRejected(f"{name}: the file is empty.")
    if len(data) > max_bytes:
        raise UploadRejected(f"{name}: the file is larger than {max_bytes // (1024 * 1024)} MB.")

    image = _open_header(data, name=name, max_pixels=max_pixels)
    # Image.open names the format it recognised; only images made in memory have none.
    assert image.format is not None
    original_format = "JPEG" if image.format == "MPO" else image.format
    try:
        orientation = int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:
        # Unreadable EXIF is metadata we drop anyway; the pixels decide.
        orientation = 1
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise UploadRejected(
            f"{name}: the image could not be decoded completely (truncated or damaged)."
        ) from exc

    if original_format == "JPEG" and orientation == 1:
        content, stored_format = _jpeg_without_metadata(data, name=name), "JPEG"
    elif original_format == "PNG" and orientation == 1:
        content, stored_format = _png_without_metadata(data, name=name), "PNG"
    else:
        image = ImageOps.exif_transpose(image)
        content, stored_format = _png_lossless(image), "PNG"

    return CleanImage(
        content=content,
        format=stored_format,
        original_format=original_format,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(content).hexdigest(),
        thumbnail=_thumbnail(image),
    )


def _open_header(data: bytes, *, name: str, max_pixels: int) -> Image.Image:
    """Read only the header, and refuse what is too big before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            # Our own limit below is the one that speaks to the user.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[*ACCEPTED_FORMATS])
    except Image.DecompressionBombError as exc:
        raise UploadRejected(f"{name}: the image has too many pixels to decode safely.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        raise UploadRejected(
            f"{name}: not an image we accept; upload a JPEG, PNG, TIFF or BMP file."
        ) from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise UploadRejected(f"{name}: the image has no pixels.")
    if width * height > max_pixels:
        raise UploadRejected(
            f"{name}: the image has too many pixels ({width} x {height}; "
            f"at most {max_pixels:,} are accepted)."
        )
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise UploadRejected(
            f"{name}: the file holds several images; upload each page as its own file."
        )
    return image


def _jpeg_without_metadata(data: bytes, *, name: str) -> bytes:
    """Copy a JPEG's segments up to its end-of-image marker, leaving out metadata ones."""
    if data[:2] != b"\xff\xd8":
        raise UploadRejected(f"{name}: the JPEG is damaged.")
    out = [b"\xff\xd8"]
    pos = 2
    while True:
        marker_at = data.find(b"\xff", pos)
        if marker_at < 0 or marker_at + 1 >= len(data):
            raise UploadRejected(f"{name}: the JPEG is truncated (it has no end marker).")
        marker = data[marker_at + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos = marker_at + 1
            continue
        if marker == 0xD9:  # end of image: whatever follows is not part of it
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            out.append(data[marker_at : marker_at + 2])
            pos = marker_at + 2
            continue
        if marker_at + 4 > len(data):
            raise UploadRejected(f"{name}: the JPEG is truncated.")
        (length,) = struct.unpack(">H", data[marker_at + 2 : marker_at + 4])
        end = marker_at + 2 + length
        if end > len(data):
            raise UploadRejected(f"{name}: the JPEG is truncated.")
        segment = data[marker_at:end]
        if _jpeg_segment_kept(marker, segment[4:]):
            out.append(segment)
        pos = end
        if marker == 0xDA:  # start of scan: copy the entropy-coded data up to the next marker
            scan_end = _jpeg_scan_end(data, pos)
            out.append(data[pos:scan_end])
            pos = scan_end


def _jpeg_segment_kept(marker: int, payload: bytes) -> bool:
    if marker == 0xFE:  # comment
        return False
    if marker == 0xE0:  # JFIF: density only, and only when it carries no thumbnail
        return payload[:5] == b"JFIF\x00" and payload[12:14] == b"\x00\x00"
    if marker == 0xE2:
        return payload.startswith(b"ICC_PROFILE\x00")
    if marker == 0xEE:  # Adobe: tells decoders which colour transform was used
        return payload.startswith(b"Adobe")
    return not 0xE0 <= marker <= 0xEF  # every other APPn is metadata


def _jpeg_scan_end(data: bytes, pos: int) -> int:
    """Where entropy-coded data ends: the first 0xFF that is not stuffing or a restart."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
            continue
        return pos


def _png_without_metadata(data: bytes, *, name: str) -> bytes:
    """Copy a PNG's pixel and colour chunks up to IEND; text, time and EXIF stay out."""
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        if kind in PNG_KEPT_CHUNKS:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)
    raise UploadRejected(f"{name}: the PNG is truncated (it has no end chunk).")


def _png_lossless(image: Image.Image) -> bytes:
    if image.mode not in PNG_SAVABLE_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    # Only what describes the pixels goes back in: no EXIF, XMP or text.
    keep: dict[str | tuple[int, int], Any] = {
        key: image.info[key] for key in ("icc_profile", "transparency") if key in image.info
    }
    image.info = keep
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _thumbnail(image: Image.Image) -> bytes:
    thumb = image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE)
    if thumb.mode not in ("RGB", "L"):
        thumb = thumb.convert("RGB")
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
