"""What Pillow's JPEG decoder does not check: the file's structure, and whether its data ran out.

Pillow silences libjpeg's warnings, so a JPEG cut short and closed with an end-of-image
marker (EOI) decodes without an error. libjpeg fills every block past the cut with zeros,
which decode to mid grey. ``ImageFile.LOAD_TRUNCATED_IMAGES`` does not help: it only covers
files with no EOI, and with it set Pillow appends the marker itself. This module finds such
files from their marker structure and from one cheap test on the decoded pixels.

It owns :func:`jpeg_layout` (one pass over the markers of the first frame, no decoding),
:class:`JpegLayout`, :func:`scan_problem` (scans missing from a multi-scan file) and
:func:`looks_cut`. :func:`looks_cut` answers for a decoded single-frame sequential JPEG:

1. If the last pixel (bottom right, in file orientation) is not the value a zero-filled
   block decodes to (127 or 128 in every channel), the data did not run out: a cut at any
   point leaves at least the last block zero-filled.
2. Otherwise, and only then (a genuine photo rarely ends on that exact value), the file is
   decoded once more with 256 bytes of fixed noise put just before its end marker. A
   complete file ignores bytes after its last block, so both decodes are equal. In a cut
   file the decoder reads the noise as the next blocks, so the two decodes differ.

A progressive JPEG is complete when its scans bring every coefficient of every component to
full precision (:func:`scan_problem`); this catches a cut anywhere before the last scan.
A cut inside the last scan, which only refines detail that earlier scans drew, is not
detected: the missing part is not grey.

Offsets are into the bytes of the file. Only the first frame counts (an MPO's later frames,
or data after the EOI, are ignored, as Pillow ignores them).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np

# SOF markers that start a frame: baseline/extended/progressive/lossless, Huffman or arithmetic
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8
# a marker inside entropy-coded data: 0xFF not followed by a stuffed 0x00, a fill 0xFF or a restart marker
_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
#: Fixed noise (no 0xFF byte) that :func:`looks_cut` inserts before the end marker.
NOISE = bytes(np.random.default_rng(20260101).integers(0, 255, 256, dtype=np.uint8))
# the value every channel of a zero-filled block decodes to (128; 127 for Adobe-inverted CMYK)
_ZERO_FILL = (127, 128)


class JpegStructureError(ValueError):
    """The JPEG's markers are broken or stop early; ``str(e)`` says how."""


@dataclass
class Scan:
    """One scan: its components' ids, spectral selection Ss..Se, successive approximation Ah, Al."""

    components: tuple
    ss: int
    se: int
    ah: int
    al: int


@dataclass
class JpegLayout:
    """The first frame of a JPEG: its SOF marker, declared size, components (id -> (h, v)
    sampling), scans, and the offset of the marker after the last scan's data (its EOI)."""

    sof: int = 0
    width: int = 0
    height: int = 0
    components: dict = field(default_factory=dict)
    scans: list = field(default_factory=list)
    end: int | None = None

    @property
    def progressive(self) -> bool:
        return self.sof in _PROGRESSIVE

    @property
    def multi_scan(self) -> bool:
        """True when the decoder must hold the whole image's coefficients (several scans)."""
        return self.progressive or len(self.scans) > 1


def _u16(data, i: int) -> int:
    return (data[i] << 8) | data[i + 1]


def _segment(data, pos: int, code: int, lay: JpegLayout) -> int:
    """Parse the segment of marker ``code`` at ``pos``; the offset after it (and after its
    entropy-coded data, for a scan)."""
    if pos + 4 > len(data):
        raise JpegStructureError(f"marker 0xFF{code:02X} cut short at byte {pos}")
    length = _u16(data, pos + 2)
    body = bytes(data[pos + 4:pos + 2 + length])
    if length < 2 or len(body) != length - 2:
        raise JpegStructureError(f"segment 0xFF{code:02X} at byte {pos} runs past the end of the file")
    if code in _SOF:
        if lay.sof:
            raise JpegStructureError("two frame headers (SOF) in one frame")
        if len(body) < 6 or len(body) < 6 + 3 * body[5]:
            raise JpegStructureError("frame header (SOF) too short")
        lay.sof, lay.height, lay.width = code, _u16(body, 1), _u16(body, 3)
        lay.components = {body[6 + 3 * k]: (body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15) for k in range(body[5])}
        return pos + 2 + length
    if code != _SOS:
        return pos + 2 + length
    if not lay.sof:
        raise JpegStructureError("scan (SOS) before the frame header (SOF)")
    n = body[0] if body else 0
    if len(body) < 4 + 2 * n:
        raise JpegStructureError("scan header (SOS) too short")
    ahal = body[3 + 2 * n]
    lay.scans.append(Scan(tuple(body[1 + 2 * k] for k in range(n)), body[1 + 2 * n], body[2 + 2 * n],
                          ahal >> 4, ahal & 15))
    m = _MARKER.search(data, pos + 2 + length)
    return len(data) if m is None else m.start()


def jpeg_layout(data) -> JpegLayout:
    """The markers of the first frame of the JPEG in ``data`` (bytes, or any buffer such as
    an mmap), without decoding. ``end`` is None when the data stops inside a scan (no end
    marker). Raises :class:`JpegStructureError` when a segment runs past the end of the file
    or the headers are out of order."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != _SOI:
        raise JpegStructureError("no start-of-image marker")
    lay, pos = JpegLayout(), 2
    while pos < len(data):
        if data[pos] != 0xFF:                      # stray bytes between segments: find the next marker
            m = _MARKER.search(data, pos)
            if m is None:
                break
            pos = m.start()
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:   # fill bytes
            pos += 1
        if pos + 1 >= len(data):
            break
        code = data[pos + 1]
        if code == _EOI:
            if lay.scans:
                lay.end = pos
                return lay
            raise JpegStructureError("end-of-image marker before any image data")
        if 0xD0 <= code <= 0xD7 or code == 0x01:   # markers without a length
            pos += 2
            continue
        pos = _segment(data, pos, code, lay)
    if not lay.scans:
        raise JpegStructureError("no image data (no scan)")
    return lay


def scan_problem(lay: JpegLayout) -> str | None:
    """Why the scans of a multi-scan JPEG cannot make the whole image (None when they can):
    a sequential file must scan every component; a progressive one must bring each
    coefficient (0..63) of each component to full precision (Al = 0)."""
    if not lay.multi_scan:
        return None
    if not lay.progressive:
        missing = set(lay.components) - {c for s in lay.scans for c in s.components}
        return f"no scan of component(s) {sorted(missing)}: the data stops early" if missing else None
    precision = {c: np.full(64, 99) for c in lay.components}
    for s in lay.scans:
        for c in s.components:
            if c in precision and 0 <= s.ss <= s.se <= 63:
                precision[c][s.ss:s.se + 1] = s.al
    for c, p in precision.items():
        if (p != 0).any():
            k = int(np.flatnonzero(p != 0)[0])
            return (f"progressive scans stop before coefficient {k} of component {c} is complete: "
                    f"the data stops early ({len(lay.scans)} scans)")
    return None


def _corner_is_zero_fill(im) -> bool:
    px = im.getpixel((im.width - 1, im.height - 1))
    px = px if isinstance(px, tuple) else (px,)
    return all(v in _ZERO_FILL for v in px)


def looks_cut(im, data, lay: JpegLayout, draft_request=None) -> bool:
    """True when the loaded Pillow image ``im`` (decoded from ``data``, with
    ``im.draft(None, draft_request)`` when given) lost blocks to a cut: see the module doc.
    Only for a sequential single-scan frame whose end marker was found."""
    from PIL import JpegImagePlugin

    if lay.multi_scan or lay.end is None or not _corner_is_zero_fill(im):
        return False
    noisy = bytes(data[:lay.end]) + NOISE + bytes(data[lay.end:])
    # opened as a JPEG directly: the caller has checked its size already (Pillow's open would again)
    with JpegImagePlugin.JpegImageFile(io.BytesIO(noisy)) as again:
        if draft_request is not None:
            again.draft(None, draft_request)
        try:
            again.load()
        except (OSError, ValueError, SyntaxError):
            return True
        return again.size != im.size or not np.array_equal(np.asarray(again), np.asarray(im))


__all__ = ["JpegLayout", "JpegStructureError", "Scan", "jpeg_layout", "scan_problem", "looks_cut", "NOISE"]
