"""A corpus of good and bad image files, made by the tests themselves, and real sample photos.

Owns: :data:`PATTERN` (a 4 x 3 grid of distinct colour blocks, 30 px each: non-square and
asymmetric, so any wrong rotation or flip shows), :func:`pattern`, the ``corpus`` fixture
(session-wide: file name -> path, under a temporary folder) and the ``grace`` fixture
(matplotlib's sample photo ``grace_hopper.jpg``, shipped in its wheel).

Good files in the corpus decode to known pixels; bad files must raise ``PhotoError``.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

BLOCK = 30
#: 3 rows x 4 columns of RGB colours.
PATTERN = np.array([
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]],
    [[0, 255, 255], [255, 0, 255], [255, 255, 255], [0, 0, 0]],
    [[128, 0, 0], [0, 128, 0], [0, 0, 128], [128, 128, 128]],
], dtype=np.uint8)

#: EXIF orientation -> how the upright picture is stored (display = the inverse of this).
STORED = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}

#: Files that must be read, and files that must be refused (with a word the message must contain).
GOOD = ("rgb.png", "rgb.jpg", *(f"exif{o}.jpg" for o in sorted(STORED)), "cmyk.jpg", "grey.png", "grey_alpha.png",
        "grey16.png", "grey16.tif", "float.tif", "int32.tif", "rgba.png",
        "palette_transparent.png", "palette.gif", "rgb48.png", "one_pixel.png", "bitonal.png", "huge.jpg")
BAD = {
    "truncated.jpg": "truncated", "truncated.png": "truncated", "text.jpg": "not an image",
    "empty.png": "not an image", "folder.jpg": "directory", "bomb.png": "decompression-bomb",
    "missing.jpg": "does not exist", "garbage_after_header.png": "",
}


def pattern(scale: int = BLOCK) -> np.ndarray:
    """The pattern as an (90, 120, 3) uint8 image (blocks of ``scale`` pixels)."""
    return np.repeat(np.repeat(PATTERN, scale, axis=0), scale, axis=1)


def block_centres(img: np.ndarray) -> np.ndarray:
    """(3, 4, 3) colour at the centre of each block of an image of the pattern (any size)."""
    h, w = img.shape[:2]
    ys = ((np.arange(3) + 0.5) * h / 3).astype(int)
    xs = ((np.arange(4) + 0.5) * w / 4).astype(int)
    return img[ys][:, xs]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand (for what Pillow will not write: 48-bit RGB, lying headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(rows) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _exif(orientation: int) -> Image.Exif:
    e = Image.Exif()
    e[0x0112] = orientation
    return e


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("photo-corpus")
    p = pattern()
    Image.fromarray(p).save(d / "rgb.png")
    Image.fromarray(p).save(d / "rgb.jpg", quality=95)
    for o, stored in STORED.items():
        Image.fromarray(np.ascontiguousarray(stored(p))).save(d / f"exif{o}.jpg", quality=95, exif=_exif(o))
    # CMYK: white, cyan, magenta, yellow, black, blank in 30 px blocks
    cmyk = np.zeros((30, 180, 4), np.uint8)
    for i, c in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]):
        cmyk[:, 30 * i:30 * (i + 1)] = c
    Image.fromarray(cmyk, mode="CMYK").save(d / "cmyk.jpg", quality=95)
    ramp = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (16, 1))
    Image.fromarray(ramp).save(d / "grey.png")
    la = np.stack([ramp, np.full_like(ramp, 255)], -1)
    la[:, :8, 1] = 0  # left 8 columns fully transparent
    Image.fromarray(la, mode="LA").save(d / "grey_alpha.png")
    ramp16 = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (16, 1))
    Image.fromarray(ramp16).save(d / "grey16.png")
    Image.fromarray(ramp16).save(d / "grey16.tif")
    Image.fromarray(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))).save(d / "float.tif")
    Image.fromarray(np.tile(np.linspace(0, 4000, 64).round().astype(np.int32), (16, 1))).save(d / "int32.tif")
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[:, :20] = (255, 0, 0, 128)   # half-transparent red
    rgba[:, 20:] = (0, 255, 0, 0)     # fully transparent green
    Image.fromarray(rgba).save(d / "rgba.png")
    pal = Image.fromarray(np.repeat(np.arange(4, dtype=np.uint8), 10)[None].repeat(10, 0), mode="P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    pal.info["transparency"] = 3
    pal.save(d / "palette_transparent.png", transparency=3)
    Image.fromarray(p).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(d / "palette.gif")
    rgb48 = np.zeros((4, 5, 3), ">u2")
    rgb48[..., 0], rgb48[..., 1], rgb48[..., 2] = 0x8000, 0xFFFF, 0x0101
    (d / "rgb48.png").write_bytes(png_bytes(5, 4, 16, 2, b"".join(b"\x00" + rgb48[i].tobytes() for i in range(4))))
    Image.fromarray(np.array([[[10, 200, 30]]], np.uint8)).save(d / "one_pixel.png")
    Image.fromarray(np.eye(8, dtype=bool)).save(d / "bitonal.png")
    # very large (10000 x 8000) but cheap: the pattern upscaled, decoded by read_photo at a reduced scale
    Image.fromarray(PATTERN).resize((10000, 8000), Image.Resampling.NEAREST).save(d / "huge.jpg", quality=80)
    # bad files
    full = (d / "rgb.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(full[: len(full) // 2])
    full = (d / "grey16.png").read_bytes()
    (d / "truncated.png").write_bytes(full[: len(full) - 40])
    (d / "text.jpg").write_text("this is not a photo\n")
    (d / "empty.png").write_bytes(b"")
    (d / "folder.jpg").mkdir()
    (d / "bomb.png").write_bytes(png_bytes(100_000, 100_000, 8, 2, None))  # header only: 10^10 pixels
    (d / "garbage_after_header.png").write_bytes(png_bytes(64, 64, 8, 2, None)[:33] + b"\x00" * 50)
    return d


@pytest.fixture(scope="session")
def grace():
    """matplotlib's sample photo (512 x 600, one frontal face) as a float RGB :class:`Photo`."""
    from matplotlib import cbook

    from stn3dmm.photos.io import read_photo

    return read_photo(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
