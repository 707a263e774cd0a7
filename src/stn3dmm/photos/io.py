"""Reading photos robustly, listing them, and writing PNGs atomically.

This module owns :func:`read_photo` (any file Pillow can decode -> an upright RGB float
image), the :class:`Photo` it returns, :class:`PhotoError`, :func:`walk_photos` and
:func:`iter_photos` (expand files and folder trees into candidate photos, without opening
anything) and :func:`write_png_atomic`.

What :func:`read_photo` does, in order:

1. Opens the file (a missing file, a folder, a FIFO or other non-regular file, a symbolic
   link loop or an unreadable file is a :class:`PhotoError`; the open never blocks).
   Pillow identifies the format from the content, not the extension; anything it cannot
   identify is "not an image".
2. Large JPEGs are decoded at a reduced DCT scale (Pillow's ``draft``: 1/2, 1/4 or 1/8, the
   smallest that keeps the longer side at least ``max_side / 1.25``); when that is already at
   most ``max_side`` it is the result, so a JPEG may come out up to 20 % below ``max_side``
   (a 4000 x 3000 photo is decoded at 2000 x 1500, a 12000 x 9000 one at 3000 x 2250: 6.75 M
   pixels, not 108 M).
3. Decompression-bomb protection, before anything is decoded, against ``max_pixels``
   (default: Pillow's ``Image.MAX_IMAGE_PIXELS`` at call time, 89.5 M pixels unless changed):
   the number of pixels that will be decoded (the reduced size for a JPEG, the header's size
   for other formats, which cannot be decoded reduced) must be within it, and so must a
   JPEG's declared size, with an allowance that is honest about what reduced decoding saves.
   It saves the memory of the decoded image, not the decoder's work through every declared
   block, so a single-scan JPEG may declare up to twice the limit (where Pillow's own open
   refuses any image; a 12000 x 9000 photo passes). A progressive or other multi-scan JPEG
   may declare only the limit itself: libjpeg holds the coefficients of its full declared
   size whatever the scale. Pillow's own check at open is bypassed for JPEGs, which are
   checked here. Then the image is decoded. Truncated or corrupt data is a
   :class:`PhotoError`: Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False, and a
   JPEG cut short but closed with an end marker, which Pillow decodes without complaint
   (the missing part grey), is found by :mod:`stn3dmm.photos.jpeg`.
4. The EXIF orientation tag is honoured (``ImageOps.exif_transpose``): the result is upright.
5. Colour: an embedded ICC profile is converted to sRGB (LittleCMS via ``ImageCms``) when
   possible; CMYK, palette, grey and other modes become RGB; 16-bit and 32-bit grey (``I;16``,
   ``I``) are scaled from their full range (65535, or the data's own maximum for ``I`` values
   above that), never clipped at 255; float grey (``F``) is kept when in [0, 1], else scaled by
   its maximum. Pillow decodes 16-bit-per-channel RGB(A) PNGs to their high bytes, which is the
   correct 8-bit value. Transparent images (RGBA, LA, P or PA with transparency) are
   composited over a neutral grey (:data:`BACKGROUND`, 0.5); their alpha is kept in
   :attr:`Photo.alpha`. Multi-frame files give their first frame.
6. Images whose longer side exceeds ``max_side`` (default :data:`DEFAULT_MAX_SIDE`, 2048) are
   downscaled (aspect ratio kept) with Pillow's antialiased bilinear (triangle) filter, cheaper
   than Lanczos; ``max_side=None`` keeps the full size.

The result is float32 RGB in [0, 1], shape (H, W, 3), in the image convention of
:mod:`stn3dmm.core.conventions` (x right, y down, 0-based pixel centres).
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import mmap
import os
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..core.paths import write_atomically
from . import jpeg
from .png import png_bytes

#: Longest side, in pixels, of the images :func:`read_photo` returns by default.
DEFAULT_MAX_SIDE = 2048
#: Grey that transparent pixels are composited over (RGB in [0, 1]).
BACKGROUND = (0.5, 0.5, 0.5)
#: File name extensions that :func:`iter_photos` takes for photos when it lists a folder.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".sgi", ".ico", ".pcx",
})

# EXIF orientations that swap width and height (transpose, rotate 90 / 270, transverse).
_SWAPS_AXES = {5, 6, 7, 8}
#: A large JPEG may come out up to this factor smaller than ``max_side`` when the decoder's own
#: 1/2, 1/4 or 1/8 scaling lands there (it is several times faster than decoding in full).
JPEG_SLACK = 1.25
_ORIENTATION_TAG = 0x0112


class PhotoError(ValueError):
    """A file cannot be used as a photo. ``str(e)`` names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


@dataclass(frozen=True)
class Photo:
    """An upright RGB photo and how it was obtained from its file.

    Attributes:
        image: (H, W, 3) float32 RGB in [0, 1].
        path: the file it came from (None when built from an array).
        original_size: (width, height) of the upright image at full resolution.
        scale: the downscale factor applied (1.0 when none): the longer side's new length over
            its original length (per axis the ratio can differ by rounding; :meth:`to_original`
            uses the exact per-axis ratios).
        orientation: the EXIF orientation tag found and applied (1 = none, 2..8 as in EXIF).
        mode: Pillow's mode of the stored image (``"RGB"``, ``"CMYK"``, ``"I;16"``, ...).
        format: Pillow's format name (``"JPEG"``, ``"PNG"``, ...), or None.
        alpha: (H, W) float32 opacity in [0, 1] when the file had transparency, else None.
        notes: what was done to the file's pixels, one short phrase each.
    """

    image: np.ndarray
    path: Path | None = None
    original_size: tuple[int, int] = (0, 0)
    scale: float = 1.0
    orientation: int = 1
    mode: str = "RGB"
    format: str | None = None
    alpha: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())
    #: (H, W, 3) uint8 pixels when the file was 8-bit RGB without transparency (what
    #: :attr:`image` was made from), else None; :meth:`as_uint8` returns it without converting.
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of :attr:`image`."""
        return self.width, self.height

    def _ratios(self) -> np.ndarray:
        ow, oh = self.original_size
        return np.array([self.width / ow if ow else 1.0, self.height / oh if oh else 1.0])

    def to_original(self, points) -> np.ndarray:
        """Points ``(..., 2)`` (x, y) in :attr:`image` -> the upright full-resolution image.

        Pixel centres map to pixel centres: ``x_orig = (x + 0.5) / sx - 0.5`` per axis.
        """
        p = np.asarray(points, dtype=np.float64)
        return (p + 0.5) / self._ratios() - 0.5

    def from_original(self, points) -> np.ndarray:
        """Inverse of :meth:`to_original`."""
        p = np.asarray(points, dtype=np.float64)
        return (p + 0.5) * self._ratios() - 0.5

    def as_uint8(self) -> np.ndarray:
        """(H, W, 3) uint8 version of :attr:`image` (rounded); the decoded pixels when available.
        Do not modify it: it may be :attr:`pixels` itself."""
        return self.pixels if self.pixels is not None else to_uint8(self.image)

    def as_tensor(self):
        """(3, H, W) float32 torch tensor of :attr:`image` (shares no memory)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.image.transpose(2, 0, 1)))


def to_uint8(image) -> np.ndarray:
    """A float image in [0, 1] (clipped; rounded to nearest) or a uint8 image -> uint8, same shape."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    b = a.astype(np.float32) * np.float32(255.0)  # a new array: the in-place steps below are safe
    b += np.float32(0.5)
    np.clip(b, 0.0, 255.0, out=b)
    return b.astype(np.uint8)


def _to_float(u8: np.ndarray) -> np.ndarray:
    f = u8.astype(np.float32)
    f *= np.float32(1.0 / 255.0)
    return f


# ---------------------------------------------------------------- reading

def _open_file(path: Path):
    """``path`` opened for reading, once it is known to be a regular file: the open does not
    block (a FIFO named ``*.jpg`` would wait forever for a writer), and anything but a regular
    file (FIFO, socket, device, folder) is refused before a byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise PhotoError(path, "is a directory, not an image file") from None
    except FileNotFoundError:
        raise PhotoError(path, "broken symbolic link" if os.path.islink(path) else "does not exist") from None
    except PermissionError:
        raise PhotoError(path, "cannot be read: permission denied") from None
    except OSError as e:
        raise PhotoError(path, _os_problem(e)) from None
    kind = _file_kind(os.fstat(fd).st_mode)
    if kind != "file":
        os.close(fd)
        raise PhotoError(path, "is a directory, not an image file" if kind == "directory"
                         else f"not a regular file ({kind})")
    return os.fdopen(fd, "rb")


def _os_problem(e: OSError) -> str:
    """What an OSError from opening or listing a path means, in a few words."""
    if e.errno == errno.ELOOP:
        return "symbolic link loop (the link points back to itself)"
    return f"cannot be read: {e.strerror or e}"


def _file_kind(mode: int) -> str:
    """'file', 'directory', or what else a stat mode says the path is."""
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file"


def _pixel_limit(max_pixels):
    if max_pixels is not None:
        return int(max_pixels)
    return Image.MAX_IMAGE_PIXELS  # may be None: no limit


def _open_jpeg_unchecked(f):
    """Open a JPEG stream without Pillow's open-time pixel check (None if it is no JPEG):
    read_photo checks the size it will decode to, after reduced DCT decoding."""
    from PIL import JpegImagePlugin

    try:
        f.seek(0)
        if f.read(3) != b"\xff\xd8\xff":
            return None
        f.seek(0)
        return JpegImagePlugin.JpegImageFile(f)
    except (OSError, SyntaxError, ValueError, EOFError):
        return None


def _bomb_message(w: int, h: int, limit: int) -> str:
    return (f"{w} x {h} = {w * h} pixels exceeds the limit of {limit} pixels (decompression-bomb "
            f"protection; formats other than JPEG cannot be decoded at a reduced size); pass "
            f"max_pixels= (stn3dmm flatten --max-pixels) to read it anyway")


def _orientation(im: Image.Image) -> int:
    try:
        o = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not make the photo unreadable
        return 1
    return o if 1 <= o <= 8 else 1


def _to_srgb(im: Image.Image, notes: list) -> Image.Image:
    """Convert through an embedded ICC profile to sRGB when there is one (8-bit modes only)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except Exception as e:  # unusable profile: fall back to Pillow's plain conversion
        notes.append(f"ICC profile ignored ({type(e).__name__})")
        return im
    if converted is None:
        return im
    notes.append("ICC profile converted to sRGB")
    return converted


def _grey_high_depth(im: Image.Image, notes: list) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a 16/32-bit integer or float grey image."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        notes.append("16-bit grey scaled by 1/65535")
        return a.astype(np.float32) / 65535.0
    if im.mode == "I":
        a = a.astype(np.float64)
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        if lo >= 0 and hi <= 65535:
            full = 255.0 if hi <= 255 else 65535.0
            notes.append(f"32-bit integer grey scaled by 1/{full:g}")
            return (a / full).astype(np.float32)
        notes.append("32-bit integer grey outside [0, 65535] scaled by its range")
        return ((a - lo) / max(hi - lo, 1.0)).astype(np.float32)
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)  # mode F
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    if lo >= 0 and hi <= 1:
        return a
    notes.append("float grey outside [0, 1] scaled by its range")
    return ((a - min(lo, 0.0)) / max(hi - min(lo, 0.0), 1e-12)).astype(np.float32)


def _resize_float(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))


def _decode(im: Image.Image, target: tuple[int, int] | None, background, notes: list):
    """Pixels of a loaded, upright image -> (rgb (H, W, 3) float32, alpha or None, uint8 rgb or
    None), resized to ``target``."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        g = _grey_high_depth(im, notes)
        if target is not None and target != im.size:
            g = np.clip(_resize_float(g, target), 0.0, 1.0)
        return np.repeat(g[:, :, None], 3, axis=2), None, None
    im = _to_srgb(im, notes)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if im.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    try:
        im = im.convert("RGBA" if has_alpha else "RGB")
    except (ValueError, OSError) as e:
        raise PhotoError(None, f"unsupported image mode {im.mode!r} ({e})") from None
    if target is not None and target != im.size:
        if has_alpha:  # resize with premultiplied alpha so transparent colours do not bleed in
            im = im.convert("RGBa").resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0).convert("RGBA")
        else:
            im = im.resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0)
    u8 = np.asarray(im)
    if not has_alpha:
        return _to_float(u8), None, u8
    a = _to_float(u8)
    rgb, alpha = a[:, :, :3], a[:, :, 3]
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    notes.append(f"transparency composited over grey {tuple(float(b) for b in background)}")
    return rgb * alpha[:, :, None] + bg * (1.0 - alpha[:, :, None]), np.ascontiguousarray(alpha), None


def _target_size(w: int, h: int, max_side: int | None) -> tuple[tuple[int, int] | None, float]:
    if max_side is None or max(w, h) <= max_side:
        return None, 1.0
    s = max_side / max(w, h)
    return (max(1, round(w * s)), max(1, round(h * s))), s


def _open_image(f, path: Path) -> Image.Image:
    """Pillow's image of the open file ``f`` (header only, nothing decoded yet). Pillow's own
    pixel check at open is bypassed for a JPEG, whose decoded size :func:`_load` checks."""
    try:
        with warnings.catch_warnings():
            # the size is checked against our own limit in _load
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except Image.DecompressionBombError as e:
        im = _open_jpeg_unchecked(f)      # a JPEG is checked at the size it decodes to
        if im is None:
            raise PhotoError(path, f"too large: {e} (decompression-bomb protection)") from None
        return im
    except UnidentifiedImageError:
        raise PhotoError(path, "not an image (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise PhotoError(path, f"corrupt image header: {e}") from None


def _draft_jpeg(im: Image.Image, orientation: int, upright, target, scale, max_side, notes: list):
    """Set a JPEG to decode at the smallest DCT scale (1/2, 1/4, 1/8) giving at least
    ``target / JPEG_SLACK``; if that is already within ``max_side``, it is the result (no
    resize). Returns the (possibly new) ``(target, scale)`` and the size asked of ``draft``
    (None when it was not used). Draft sizes are in file orientation."""
    want = tuple(math.ceil(v / JPEG_SLACK) for v in target)
    want = (want[1], want[0]) if orientation in _SWAPS_AXES else want
    if im.draft(None, want) is None:
        return target, scale, None
    dw, dh = (im.size[1], im.size[0]) if orientation in _SWAPS_AXES else im.size
    notes.append(f"JPEG decoded at {im.size[0]} x {im.size[1]} (reduced DCT scale)")
    if max(dw, dh) <= max_side:
        target, scale = (dw, dh), max(dw, dh) / max(upright)
    return target, scale, want


def _load(im: Image.Image, path: Path, max_pixels) -> None:
    """Decode ``im`` once the number of pixels it decodes to is within the limit."""
    limit = _pixel_limit(max_pixels)
    dw, dh = im.size                  # what will be decoded
    if limit is not None and dw * dh > limit:
        raise PhotoError(path, f"too large: {_bomb_message(dw, dh, limit)}")
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise PhotoError(path, f"too large: {e} (decompression-bomb protection)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise PhotoError(path, f"truncated or corrupt image data: {e}") from None


def _jpeg_bytes(f, stack: contextlib.ExitStack):
    """The whole of an open JPEG file: mapped rather than read where possible (a file much
    larger than its image costs no memory), else read."""
    try:
        return stack.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pos = f.tell()
        f.seek(0)
        data = f.read()
        f.seek(pos)
        return data


def _jpeg_checked(f, path: Path, max_pixels, stack: contextlib.ExitStack):
    """(bytes, layout) of a JPEG whose markers are whole, whose scans can make the whole
    image and whose declared size is within the allowance (module doc, step 3); else PhotoError."""
    data = _jpeg_bytes(f, stack)
    try:
        lay = jpeg.jpeg_layout(data)
    except jpeg.JpegStructureError as e:
        raise PhotoError(path, f"truncated or corrupt image data: {e}") from None
    problem = jpeg.scan_problem(lay)
    if problem:
        raise PhotoError(path, f"truncated or corrupt image data: {problem}")
    limit = _pixel_limit(max_pixels)
    allowed = None if limit is None else limit * (1 if lay.multi_scan else 2)
    if allowed is not None and lay.width * lay.height > allowed:
        why = ("a progressive or multi-scan JPEG: its decoder holds every declared block, whatever the scale"
               if lay.multi_scan else "twice the limit for a JPEG: a reduced decode saves memory, not the "
               "decoder's work through every declared block")
        raise PhotoError(path, f"too large: {lay.width} x {lay.height} = {lay.width * lay.height} pixels declared "
                               f"exceeds {allowed} ({why}; the limit is {limit} pixels, decompression-bomb "
                               f"protection); pass max_pixels= (stn3dmm flatten --max-pixels) to read it anyway")
    return data, lay


def _upright(im: Image.Image, orientation: int, path: Path, notes: list) -> Image.Image:
    """``im`` turned as its EXIF ``orientation`` says."""
    if orientation == 1:
        return im
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:
        raise PhotoError(path, f"cannot apply EXIF orientation {orientation}: {e}") from None
    notes.append(f"EXIF orientation {orientation} applied")
    return im


def read_photo(path, max_side: int | None = DEFAULT_MAX_SIDE, *, max_pixels: int | None = None,
               background=BACKGROUND) -> Photo:
    """Read an image file into an upright RGB :class:`Photo` (see the module docstring).

    Args:
        path: the file (or an open binary file object).
        max_side: downscale so that the longer side is at most this many pixels (None: never).
        max_pixels: refuse images that would decode to more pixels than this (a JPEG's reduced
            size, see the module docstring; default: ``PIL.Image.MAX_IMAGE_PIXELS``).
        background: RGB in [0, 1] that transparent pixels are composited over.

    Raises:
        PhotoError: the file is missing, unreadable, a folder, not an image, truncated or
            corrupt, too large, or of a mode that cannot be converted to RGB.
    """
    stream = path if hasattr(path, "read") else None
    path = Path(getattr(path, "name", "<stream>")) if stream is not None else Path(path)
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels or None, got {max_side}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code): truncated files "
                      "will be read as partly grey images instead of being refused", RuntimeWarning, stacklevel=2)
    notes: list[str] = []
    with (contextlib.nullcontext(stream) if stream is not None else _open_file(path)) as f, \
            contextlib.ExitStack() as stack:
        with _open_image(f, path) as im:
            w, h = im.size
            fmt, mode = im.format, im.mode
            if w < 1 or h < 1:
                raise PhotoError(path, f"empty image ({w} x {h})")
            jpeg_data, lay = _jpeg_checked(f, path, max_pixels, stack) if fmt in ("JPEG", "MPO") else (None, None)
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                notes.append(f"first frame of {n_frames}")
            orientation = _orientation(im)
            upright = (h, w) if orientation in _SWAPS_AXES else (w, h)
            target, scale = _target_size(*upright, max_side)
            draft = None
            if target is not None and lay is not None:
                target, scale, draft = _draft_jpeg(im, orientation, upright, target, scale, max_side, notes)
            _load(im, path, max_pixels)
            if lay is not None and jpeg.looks_cut(im, jpeg_data, lay, draft):
                raise PhotoError(path, "truncated or corrupt image data: the JPEG's data stops before its last "
                                       "block (a file cut short but closed with an end marker; the missing part "
                                       "would decode as grey)")
            im = _upright(im, orientation, path, notes)
            try:
                rgb, alpha, u8 = _decode(im, target, background, notes)
            except PhotoError as e:
                raise PhotoError(path, e.problem) from None
            except (OSError, ValueError, SyntaxError, EOFError) as e:
                raise PhotoError(path, f"truncated or corrupt image data: {e}") from None
    if target is not None:
        notes.append(f"downscaled {upright[0]} x {upright[1]} -> {target[0]} x {target[1]}")
    return Photo(image=np.ascontiguousarray(rgb, dtype=np.float32), path=path, original_size=upright, scale=scale,
                 orientation=orientation, mode=mode, format=fmt, alpha=alpha, notes=tuple(notes), pixels=u8)


def photo_from_array(image, *, alpha=None) -> Photo:
    """Wrap an in-memory (H, W, 3) image (uint8, or float in [0, 1]) as a :class:`Photo`."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    if a.shape[2] == 4:
        alpha = a[:, :, 3]
        a = a[:, :, :3]
    u8 = a if a.dtype == np.uint8 else None
    a = _to_float(a) if u8 is not None else np.clip(a.astype(np.float32), 0.0, 1.0)
    if alpha is not None:
        alpha = np.asarray(alpha)
        alpha = alpha.astype(np.float32) / 255.0 if alpha.dtype == np.uint8 else alpha.astype(np.float32)
    return Photo(image=np.ascontiguousarray(a), original_size=(a.shape[1], a.shape[0]), alpha=alpha,
                 pixels=None if u8 is None else np.ascontiguousarray(u8))


# ---------------------------------------------------------------- listing

def _warn_skip(path: Path, reason: str) -> None:
    warnings.warn(f"{path}: skipped, {reason}", UserWarning, stacklevel=3)


#: The reason :func:`walk_photos` gives for a file in a folder whose extension is not an image's.
NOT_AN_IMAGE = "not an image file (extension)"


@dataclass(frozen=True)
class Listed:
    """A candidate photo found by :func:`walk_photos`: its path, and the names of the
    sub-folders between the folder that was named and the file (empty for a file in that
    folder itself, or a file named explicitly)."""

    path: Path
    folder: tuple[str, ...] = ()


def _stat_problem(p: Path, e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "broken symbolic link" if os.path.islink(p) else "does not exist"
    return _os_problem(e)


class _Walk:
    """One listing of :func:`walk_photos`: what was reported, and the files and folders seen."""

    def __init__(self, exts: set, report, recursive: bool, exclude):
        self.exts, self.report, self.recursive = exts, report, recursive
        self.seen_files: set = set()
        self.seen_dirs: set = set()
        self.skip_dirs: set = set()
        for p in exclude:
            with contextlib.suppress(OSError):
                st = os.stat(p)
                self.skip_dirs.add((st.st_dev, st.st_ino))

    @staticmethod
    def new(st, seen: set) -> bool:
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return False
        seen.add(key)
        return True

    def named(self, p: Path) -> Iterator[Listed]:
        """A path given by the caller: a folder is walked, a regular file yielded."""
        try:
            st = os.stat(p)
        except OSError as e:
            self.report(p, _stat_problem(p, e))
            return
        kind = _file_kind(st.st_mode)
        if kind == "directory":
            if self.new(st, self.seen_dirs):
                yield from self.walk(p, ())
        elif kind != "file":
            self.report(p, f"not a regular file ({kind})")
        elif self.new(st, self.seen_files):
            yield Listed(p)

    def walk(self, folder: Path, rel: tuple) -> Iterator[Listed]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.report(folder, f"folder cannot be listed: {e.strerror or e}")
            return
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            q, image = Path(entry.path), os.path.splitext(entry.name)[1].lower() in self.exts
            try:
                st = os.stat(q)                       # follows links
            except OSError as e:
                self.report(q, _stat_problem(q, e) if image else NOT_AN_IMAGE)
                continue
            kind = _file_kind(st.st_mode)
            if kind == "directory":
                subdirs.append((q, st))
            elif not image:
                self.report(q, NOT_AN_IMAGE)
            elif kind != "file":
                self.report(q, f"not a regular file ({kind})")
            elif self.new(st, self.seen_files):
                yield Listed(q, rel)
        for d, st in subdirs if self.recursive else ():
            if (st.st_dev, st.st_ino) in self.skip_dirs:
                continue
            if not self.new(st, self.seen_dirs):
                self.report(d, "folder already listed (a symbolic link loop, or a second link to it)")
                continue
            yield from self.walk(d, rel + (d.name,))


def walk_photos(inputs, *, recursive: bool = True, extensions: Iterable[str] = IMAGE_EXTENSIONS,
                on_skip: Callable[[Path, str], None] | None = None, exclude=()) -> Iterator[Listed]:
    """Expand files and folders into candidate photos (:class:`Listed`), in a stable order.

    * A file named explicitly is yielded whatever its extension (:func:`read_photo` decides
      from its content), if it is a regular file.
    * A folder is listed sorted by name; hidden entries (names starting with ".") are ignored;
      files with one of ``extensions`` (case-insensitive) are yielded, other files are reported
      as :data:`NOT_AN_IMAGE`; sub-folders are entered after the folder's own files when
      ``recursive``, except those in ``exclude`` (an output folder inside an input folder).
    * Nothing listed is opened, so nothing can block: an entry with an image extension that is
      not a regular file (a FIFO, a socket, a device), a symbolic link loop, a broken link or a
      folder that cannot be listed is reported to ``on_skip(path, reason)`` and the listing goes
      on. Each file (and each folder: a link back to a folder already entered) is taken once,
      by its device and inode, so a link loop between folders ends.

    ``on_skip`` defaults to issuing a ``UserWarning``; nothing is raised for bad entries.
    """
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    w = _Walk(exts, on_skip or _warn_skip, recursive, exclude)
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs:
        yield from w.named(Path(item))


def iter_photos(inputs, *, recursive: bool = False, extensions: Iterable[str] = IMAGE_EXTENSIONS,
                on_skip: Callable[[Path, str], None] | None = None) -> Iterator[Path]:
    """The paths of :func:`walk_photos` (sub-folders entered only when ``recursive``)."""
    for listed in walk_photos(inputs, recursive=recursive, extensions=extensions, on_skip=on_skip):
        yield listed.path


# ---------------------------------------------------------------- writing

def write_png_atomic(path, image, *, overwrite: bool = True, compress_level: int = 6) -> Path:
    """Write an image as PNG atomically: to a temporary file in the same folder, then moved
    into place (:func:`stn3dmm.core.paths.publish`). A reader never sees a half-written file.

    Args:
        path: destination (its folder is created if missing).
        image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, bool, or float in [0, 1]
            (clipped, rounded to 8 bits); a numpy array or a CPU/GPU torch tensor in that layout.
        overwrite: when False, an existing ``path`` raises FileExistsError (nothing is written).
        compress_level: compression level 0-9 (the encoder: :func:`~stn3dmm.photos.png.png_bytes`).
    """
    path = Path(path)
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = to_uint8(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: exists (not overwritten)")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9, got {compress_level}")
    return write_atomically(path, lambda f: f.write(png_bytes(a, compress_level)), durable=True)


__all__ = [
    "DEFAULT_MAX_SIDE", "BACKGROUND", "IMAGE_EXTENSIONS", "PhotoError", "Photo",
    "read_photo", "photo_from_array", "to_uint8", "iter_photos", "walk_photos", "Listed", "NOT_AN_IMAGE",
    "write_png_atomic",
]
