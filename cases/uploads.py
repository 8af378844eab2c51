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

Colour profiles describe how to render the pixels, so they are kept, but only as
what they claim to be, since their segments are where "metadata stripping" usually
forgets to look:

- an ICC profile (JPEG APP2 ICC_PROFILE segments, PNG iCCP) is kept only if LittleCMS
  (PIL.ImageCms) parses it; it is then written anew from its tags, which drops whatever
  was appended to it or hidden between its tags, and the text of its descriptions and
  copyright and the content of any tag that is not colour data are blanked. A profile
  that does not parse is dropped (the pixels are then taken as sRGB);
- an Adobe APP14 segment keeps its 12 bytes of colour-transform flags and nothing else;
- sRGB, gamma and chromaticity chunks hold numbers only.
"""

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")
THUMBNAIL_SIZE = (320, 320)
ORIENTATION_TAG = 0x0112

# PNG chunks that describe pixels or their rendering; every other chunk is dropped.
PNG_KEPT_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}
    | {b"pHYs", b"bKGD", b"cICP", b"mDCv", b"cLLi"}
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_ICC_MARKER = b"ICC_PROFILE\x00"
# Payload of one APP2 segment: 65535 less the length field, the marker name and the
# chunk number and count.
JPEG_ICC_CHUNK = 65535 - 2 - len(JPEG_ICC_MARKER) - 2
# "Adobe", version, two flag words and the colour transform: all an APP14 segment needs.
ADOBE_LENGTH = 12
# ICC tag types that hold colour data (numbers); each other tag's bytes are blanked.
ICC_DATA_TYPES = frozenset(
    {b"curv", b"para", b"XYZ ", b"sf32", b"uf32", b"mft1", b"mft2", b"mAB ", b"mBA "}
    | {b"chrm", b"clro", b"sig ", b"view", b"meas", b"dtim", b"mpet", b"cicp", b"vcgt"}
    | {b"ui08", b"ui16", b"ui32", b"ui64"}
)
ICC_TEXT_TYPES = frozenset({b"desc", b"text", b"mluc"})
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


def image_header_pixels(stream: BinaryIO) -> int:
    """Width times height as the file's header states them, read without decoding a pixel
    (0 when it is not an image we accept: image_clean then says why); the stream is left
    where it was."""
    start = stream.tell()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream, formats=[*ACCEPTED_FORMATS]) as image:
                width, height = image.size
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, SyntaxError):
        return 0
    except (ValueError, struct.error):
        return 0
    finally:
        stream.seek(start)
    return max(width, 0) * max(height, 0)


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
    icc_chunks: list[bytes] = []
    icc_at = 0
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
            if icc_chunks:
                out.insert(icc_at, _jpeg_icc_segments(icc_chunks))
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
        payload = segment[4:]
        if marker == 0xE2 and payload.startswith(JPEG_ICC_MARKER):
            if not icc_chunks:
                icc_at = len(out)  # the profile goes back where its first part was
            icc_chunks.append(payload[len(JPEG_ICC_MARKER) :])
        elif marker == 0xEE and payload.startswith(b"Adobe") and len(payload) >= ADOBE_LENGTH:
            out.append(_jpeg_segment(0xEE, payload[:ADOBE_LENGTH]))
        elif _jpeg_segment_kept(marker, payload):
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
    # APP2 (ICC profiles) and APP14 (Adobe) are rebuilt by _jpeg_without_metadata.
    return not 0xE0 <= marker <= 0xEF  # every other APPn is metadata


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_icc_segments(chunks: list[bytes]) -> bytes:
    """The ICC profile the APP2 chunks hold (each: number, count, part), cleaned and split
    into APP2 segments again; nothing when it is not a colour profile."""
    ordered = sorted(chunks, key=lambda chunk: chunk[:1])
    profile = icc_profile_clean(b"".join(chunk[2:] for chunk in ordered))
    if profile is None:
        return b""
    parts = [profile[i : i + JPEG_ICC_CHUNK] for i in range(0, len(profile), JPEG_ICC_CHUNK)]
    return b"".join(
        _jpeg_segment(0xE2, JPEG_ICC_MARKER + bytes((number, len(parts))) + part)
        for number, part in enumerate(parts, start=1)
    )


def icc_profile_clean(data: bytes) -> bytes | None:
    """An ICC profile as LittleCMS writes it from its tags, with its text blanked, or None
    when the bytes are not a colour profile that LittleCMS can use."""
    try:
        written = bytearray(ImageCms.ImageCmsProfile(io.BytesIO(data)).tobytes())
        (count,) = struct.unpack(">I", written[128:132])
        for index in range(count):
            _, offset, size = struct.unpack(">4sII", written[132 + 12 * index : 144 + 12 * index])
            _icc_tag_blank(written, offset, min(offset + size, len(written)))
        # Device maker and model, the creator, and the profile's checksum (which no longer
        # matches; zero means "not computed").
        written[48:56] = bytes(8)
        written[80:100] = bytes(20)
        cleaned = bytes(written)
        ImageCms.ImageCmsProfile(io.BytesIO(cleaned))
    except (OSError, ValueError, TypeError, struct.error, ImageCms.PyCMSError):
        return None
    return cleaned


def _icc_tag_blank(profile: bytearray, start: int, end: int) -> None:
    """Blank a tag's text (descriptions, copyright) and any tag that is not colour data,
    in place: offsets and sizes stay as LittleCMS wrote them."""
    kind = bytes(profile[start : start + 4])
    if kind in ICC_DATA_TYPES:
        return
    if kind == b"mluc":  # records of (language, country, length, offset) into the tag
        (records,) = struct.unpack(">I", profile[start + 8 : start + 12])
        for record in range(records):
            at = start + 16 + 12 * record
            length, offset = struct.unpack(">II", profile[at + 4 : at + 12])
            first = min(start + offset, end)
            profile[first : min(first + length, end)] = bytes(min(first + length, end) - first)
        return
    if kind == b"desc":  # ASCII, then Unicode, then Macintosh ScriptCode text
        (ascii_count,) = struct.unpack(">I", profile[start + 8 : start + 12])
        at = min(start + 12 + ascii_count, end)
        profile[start + 12 : at] = bytes(at - start - 12)
        if at + 8 <= end:
            (unicode_count,) = struct.unpack(">I", profile[at + 4 : at + 8])
            text_end = min(at + 8 + 2 * unicode_count, end)
            profile[at + 8 : text_end] = bytes(text_end - at - 8)
            script_at = min(text_end + 3, end)
            profile[script_at:end] = bytes(end - script_at)
        return
    # "text" and every type that is not colour data: nothing but its type and reserved bytes
    profile[start + 8 : end] = bytes(max(end - start - 8, 0))


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
        if kind == b"iCCP":
            out.append(_png_icc_chunk(data[pos + 8 : pos + 8 + length]))
        elif kind in PNG_KEPT_CHUNKS:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)
    raise UploadRejected(f"{name}: the PNG is truncated (it has no end chunk).")


def _png_icc_chunk(payload: bytes) -> bytes:
    """An iCCP chunk (name, NUL, method, compressed profile) with the profile cleaned and a
    name of ours, or nothing when it does not hold a colour profile."""
    _, _, rest = payload.partition(b"\x00")
    try:
        # A profile is a few kB: a chunk that inflates beyond 16 MB is not one.
        inflater = zlib.decompressobj()
        profile = inflater.decompress(rest[1:], 16 * 1024 * 1024)
    except zlib.error:
        return b""
    cleaned = icc_profile_clean(profile) if not inflater.unconsumed_tail else None
    if cleaned is None:
        return b""
    body = b"iCCP" + b"ICC profile\x00\x00" + zlib.compress(cleaned)
    return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))


def _png_lossless(image: Image.Image) -> bytes:
    if image.mode not in PNG_SAVABLE_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    # Only what describes the pixels goes back in: no EXIF, XMP or text.
    keep: dict[str | tuple[int, int], Any] = {
        key: image.info[key] for key in ("transparency",) if key in image.info
    }
    original_profile = image.info.get("icc_profile")
    profile = icc_profile_clean(original_profile) if original_profile else None
    if profile is not None:
        keep["icc_profile"] = profile
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
