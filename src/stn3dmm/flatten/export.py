"""Export of a fitted face as a textured mesh: Wavefront OBJ + MTL + PNG texture.

The grid model's UV map is its grid (u = j / (R-1), v = 1 - i / (R-1)), so the flattened
texture (row 0 = top of the face) is the mesh's texture image as it is: OBJ's v = 0 is the
bottom row of the image. Files open in MeshLab and Blender. All three are written to
temporary files first and renamed into place.

OBJ and MTL name their files on lines split at white space, so a file name with a space, a
tab or a line break cannot be referenced (MeshLab loses the texture; a line break even injects
lines): such names are refused (:func:`reference_name`); ``stn3dmm flatten`` makes its names
safe before it writes (:func:`stn3dmm.flatten.outputs.safe_name`).
"""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import numpy as np

from ..core.paths import write_bytes_atomically


_STATIC: dict = {}


def reference_name(name: str) -> str:
    """``name`` if an OBJ or MTL line can reference it (not empty, no white space or control
    character); else ValueError."""
    if not name or any(c.isspace() or not c.isprintable() for c in name):
        raise ValueError(f"{name!r} cannot be referenced from an OBJ/MTL file (white space or a control character "
                         f"splits or breaks the line); rename it")
    return name


def _uv_and_faces_text(faces: np.ndarray, uv: np.ndarray, material: str) -> str:
    """The ``vt`` and ``f`` lines, which are the same for every face of one model: cached."""
    key = (hashlib.sha1(np.ascontiguousarray(faces).tobytes() + np.ascontiguousarray(uv).tobytes()).hexdigest(),
           material)
    if key not in _STATIC:
        buf = io.StringIO()
        np.savetxt(buf, uv, fmt="vt %.6f %.6f")
        buf.write(f"usemtl {material}\n")
        np.savetxt(buf, np.repeat(faces + 1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
        _STATIC.clear()
        _STATIC[key] = buf.getvalue()
    return _STATIC[key]


@functools.cache
def _digit_tables() -> tuple[np.ndarray, np.ndarray]:
    """ASCII rows: the integer parts 0..9999 and -0..-9999 right-aligned in 6 columns (20000, 6),
    and the four decimals 0000..9999 (10000, 4). Made once."""
    whole = [f"{i:>6d}" for i in range(10000)] + [f"{'-' + str(i):>6}" for i in range(10000)]
    decimals = [f"{i:04d}" for i in range(10000)]
    return (np.frombuffer("".join(whole).encode(), np.uint8).reshape(20000, 6),
            np.frombuffer("".join(decimals).encode(), np.uint8).reshape(10000, 4))


def vertex_lines(vertices: np.ndarray) -> str:
    """The ``v`` lines of (N, 3) vertices (mm), 4 decimals, each number right-aligned in 11
    columns, built by table look-up (a few times faster than ``%`` formatting, which holds the
    interpreter while a photo's files are written on a background thread). Numbers of 10 m or
    more, or not finite, are formatted by ``%`` instead.

    >>> print(vertex_lines(np.array([[1.5, -0.25, -123.45678], [0.0, 2.0, 3e-5]])), end="")
    v     1.5000    -0.2500  -123.4568
    v     0.0000     2.0000     0.0000
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    q = np.rint(v * 1e4)
    if not np.isfinite(q).all() or np.abs(q).max(initial=0) >= 1e8:
        return ("v %.4f %.4f %.4f\n" * len(v)) % tuple(v.ravel().tolist())
    q = q.astype(np.int64)
    whole, decimals = np.divmod(np.abs(q), 10000)
    whole_rows, decimal_rows = _digit_tables()
    out = np.empty((len(v), 35), np.uint8)  # "v", 3 x (6 + "." + 4), newline
    out[:, 0], out[:, -1] = ord("v"), ord("\n")
    field = out[:, 1:-1].reshape(len(v), 3, 11)
    field[..., :6] = whole_rows[whole + 10000 * (q < 0)]
    field[..., 6] = ord(".")
    field[..., 7:] = decimal_rows[decimals]
    return out.tobytes().decode("ascii")


def obj_text(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, mtl_name: str, material: str = "face") -> str:
    """OBJ text: ``v`` (N, 3), ``vt`` (N, 2) with the same indices, 1-based ``f v/vt``."""
    head = f"# stn3dmm fitted face (mm, y up)\nmtllib {reference_name(mtl_name)}\n"
    return head + vertex_lines(vertices) + _uv_and_faces_text(faces, uv, material)


def mtl_text(texture_name: str) -> str:
    """The one material of our OBJ files: unlit, textured by the image ``texture_name``."""
    return (f"# stn3dmm material\nnewmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
            f"map_Kd {reference_name(texture_name)}\n")


def write_textured_obj(path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: np.ndarray) -> list[Path]:
    """Write ``path`` (.obj), and beside it the .mtl and the texture .png of the same stem.

    Args:
        vertices: (N, 3) mesh vertices (mm).
        faces: (F, 3) 0-based triangles, counter-clockwise seen from outside.
        uv: (N, 2) texture coordinates, v = 1 at the top row of ``texture``.
        texture: (H, W, 3) or (H, W, 4) uint8 image.
    Returns the three paths.
    """
    from PIL import Image

    path = Path(path)
    reference_name(path.name)                 # before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    mtl, png = stem.with_suffix(".mtl"), stem.with_suffix(".png")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(texture)).save(buf, format="PNG")
    write_bytes_atomically(png, buf.getvalue())
    write_bytes_atomically(mtl, mtl_text(png.name).encode())
    write_bytes_atomically(path, obj_text(vertices, faces, uv, mtl.name).encode())
    return [path, mtl, png]


def read_obj(path) -> dict:
    """A small OBJ reader for checks: {'v': (N, 3), 'vt': (M, 2), 'f_v': (F, 3), 'f_vt': (F, 3), 'mtllib': str}."""
    v, vt, fv, ft, mtllib = [], [], [], [], None
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            v.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            vt.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            corners = [p.split("/") for p in parts[1:]]
            fv.append([int(c[0]) - 1 for c in corners])
            ft.append([int(c[1]) - 1 for c in corners])
        elif parts[0] == "mtllib":
            mtllib = parts[1]
    return {"v": np.array(v), "vt": np.array(vt), "f_v": np.array(fv), "f_vt": np.array(ft), "mtllib": mtllib}
