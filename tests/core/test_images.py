import io

import numpy as np
import pytest
from PIL import Image

from regionlib.errors import InvalidImageError
from regionlib.images import load_image, to_rgb_uint8


def png_bytes(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_conversion_policy():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb_uint8(g)
    assert out.shape == (3, 4, 3) and (out[..., 0] == g).all() and (out[..., 2] == g).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 7
    assert to_rgb_uint8(rgba)[..., 0].tolist() == [[200, 200], [200, 200]]
    assert to_rgb_uint8(np.full((1, 1, 3), 65535, np.uint16)).tolist() == [[[255, 255, 255]]]
    assert to_rgb_uint8(np.full((1, 1, 3), 257 * 10, np.uint16)).tolist() == [[[10, 10, 10]]]
    assert to_rgb_uint8(np.full((1, 1), 0.5)).tolist() == [[[128, 128, 128]]]
    with pytest.raises(InvalidImageError, match=r"range \[2, 2\]"):
        to_rgb_uint8(np.full((2, 2), 2.0))
    with pytest.raises(InvalidImageError, match="dtype"):
        to_rgb_uint8(np.ones((2, 2), bool))
    with pytest.raises(InvalidImageError, match="shape"):
        to_rgb_uint8(np.ones((2, 2, 2), np.uint8))


def test_pixel_limit_refused_before_decoding():
    data = png_bytes(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="max_pixels=5000"):
        load_image(data, max_pixels=5000)
    assert load_image(data).shape == (100, 100, 3)


def test_load_16bit_gray_and_corrupt(tmp_path):
    arr = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    out = load_image(path)
    assert out.shape == (4, 4, 3) and out[3, 3, 0] == round(15 * 4000 / 257)
    good = png_bytes(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="cannot decode"):
        load_image(good[: len(good) // 2])
    with pytest.raises(InvalidImageError, match="cannot decode"):
        load_image(b"not an image")
    with pytest.raises(InvalidImageError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_float_tiff_in_unit_range_loads_as_float(tmp_path):
    """Bug caught: a 32-bit float TIFF (PIL mode "F") with values in [0, 1] loaded all black (PIL's RGB
    conversion clipped it); it must follow the float policy: round(v * 255), and refuse values outside [0, 1]."""
    ramp = np.linspace(0, 1, 12 * 20, dtype=np.float32).reshape(12, 20)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[..., 1], np.round(ramp * 255).astype(np.uint8))
    Image.fromarray(ramp * 255).save(tmp_path / "g.tif")
    with pytest.raises(InvalidImageError, match=r"g.tif.*\[0, 1\]"):
        load_image(tmp_path / "g.tif")


def test_non_file_sources_are_typed_errors():
    """Bug caught: load_image(None) / load_image(123) raised a bare AttributeError from PIL."""
    for source in (None, 123, 1.5):
        with pytest.raises(InvalidImageError, match="path, bytes or a binary file"):
            load_image(source)
