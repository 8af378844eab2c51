"""load_rgb / resize_for_model / load_for_model: the one decoding path of training and inference."""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from runtime.preprocess import ImageDecodeError, load_for_model, load_rgb, resize_for_model
from tests.helpers import BCCD_IMAGES, png_claiming


def _bccd_files(n=3):
    files = sorted(BCCD_IMAGES.glob("*.jpg"))[:n]
    if not files:
        pytest.skip(f"shared BCCD images not found at {BCCD_IMAGES}")
    return files


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_it_decodes_real_bccd_jpegs_to_rgb_uint8():
    for path in _bccd_files():
        arr = load_rgb(path.read_bytes())
        assert arr.dtype == np.uint8
        assert arr.shape == (480, 640, 3)


def test_it_refuses_a_truncated_jpeg_with_a_readable_error():
    data = _bccd_files(1)[0].read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_rgb(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n"])
def test_it_refuses_garbage(data):
    with pytest.raises(ImageDecodeError):
        load_rgb(data)


@pytest.mark.parametrize("side", [10_000, 14_000])  # Pillow warns at one, raises at the other
def test_it_refuses_an_image_over_the_pixel_limit_before_decoding(side):
    with pytest.raises(ImageDecodeError, match="too large to decode safely"):
        load_for_model(png_claiming(side, side), 64)


def test_the_pixel_limit_holds_in_concurrent_decode_threads():
    """The worker decodes in threads: the refusal must not depend on a warnings filter that
    another thread's catch_warnings() may restore away mid-open."""
    bomb = png_claiming(10_000, 10_000)
    smear = _encode(Image.new("RGB", (96, 80), (200, 120, 160)), "JPEG")

    def one(i):
        try:
            return load_for_model(bomb if i % 2 else smear, 64).shape
        except ImageDecodeError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(400)))
    assert all("too large" in r for r in results[1::2])
    assert all(r == (64, 64, 3) for r in results[0::2])


def test_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)


def test_it_applies_exif_orientation():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    arr = load_rgb(_encode(img, "JPEG", exif=exif))
    assert arr.shape == (40, 20, 3)


def test_it_converts_greyscale_palette_and_alpha_to_rgb():
    grey = load_rgb(_encode(Image.new("L", (8, 6), 90), "PNG"))
    assert grey.shape == (6, 8, 3) and (grey == 90).all()
    transparent = load_rgb(_encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), "PNG"))
    assert (transparent == 255).all()  # composited onto white
    pal = load_rgb(_encode(Image.new("RGB", (5, 5), (10, 200, 30)).convert("P"), "GIF"))
    assert pal.shape == (5, 5, 3)
    sixteen = load_rgb(
        _encode(Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000), "PNG")
    )
    assert sixteen.dtype == np.uint8 and sixteen.max() == 255 and sixteen.min() == 0


def test_resize_squeezes_the_whole_field_with_bilinear():
    arr = load_rgb(_bccd_files(1)[0].read_bytes())
    out = resize_for_model(arr, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(arr).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(out, expected)


def test_resize_rejects_non_rgb_or_non_uint8():
    with pytest.raises(ValueError):
        resize_for_model(np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(ValueError):
        resize_for_model(np.zeros((4, 4, 3), np.float32), 2)


@pytest.mark.parametrize("size", [64, 128, 224])
def test_reduced_jpeg_decoding_matches_the_full_decode_on_real_smears(size):
    # A 640x480 smear is decoded at 1/2 or 1/4 scale for these sizes; what the model sees
    # must stay what a full decode then resize gives, within rounding.
    for path in _bccd_files(4):
        data = path.read_bytes()
        reduced = load_for_model(data, size).astype(int)
        full = resize_for_model(load_rgb(data), size).astype(int)
        assert reduced.shape == (size, size, 3)
        assert np.abs(reduced - full).mean() < 1.0
        assert np.percentile(np.abs(reduced - full), 99) <= 3


def test_reduced_decoding_keeps_at_least_the_asked_size():
    data = _bccd_files(1)[0].read_bytes()
    assert load_rgb(data, at_least=224).shape == (240, 320, 3)  # 1/2: 1/4 would be too small
    assert load_rgb(data, at_least=100).shape == (120, 160, 3)
    assert load_rgb(data, at_least=1000).shape == (480, 640, 3)  # never enlarged


def test_reduced_decoding_leaves_other_formats_and_orientation_alone():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8))
    png = _encode(img, "PNG")
    assert np.array_equal(load_for_model(png, 16), resize_for_model(load_rgb(png), 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _encode(Image.new("RGB", (400, 200), (255, 0, 0)), "JPEG", exif=exif)
    assert load_rgb(rotated, at_least=50).shape == (100, 50, 3)  # 1/4 scale, then upright


def test_the_model_sees_an_exif_rotated_smear_upright():
    """Orientation is applied in place, before the resize: red on the left of the stored
    pixels is at the top once turned 90 degrees clockwise, as a viewer shows it."""
    stored = np.zeros((200, 400, 3), np.uint8)
    stored[:, :200] = (255, 0, 0)
    stored[:, 200:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(stored), "JPEG", exif=exif)
    seen = load_for_model(data, 32)
    assert np.array_equal(seen, resize_for_model(load_rgb(data, at_least=32), 32))
    assert seen[2, 16, 0] > 200 and seen[2, 16, 2] < 60  # top: red
    assert seen[29, 16, 2] > 200 and seen[29, 16, 0] < 60  # bottom: blue


def test_load_for_model_refuses_a_truncated_jpeg():
    data = _bccd_files(1)[0].read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_for_model(data[: len(data) // 2], 64)


def test_load_for_model_is_exactly_decode_then_resize_for_every_kind_of_image():
    """load_for_model hands an RGB image from the decoder straight to the resize (no numpy
    round trip, #13): the pixels a model sees must stay bit for bit those of the documented
    path, for smears and for every mode that is converted first."""
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (70, 90, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    uploads = [path.read_bytes() for path in _bccd_files(3)] + [
        _encode(noise, "PNG"),
        _encode(noise, "JPEG", exif=exif),
        _encode(noise.convert("L"), "PNG"),
        _encode(noise.convert("P"), "GIF"),
        _encode(noise.convert("RGBA"), "PNG"),
        _encode(Image.fromarray(rng.integers(0, 60000, (30, 40), np.uint16)), "PNG"),
    ]
    for data in uploads:
        for size in (16, 64, 224):
            expected = resize_for_model(load_rgb(data, at_least=size), size)
            got = load_for_model(data, size)
            assert got.dtype == np.uint8 and got.shape == (size, size, 3)
            assert np.array_equal(got, expected)
