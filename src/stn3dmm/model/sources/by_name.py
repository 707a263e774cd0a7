"""A source model chosen by name, as ``stn3dmm prepare-model --source NAME FILES...`` names it.

:func:`load_source` checks the files each source needs and reads it; :func:`read_landmark_json`
reads the landmark vertex indices a user supplies for sources that carry none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..morphable import LANDMARK_SETS, MorphableModel
from .bfm2009 import default_landmarks, load_bfm2009
from .bfm2017 import load_bfm2017
from .default_3ddfa import load_default_source
from .wheel import log_stderr

SOURCES = ("default", "bfm2009", "bfm2017")
_JSON_FORM = '{"aflw21": [21 vertex indices], "ibug68": [68 vertex indices]}'


def read_landmark_json(path) -> dict[str, list[int]]:
    """Both landmark sets the model file contract requires, from a JSON file of vertex indices."""
    try:
        data = json.loads(Path(path).read_text())
        lms = {k: [int(i) for i in v] for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: cannot read landmark indices ({e}); expected JSON {_JSON_FORM}") from None
    missing = [k for k in LANDMARK_SETS if k not in lms]
    if missing:
        raise ValueError(f"{path}: no {' or '.join(missing)} landmark set; the model file needs both "
                         f"(JSON {_JSON_FORM})")
    return lms


def load_source(name: str, inputs=(), landmarks=None, n_id: int = 10, n_exp: int = 10,
                log: Callable[[str], None] = log_stderr) -> MorphableModel:
    """The source model ``name`` (one of :data:`SOURCES`) read from its files.

    Args:
        name: "default" (no files: its data comes from PyPI), "bfm2009" (``01_MorphableModel.mat``,
            ``Model_Expression.mat`` and the 3DDFA index map) or "bfm2017" (the model's ``.h5``).
        inputs: the source's files.
        landmarks: a JSON file of both landmark sets (see :func:`read_landmark_json`); required
            for bfm2017, optional for bfm2009 (default: the default model's, mapped).
        n_id, n_exp: identity and expression components to keep.
    """
    n = dict(n_id=n_id, n_exp=n_exp)
    inputs = list(inputs)
    if name == "default":
        if inputs:
            raise ValueError("--source default takes no input files (its data comes from PyPI)")
        return load_default_source(log=log, **n)
    if name == "bfm2009":
        if len(inputs) != 3:
            raise ValueError("--source bfm2009 needs three files: 01_MorphableModel.mat "
                             "Model_Expression.mat INDEX_MAP (the 53,215 expression vertices in BFM's numbering)")
        lms = read_landmark_json(landmarks) if landmarks is not None else default_landmarks(inputs[2], log=log)
        return load_bfm2009(*inputs, landmarks=lms, log=log, **n)
    if name != "bfm2017":
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})")
    if len(inputs) != 1:
        raise ValueError("--source bfm2017 needs one file: the model's .h5")
    if not Path(inputs[0]).is_file():
        raise ValueError(f"{inputs[0]}: no such file")
    if landmarks is None:
        raise ValueError("--source bfm2017 needs --landmarks FILE.json: the model file must carry the "
                         'AFLW-21 and iBUG-68 vertex indices ({"aflw21": [21 indices], "ibug68": [68 indices]} '
                         "in the .h5's vertex numbering); the BFM 2017/2019 files hold none")
    return load_bfm2017(inputs[0], landmarks=read_landmark_json(landmarks), log=log, **n)
