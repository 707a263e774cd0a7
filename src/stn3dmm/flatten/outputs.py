"""The files ``stn3dmm flatten`` writes for one face, their names, and the batch's naming rules.

Owns :func:`output_names`, :func:`safe_name`, :func:`unique_stems`, :func:`output_folders`,
:func:`is_flatten_output`, :func:`overlay_image`, :func:`write_outputs` and
:func:`write_photo_outputs`, and what tells a finished photo from an unfinished one
(:func:`done_record`, :func:`remove_face_files`). For a face ``<name>`` = ``<stem>_face<k>``:

* ``<name>_texture.png``   RGBA (R', R'), alpha = visibility (0 or 255);
* ``<name>_completed.png`` RGBA (R', R'), the symmetric completion, alpha = has data;
* ``<name>_overlay.png``   RGB (S, 5 S + 16): crop | fitted mesh | flattened | mask | completed;
* ``<name>.json``          theta, landmarks, fit error, crop transform, detection;
* ``<name>.obj`` + ``<name>.mtl``  the fitted shape (the model's R x R grid mesh and its UVs);
  the material's texture is ``<name>_completed.png`` itself (UVs span [0, 1]^2, so a texture
  of any side R' fits the mesh; no second copy of the same image is written).

Names are made safe (:func:`safe_name`): OBJ and MTL split their lines on white space, so a
name with a space or a line break in ``mtllib`` or ``map_Kd`` loses the texture or injects
lines. Every file is written atomically (temporary file, then renamed into place), and each
face's ``.json`` is written after its other files, face 0's last of all the photo's files:
``<stem>_face0.json`` is the record that the photo is done, and a photo without it is
unfinished (a run was killed) and is done again by the next run. PNGs use level 1 (ISA-L): the
images are small, and higher levels cost much more time for slightly smaller files.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import numpy as np

#: Compression level of every PNG written here (:func:`~stn3dmm.photos.png.png_bytes`).
PNG_LEVEL = 1
_SUFFIXES = r"((_texture|_completed|_overlay)\.png|\.json|\.obj|\.mtl)"
_OUTPUT_RE = re.compile(r"^(?P<base>.+_face\d+)" + _SUFFIXES + "$")
# write_atomically's temporary files of our outputs: .<output name>.<random>.tmp
_TEMP_RE = re.compile(r"^\..+_face\d+" + _SUFFIXES + r"\.[A-Za-z0-9_]+\.tmp$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Longest stem or folder name written (ASCII characters); file systems allow 255 bytes.
MAX_NAME = 150


def output_names(stem: str, k: int, mesh: bool = True) -> dict:
    """File names of face ``k`` of the photo named ``stem``."""
    base = f"{stem}_face{k}"
    names = {"texture": f"{base}_texture.png", "completed": f"{base}_completed.png",
             "overlay": f"{base}_overlay.png", "json": f"{base}.json"}
    if mesh:
        names.update(obj=f"{base}.obj", mtl=f"{base}.mtl")
    return names


def safe_name(name: str, fallback: str = "photo") -> str:
    """``name`` as a file or folder name that is safe to write and to reference from OBJ/MTL:
    accents are dropped (``José`` -> ``Jose``), every run of other characters than ASCII
    letters, digits, ``.``, ``_`` and ``-`` (spaces, line breaks, quotes, slashes, other
    scripts) becomes one ``_``, leading dots and dashes go (no hidden files, nothing that
    reads as an option), and the result is cut to :data:`MAX_NAME` characters (``fallback``
    when nothing is left). Safe names are kept as they are."""
    kept = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    out = _UNSAFE.sub("_", kept).lstrip(".-")[:MAX_NAME]
    return out or fallback


def unique_stems(paths) -> list[str]:
    """One safe output stem per photo path (:func:`safe_name` of its own stem), all different
    (case-insensitively, for file systems that ignore case). A photo keeps its stem unless an
    earlier photo took it; then it gets ``<stem>-2``, ``-3``, ... skipping every name that
    another photo's own stem, or an earlier choice, already uses (so ``a.png`` beside ``a.jpg``
    and ``a-2.jpg`` becomes ``a-3``, and ``my photo.jpg`` beside ``my_photo.jpg`` ``my_photo-2``)."""
    own = [safe_name(Path(p).stem) for p in paths]
    natural = {s.casefold() for s in own}
    taken: set[str] = set()
    out = []
    for stem in own:
        if stem.casefold() in taken:
            k = 2
            while f"{stem}-{k}".casefold() in taken or f"{stem}-{k}".casefold() in natural:
                k += 1
            stem = f"{stem}-{k}"
        taken.add(stem.casefold())
        out.append(stem)
    return out


def output_folders(folders) -> dict:
    """The output sub-folder (a tuple of names) of each input sub-folder (a tuple of names,
    as :class:`~stn3dmm.photos.io.Listed` gives them): every name made safe, and two input
    folders never merged into one (``a b`` and ``a_b`` give ``a_b`` and ``a_b-2``)."""
    mapped: dict = {(): ()}
    taken: dict = {}
    for rel in folders:
        for depth in range(1, len(rel) + 1):
            src = tuple(rel[:depth])
            if src in mapped:
                continue
            parent = mapped[src[:-1]]
            used = taken.setdefault(parent, set())
            name = base = safe_name(src[-1], fallback="folder")
            k = 2
            while name.casefold() in used:
                name, k = f"{base}-{k}", k + 1
            used.add(name.casefold())
            mapped[src] = parent + (name,)
    return mapped


def is_output_name(name: str) -> bool:
    """True when ``name`` has the pattern of a file that ``stn3dmm flatten`` writes."""
    return bool(_OUTPUT_RE.match(name))


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
    if r.targets is not None:      # the landmark fit's targets; the localiser has none
        d.point(r.targets.points[r.targets.weights > 0].astype(float).ravel().tolist(), fill=(0, 255, 0))
    panels.append(im)
    im = Image.fromarray(_u8(r.crop))
    d = ImageDraw.Draw(im)
    g = r.points.reshape(grid_res, grid_res, 2)
    step = max(1, grid_res // 28)
    for i in range(0, grid_res, step):
        d.line(g[i].ravel().tolist(), fill=(0, 255, 255), width=1)        # flat [x0, y0, x1, y1, ...]
        d.line(g[:, i].ravel().tolist(), fill=(0, 255, 255), width=1)
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
        "method": "landmarks" if r.targets is not None else "localiser",
        "fit_error_px": r.error if r.targets is not None else None,
        "landmarks": None if r.targets is None else {
            "mapping": "model vertices <- detector points", "vertices": r.targets.vertices.tolist(),
            "points_crop_px": np.round(r.targets.points, 3).tolist(), "weights": np.round(r.targets.weights, 4).tolist()},
        "model": model.source, "res": int(r.flattened.shape[0]), "mesh_res": int(model.res),
        "visible_fraction": float(r.mask.mean()),
        "convention": "pixels: x right, y down, 0-based centres; model: mm, y up",
    }


def _json_text(info: dict) -> str:
    """One top-level key per line; each value compact (so json uses its C encoder, which it
    does not with indent=)."""
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items()) + "\n}\n"


def _write_face_files(r, paths: dict, model, mesh: bool, written: list) -> None:
    """Every file of one face but its ``.json``, appended to ``written`` as they land."""
    from .export import mtl_text, obj_text
    from ..core.paths import write_bytes_atomically
    from ..photos import write_png_atomic

    for key, img in (("texture", np.concatenate([_u8(r.flattened), _u8(r.mask)[..., None]], -1)),
                     ("completed", np.concatenate([_u8(r.completed), _u8(r.completed_alpha)[..., None]], -1)),
                     ("overlay", overlay_image(r, model.res))):
        written.append(write_png_atomic(paths[key], img, compress_level=PNG_LEVEL))
    if mesh:
        write_bytes_atomically(paths["mtl"], mtl_text(paths["completed"].name).encode())
        written.append(paths["mtl"])
        write_bytes_atomically(paths["obj"], obj_text(r.shape, model.faces, model.uv, paths["mtl"].name).encode())
        written.append(paths["obj"])


def _write_json(r, paths: dict, model, photo, written: list) -> None:
    from ..core.paths import write_bytes_atomically

    write_bytes_atomically(paths["json"], _json_text(_info(r, model, photo)).encode())
    written.append(paths["json"])


def _paths(out_dir, stem: str, k: int, mesh: bool) -> dict:
    return {key: Path(out_dir) / v for key, v in output_names(stem, k, mesh).items()}


def write_outputs(r, out_dir: Path, stem: str, model, photo, overwrite: bool, mesh: bool = True) -> list:
    """Write the files of one face (a :class:`~stn3dmm.flatten.pipeline.FaceResult`); returns their paths.

    Raises FileExistsError when an output exists and ``overwrite`` is False (checked before
    anything is written). The ``.json`` is written last. If a write fails, the files this call
    already wrote are removed (a face's outputs are all there or none are) and the error is raised."""
    paths = _paths(out_dir, stem, r.index, mesh)
    if not overwrite:
        clash = [p for p in paths.values() if p.exists() or p.is_symlink()]
        if clash:
            raise FileExistsError(f"{clash[0]} exists (use --overwrite)")
    written = []
    try:
        _write_face_files(r, paths, model, mesh, written)
        _write_json(r, paths, model, photo, written)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written


def write_photo_outputs(results, out_dir: Path, stem: str, model, photo, mesh: bool = True) -> list:
    """Write the files of every face of one photo, replacing what is there; returns their paths.

    The images and meshes of all faces come first, then the ``.json`` files from the last face
    to face 0, so ``<stem>_face0.json`` exists only once everything else of the photo does
    (:func:`done_record`). If a write fails, every file this call wrote is removed and the error
    is raised."""
    written: list = []
    try:
        for r in results:
            _write_face_files(r, _paths(out_dir, stem, r.index, mesh), model, mesh, written)
        for r in sorted(results, key=lambda r: -r.index):
            _write_json(r, _paths(out_dir, stem, r.index, mesh), model, photo, written)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written


def done_record(folder, stem: str) -> str | None:
    """None when the photo of ``stem`` in ``folder`` is not done (no ``<stem>_face0.json``);
    else the photo path recorded in that JSON ("" when it cannot be read back). Reads only
    the JSON's first lines, where :func:`_json_text` puts the photo."""
    p = Path(folder) / f"{stem}_face0.json"
    try:
        with open(p, "rb") as f:
            head = f.read(16384)
    except OSError:
        return None
    try:
        line = head.split(b"\n")[1].decode().rstrip().rstrip(",")
        return str(json.loads("{" + line + "}")["photo"])
    except (IndexError, ValueError, KeyError, UnicodeDecodeError):
        return ""


def remove_face_files(folder, stem: str) -> int:
    """Remove the output files of every face of ``stem`` in ``folder``, their ``.json`` first
    (so that nothing is left that looks done); returns how many were removed. Faces are
    probed from 0 up to the first with no file at all."""
    n, k = 0, 0
    while True:
        paths = _paths(folder, stem, k, True)
        there = [p for p in paths.values() if p.exists() or p.is_symlink()]
        if not there:
            return n
        for p in sorted(there, key=lambda p: p.suffix != ".json"):
            p.unlink(missing_ok=True)
            n += 1
        k += 1


def remove_stale_temporaries(root) -> int:
    """Remove the temporary files of our outputs (``.<name>_face<k>....tmp``) that a killed
    run left anywhere under ``root``; returns how many. Only for a folder this run holds
    (:func:`~stn3dmm.flatten.state.claim_output`): another run's live files look the same."""
    n = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if _TEMP_RE.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    n += 1
                except OSError:
                    pass
    return n


__all__ = ["PNG_LEVEL", "MAX_NAME", "output_names", "safe_name", "unique_stems", "output_folders", "is_output_name",
           "is_flatten_output",
           "overlay_image", "write_outputs", "write_photo_outputs", "done_record", "remove_face_files",
           "remove_stale_temporaries"]
