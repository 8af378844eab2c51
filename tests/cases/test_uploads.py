"""cases.uploads: what is accepted, what is refused, and what is stored."""

import io

import pytest
from PIL import Image

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
