"""PNG encoding of 8-bit images, fast: every row by the PNG "Up" filter, then zlib.

Owns :func:`png_bytes`. Pillow's encoder picks a filter for each row by trying all five, which at
zlib level 1 costs more than the compression itself; one filter for every row writes the same
pixels in files a little larger (docs/benchmarks.md, "Speed of flattening", the fifteenth
session's figures). The format is the PNG specification's (W3C,
2003): the signature, an ``IHDR`` chunk (8 bits per sample; grey, RGB or RGBA; no interlace),
one ``IDAT`` chunk of the zlib stream of the filtered rows, each led by its filter byte, and
``IEND``; each chunk's CRC-32 over its type and data. Any PNG reader decodes it to the same pixels.
Levels 0-3 compress by Intel's ISA-L (``isal``, zlib-compatible streams): at level 1 about four
times faster than zlib's level 1 for files of the same size (``python benchmarks/pixels.py``);
levels 4-9 by zlib.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types by channels: grey, RGB, RGBA.
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}
_UP = 2


def png_bytes(image: np.ndarray, level: int = 1) -> bytes:
    """A PNG file's bytes for a uint8 image (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA.

    Rows after the first are stored as their byte-wise difference from the row above (filter
    "Up", modulo 256), the first as it is, then compressed at ``level`` (0-9: 0-3 by ISA-L, 4-9 by zlib).

    Examples:
        >>> import io
        >>> from PIL import Image
        >>> a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
        >>> (np.asarray(Image.open(io.BytesIO(png_bytes(a)))) == a).all()
        np.True_
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"expected a uint8 (H, W), (H, W, 3) or (H, W, 4) image, got {a.dtype} {a.shape}")
    if not 0 <= level <= 9:
        raise ValueError(f"level must be 0-9, got {level}")
    h, w = a.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"a PNG needs at least one pixel, got {w} x {h}")
    channels = 1 if a.ndim == 2 else a.shape[2]
    rows = np.ascontiguousarray(a).reshape(h, w * channels)
    filtered = np.empty((h, w * channels + 1), np.uint8)
    filtered[:, 0] = _UP
    filtered[0, 0] = 0                       # the first row: no filter (Up of a row of zeros)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])      # uint8: modulo 256, as the filter is
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", _compress(filtered.tobytes(), level))
            + _chunk(b"IEND", b""))


def _compress(data: bytes, level: int) -> bytes:
    return isal_zlib.compress(data, level) if level <= isal_zlib.ISAL_BEST_COMPRESSION else zlib.compress(data, level)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


__all__ = ["png_bytes"]
