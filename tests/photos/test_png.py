"""The PNG encoder: every image decodes back to its own pixels, by Pillow, at any size and level."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stn3dmm.photos.png import png_bytes


def _decoded(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    im.load()
    return np.asarray(im)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 1), (37, 53), (1, 1, 3), (6, 1, 3), (37, 53, 3),
                                   (1, 9, 4), (40, 31, 4)])
@pytest.mark.parametrize("level", [0, 1, 3, 4, 9])       # 0-3: ISA-L, 4-9: zlib
def test_round_trip(shape, level):
    a = np.random.default_rng(sum(shape) + level).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(_decoded(png_bytes(a, level)), a)


def test_differences_wrap_modulo_256():
    """Rows that step from 255 down to 0 and back: the Up filter's bytes wrap, as the format's do."""
    a = np.zeros((6, 4, 3), np.uint8)
    a[1::2] = 255
    a[:, 1] = np.array([0, 255, 1, 254, 128, 127], np.uint8)[:, None]
    np.testing.assert_array_equal(_decoded(png_bytes(a)), a)


def test_modes_and_a_real_size():
    """Grey, RGB and RGBA come back in Pillow's modes L, RGB and RGBA; a smooth image compresses."""
    y, x = np.mgrid[0:224, 0:1136]
    smooth = np.stack([x % 256, y, (x + y) % 256], -1).astype(np.uint8)
    assert Image.open(io.BytesIO(png_bytes(smooth))).mode == "RGB"
    assert Image.open(io.BytesIO(png_bytes(smooth[..., 0]))).mode == "L"
    assert Image.open(io.BytesIO(png_bytes(np.dstack([smooth, smooth[..., :1]])))).mode == "RGBA"
    assert len(png_bytes(smooth)) < smooth.nbytes / 10


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros((2, 2, 2, 3), np.uint8)])
def test_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError):
        png_bytes(bad)


@pytest.mark.parametrize("level", [-1, 10])
def test_refuses_a_level_out_of_range(level):
    with pytest.raises(ValueError, match="level must be 0-9"):
        png_bytes(np.zeros((2, 2), np.uint8), level)
