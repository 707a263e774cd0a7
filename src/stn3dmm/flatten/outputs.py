"""The files ``stn3dmm flatten`` writes for one face, their names, and the batch's naming rules.

Owns :func:`output_names`, :func:`unique_stems`, :func:`is_flatten_output`,
:func:`overlay_image` and :func:`write_outputs`. For a face ``<name>`` = ``<stem>_face<k>``:

* ``<name>_texture.png``   RGBA (R', R'), alpha = visibility (0 or 255);
* ``<name>_completed.png`` RGBA (R', R'), the symmetric completion, alpha = has data;
* ``<name>_overlay.png``   RGB (S, 5 S + 16): crop | fitted mesh | flattened | mask | completed;
* ``<name>.json``          theta, landmarks, fit error, crop transform, detection;
* ``<name>.obj`` + ``<name>.mtl``  the fitted shape (the model's R x R grid mesh and its UVs);
  the material's texture is ``<name>_completed.png`` itself (UVs span [0, 1]^2, so a texture
  of any side R' fits the mesh; no second copy of the same image is written).

Every file is written atomically (temporary file, then renamed into place). PNGs use zlib
level 1: the images are small, and higher levels cost much more time for slightly smaller files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

#: zlib level of every PNG written here.
PNG_LEVEL = 1
_OUTPUT_RE = re.compile(r"^(?P<base>.+_face\d+)((_texture|_completed|_overlay)\.png|\.json|\.obj|\.mtl)$")


def output_names(stem: str, k: int, mesh: bool = True) -> dict:
    """File names of face ``k`` of the photo named ``stem``."""
    base = f"{stem}_face{k}"
    names = {"texture": f"{base}_texture.png", "completed": f"{base}_completed.png",
             "overlay": f"{base}_overlay.png", "json": f"{base}.json"}
    if mesh:
        names.update(obj=f"{base}.obj", mtl=f"{base}.mtl")
    return names


def unique_stems(paths) -> list[str]:
    """One output stem per photo path, all different (case-insensitively, for file systems
    that ignore case). A photo keeps its own stem unless an earlier photo took it; then it
    gets ``<stem>-2``, ``-3``, ... skipping every name that another photo's own stem, or an
    earlier choice, already uses (so ``a.png`` beside ``a.jpg`` and ``a-2.jpg`` becomes ``a-3``)."""
    paths = [Path(p) for p in paths]
    natural = {p.stem.casefold() for p in paths}
    taken: set[str] = set()
    out = []
    for p in paths:
        stem = p.stem
        if stem.casefold() in taken:
            k = 2
            while f"{stem}-{k}".casefold() in taken or f"{stem}-{k}".casefold() in natural:
                k += 1
            stem = f"{stem}-{k}"
        taken.add(stem.casefold())
        out.append(stem)
    return out


def is_flatten_output(path) -> bool:
    """True for a file that ``stn3dmm flatten`` wrote: its name has our pattern and the face's
    JSON lies beside it (so a folder of results given back as input is not flattened again)."""
    p = Path(path)
    m = _OUTPUT_RE.match(p.name)
    return bool(m) and (p.parent / f"{m.group('base')}.json").is_file()


def _u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def overlay_image(r, grid_res: int) -> np.ndarray:
    """crop + landmarks | crop + mesh | flattened | mask | completed, as one uint8 image.
    ``grid_res``: the model's R (``r.points`` is its (R * R, 2) projected grid)."""
    from PIL import Image, ImageDraw

    s = r.crop.shape[0]
    panels = []
    im = Image.fromarray(_u8(r.crop))
    d = ImageDraw.Draw(im)
    used = r.targets.weights > 0
    for x, y in r.targets.points[used]:
        d.point((float(x), float(y)), fill=(0, 255, 0))
    panels.append(im)
    im = Image.fromarray(_u8(r.crop))
    d = ImageDraw.Draw(im)
    g = r.points.reshape(grid_res, grid_res, 2)
    step = max(1, grid_res // 28)
    for i in range(0, grid_res, step):
        d.line([tuple(p) for p in g[i].tolist()], fill=(0, 255, 255), width=1)
        d.line([tuple(p) for p in g[:, i].tolist()], fill=(0, 255, 255), width=1)
    panels.append(im)
    for a in (r.flattened, np.repeat(r.mask[..., None], 3, -1), r.completed):
        panels.append(Image.fromarray(_u8(a)).resize((s, s), Image.NEAREST))
    out = Image.new("RGB", (5 * s + 4 * 4, s), (255, 255, 255))
    for k, p in enumerate(panels):
        out.paste(p, (k * (s + 4), 0))
    return np.asarray(out)


def _info(r, model, photo) -> dict:
    tr = r.transform
    return {
        "photo": str(getattr(photo, "path", "") or ""), "face_index": r.index,
        "detection": {"bbox": np.asarray(r.face.bbox).tolist(), "score": float(r.face.score)},
        "photo_size_read": [int(photo.width), int(photo.height)] if hasattr(photo, "width") else None,
        "photo_scale_read": float(getattr(photo, "scale", 1.0)),
        "crop": {"size": int(r.crop.shape[0]), "matrix_photo_to_crop": np.asarray(tr.matrix).tolist()},
        "theta": r.theta.tolist(),
        "theta_layout": "[r(3) axis-angle, t(2) crop px, logs(1) s=exp(logs), alpha_id, alpha_exp]",
        "fit_error_px": r.error,
        "landmarks": {"mapping": "model vertices <- detector points", "vertices": r.targets.vertices.tolist(),
                      "points_crop_px": np.round(r.targets.points, 3).tolist(),
                      "weights": np.round(r.targets.weights, 4).tolist()},
        "model": model.source, "res": int(r.flattened.shape[0]), "mesh_res": int(model.res),
        "visible_fraction": float(r.mask.mean()),
        "convention": "pixels: x right, y down, 0-based centres; model: mm, y up",
    }


def _json_text(info: dict) -> str:
    """One top-level key per line; each value compact (so json uses its C encoder, which it
    does not with indent=)."""
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items()) + "\n}\n"


def write_outputs(r, out_dir: Path, stem: str, model, photo, overwrite: bool, mesh: bool = True) -> list:
    """Write the files of one face (a :class:`~stn3dmm.flatten.pipeline.FaceResult`); returns their paths.

    Raises FileExistsError when an output exists and ``overwrite`` is False (checked before
    anything is written). If a write fails, the files this call already wrote are removed
    (a face's outputs are all there or none are) and the error is raised."""
    from .export import mtl_text, obj_text
    from ..core.paths import write_bytes_atomically
    from ..photos import write_png_atomic

    names = output_names(stem, r.index, mesh)
    paths = {k: Path(out_dir) / v for k, v in names.items()}
    if not overwrite:
        clash = [p for p in paths.values() if p.exists() or p.is_symlink()]
        if clash:
            raise FileExistsError(f"{clash[0]} exists (use --overwrite)")
    written = []
    try:
        for key, img in (("texture", np.concatenate([_u8(r.flattened), _u8(r.mask)[..., None]], -1)),
                         ("completed", np.concatenate([_u8(r.completed), _u8(r.completed_alpha)[..., None]], -1)),
                         ("overlay", overlay_image(r, model.res))):
            written.append(write_png_atomic(paths[key], img, compress_level=PNG_LEVEL))
        write_bytes_atomically(paths["json"], _json_text(_info(r, model, photo)).encode())
        written.append(paths["json"])
        if mesh:
            write_bytes_atomically(paths["mtl"], mtl_text(paths["completed"].name).encode())
            written.append(paths["mtl"])
            write_bytes_atomically(paths["obj"], obj_text(r.shape, model.faces, model.uv, paths["mtl"].name).encode())
            written.append(paths["obj"])
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written


__all__ = ["PNG_LEVEL", "output_names", "unique_stems", "is_flatten_output", "overlay_image", "write_outputs"]
