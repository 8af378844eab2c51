"""cases.uploads: what is accepted, what is refused, and what is stored."""

import io
import struct
import zlib

import pytest
from PIL import Image, ImageCms

from cases.uploads import UploadRejected, image_clean
from tests.helpers import image_bytes, png_claiming, smear_bytes, smear_paths

LIMITS = {"max_bytes": 50 * 1024 * 1024, "max_pixels": 40_000_000}


def clean(data: bytes, name: str = "x.jpg", **limits):
    return image_clean(io.BytesIO(data), name=name, **{**LIMITS, **limits})


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).tobytes()


def test_real_smear_photographs_are_stored_with_their_exact_pixels():
    for path in smear_paths(20):
        original = path.read_bytes()
        result = clean(original, name=path.name)
        assert result.format == "JPEG"
        assert (result.width, result.height) == (640, 480)
        assert pixels(result.content) == pixels(original)
        assert Image.open(io.BytesIO(result.thumbnail)).size == (320, 240)


def test_it_strips_exif_gps_and_comments_from_a_jpeg_without_reencoding_it():
    photo = Image.open(io.BytesIO(smear_bytes(0)))
    exif = Image.Exif()
    exif[0x010F] = "MicroscopeCam Model X"  # camera make
    exif[0x013B] = "Dr Jane Smith"  # artist
    exif.get_ifd(0x8825)[1] = "N"  # GPS latitude ref
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=95, exif=exif, comment=b"patient John Doe")
    tagged = buffer.getvalue()

    result = clean(tagged)

    assert result.format == "JPEG"
    for secret in (b"MicroscopeCam", b"Jane Smith", b"John Doe", b"Exif"):
        assert secret not in result.content
    stored = Image.open(io.BytesIO(result.content))
    assert not stored.getexif()
    assert "comment" not in stored.info
    assert pixels(result.content) == pixels(tagged)


def test_it_applies_the_exif_orientation_and_stores_the_upright_image_losslessly():
    photo = Image.open(io.BytesIO(smear_bytes(0)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x0110] = "PhoneCam 12"
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif)

    result = clean(buffer.getvalue())

    assert result.format == "PNG"
    assert (result.width, result.height) == (480, 640)
    assert b"PhoneCam" not in result.content
    upright = Image.open(io.BytesIO(buffer.getvalue())).transpose(Image.Transpose.ROTATE_270)
    assert pixels(result.content) == upright.tobytes()


def test_it_strips_text_chunks_from_a_png_and_keeps_its_pixels():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Dr Jane Smith")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPS 51.5N</x:xmpmeta>")
    original = image_bytes("PNG", pnginfo=info)

    result = clean(original, name="smear.png")

    assert result.format == "PNG"
    assert b"Jane Smith" not in result.content and b"xmpmeta" not in result.content
    assert pixels(result.content) == pixels(original)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_tiff_and_bmp_are_stored_as_lossless_png(fmt):
    original = image_bytes(fmt, size=(64, 48), color=(10, 200, 30))
    result = clean(original, name=f"smear.{fmt.lower()}")
    assert (result.format, result.original_format) == ("PNG", fmt)
    assert pixels(result.content) == pixels(original)


def test_a_tiff_with_identifying_tags_loses_them():
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(
        buffer, format="TIFF", tiffinfo={0x013B: "Dr Jane Smith", 0x0110: "ScopeCam"}
    )
    result = clean(buffer.getvalue(), name="smear.tif")
    assert b"Jane Smith" not in result.content and b"ScopeCam" not in result.content


def test_the_format_is_judged_by_content_so_a_png_named_jpg_is_a_png():
    result = clean(image_bytes("PNG"), name="actually-a-png.jpg")
    assert result.format == "PNG"


def test_a_truncated_jpeg_is_refused():
    data = smear_bytes(0)
    with pytest.raises(UploadRejected, match="truncated"):
        clean(data[: len(data) // 2], name="cut.jpg")


def test_a_zero_byte_file_is_refused():
    with pytest.raises(UploadRejected, match="empty"):
        clean(b"", name="empty.jpg")


def test_an_html_file_named_png_is_refused():
    html = b"<!doctype html><html><script>alert(1)</script></html>"
    with pytest.raises(UploadRejected, match="not an image we accept"):
        clean(html, name="smear.png")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_formats_outside_the_four_are_refused(fmt):
    with pytest.raises(UploadRejected, match="JPEG, PNG, TIFF or BMP"):
        clean(image_bytes(fmt), name=f"x.{fmt.lower()}")


def test_a_20000_by_20000_image_is_refused_before_its_pixels_are_decoded():
    # The header claims 400 million pixels; only a few bytes follow. Refusing it
    # with "too many pixels" rather than "truncated" shows nothing was decoded.
    with pytest.raises(UploadRejected, match="too many pixels"):
        clean(png_claiming(20_000, 20_000), name="bomb.png")


def test_the_pixel_limit_is_our_own_setting_not_only_pillows():
    with pytest.raises(UploadRejected, match=r"640 x 480"):
        clean(smear_bytes(0), max_pixels=100_000)


def test_a_bmp_header_claiming_20000_by_20000_is_refused():
    header = b"BM" + (54).to_bytes(4, "little") + b"\0\0\0\0" + (54).to_bytes(4, "little")
    info = (40).to_bytes(4, "little") + (20_000).to_bytes(4, "little", signed=True)
    info += (20_000).to_bytes(4, "little", signed=True) + (1).to_bytes(2, "little")
    info += (24).to_bytes(2, "little") + b"\0" * 24
    with pytest.raises(UploadRejected, match="too many pixels"):
        clean(header + info, name="bomb.bmp")


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all():
    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            buffer[:] = b"\xff" * len(buffer)
            return len(buffer)

    with pytest.raises(UploadRejected, match="larger than 1 MB"):
        image_clean(
            io.BufferedReader(Endless()), name="huge.jpg", max_bytes=1024 * 1024, max_pixels=10**6
        )


def test_a_multi_page_tiff_is_refused():
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (9, 9, 9))
    first.save(buffer, format="TIFF", save_all=True, append_images=[second])
    with pytest.raises(UploadRejected, match="several images"):
        clean(buffer.getvalue(), name="stack.tif")


# Patient data hidden in colour-profile segments, which metadata stripping tends to keep.
NAME = b"PATIENT-JOHN-SMITH"
HOSTILE_TEXT = b"<html><script>alert(document.cookie)</script>" + NAME


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def jpeg_with_segment(marker: int, payload: bytes) -> bytes:
    """A real smear JPEG with one more segment right after its start marker."""
    original = smear_bytes(0)
    segment = bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload
    return original[:2] + segment + original[2:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunk_after_header(chunk: bytes) -> bytes:
    original = image_bytes("PNG")
    header_end = 8 + 8 + 13 + 4  # signature, then IHDR (length, type, 13 bytes, CRC)
    return original[:header_end] + chunk + original[header_end:]


def png_iccp_profiles(content: bytes) -> list[bytes]:
    """Every iCCP chunk's profile, decompressed: a name inside is not visible otherwise."""
    found, pos = [], 8
    while pos + 8 <= len(content):
        length, kind = struct.unpack(">I4s", content[pos : pos + 8])
        if kind == b"iCCP":
            body = content[pos + 8 : pos + 8 + length]
            found.append(zlib.decompress(body.partition(b"\x00")[2][1:]))
        pos += 12 + length
    return found


def assert_nameless(result) -> None:
    for stored in (result.content, result.thumbnail):
        texts = [stored, *(png_iccp_profiles(stored) if stored.startswith(b"\x89PNG") else [])]
        profile = Image.open(io.BytesIO(stored)).info.get("icc_profile")
        texts += [profile] if profile else []
        for text in texts:
            assert NAME not in text and NAME.decode().encode("utf-16-be") not in text


def test_a_name_in_a_fake_jpeg_icc_profile_segment_is_not_stored():
    upload = jpeg_with_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + HOSTILE_TEXT)
    result = clean(upload)
    assert_nameless(result)
    assert b"ICC_PROFILE" not in result.content  # not a profile: dropped
    assert pixels(result.content) == pixels(upload)


def test_text_appended_to_a_real_jpeg_icc_profile_is_cut_and_the_profile_kept():
    upload = jpeg_with_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + srgb_profile() + HOSTILE_TEXT)
    result = clean(upload)
    assert_nameless(result)
    stored_profile = Image.open(io.BytesIO(result.content)).info["icc_profile"]
    kept = ImageCms.ImageCmsProfile(io.BytesIO(stored_profile))
    original = ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))
    assert kept.profile.red_colorant == original.profile.red_colorant
    assert kept.profile.xcolor_space == original.profile.xcolor_space
    assert pixels(result.content) == pixels(upload)


def test_a_name_in_a_real_icc_profiles_own_text_tags_is_blanked():
    profile = srgb_profile()
    copyright_text = "No copyright, use freely".encode("utf-16-be")
    named = profile.replace(copyright_text, "PATIENT-JOHN-SMITH-1970X".encode("utf-16-be"))
    assert named != profile and ImageCms.ImageCmsProfile(io.BytesIO(named)).profile.copyright
    result = clean(jpeg_with_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + named))
    assert_nameless(result)
    kept = Image.open(io.BytesIO(result.content)).info["icc_profile"]
    assert ImageCms.ImageCmsProfile(io.BytesIO(kept)).profile.copyright == ""


def test_text_in_a_jpeg_adobe_segment_is_cut_and_its_colour_flags_kept():
    adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01"
    upload = jpeg_with_segment(0xEE, adobe + HOSTILE_TEXT)
    result = clean(upload)
    assert_nameless(result)
    assert b"\xff\xee\x00\x0e" + adobe in result.content
    assert pixels(result.content) == pixels(upload)


def test_zlib_compressed_text_in_a_png_iccp_chunk_is_not_stored():
    chunk = png_chunk(b"iCCP", b"PATIENT-JOHN-SMITH\x00\x00" + zlib.compress(HOSTILE_TEXT))
    upload = png_with_chunk_after_header(chunk)
    result = clean(upload, name="smear.png")
    assert_nameless(result)
    assert png_iccp_profiles(result.content) == []
    assert pixels(result.content) == pixels(upload)


def test_a_real_png_colour_profile_is_kept_under_a_name_of_ours_without_appended_text():
    body = b"PATIENT-JOHN-SMITH\x00\x00" + zlib.compress(srgb_profile() + HOSTILE_TEXT)
    result = clean(png_with_chunk_after_header(png_chunk(b"iCCP", body)), name="smear.png")
    assert_nameless(result)
    (profile,) = png_iccp_profiles(result.content)
    assert ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space == "RGB "


def test_a_rotated_jpeg_rewritten_as_png_keeps_no_name_from_its_profile():
    photo = Image.open(io.BytesIO(smear_bytes(0)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif, icc_profile=srgb_profile() + HOSTILE_TEXT)
    result = clean(buffer.getvalue())
    assert result.format == "PNG"
    assert_nameless(result)
    (profile,) = png_iccp_profiles(result.content)
    ImageCms.ImageCmsProfile(io.BytesIO(profile))
