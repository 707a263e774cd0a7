"""Training data: data-set readers, the synthetic multi-view renderer, and the sample format.

Every reader is a ``torch.utils.data.Dataset`` whose items are dicts (see :mod:`.sample`):

==============  ==================  ==========================================================
key             type / shape        meaning
==============  ==================  ==========================================================
image           float32 (3, S, S)   the localiser input, RGB in [0, 1], S = input size
landmarks       float32 (L, 2)      crop pixels (x right, y down, 0-based); NaN = missing
visibility      float32 (L,)        1 = labelled and visible, 0 = missing / not visible
identity        int64 ()            subject id, -1 when unknown
pose            float32 (3,)        yaw, pitch, roll in degrees (NaN when unknown)
index           int64 ()            item index within the data set
theta           float32 (P,)        ground truth [r, t, logs, alpha] (synthetic data only)
==============  ==================  ==========================================================

A data set also has the attribute ``landmark_set``: the model landmark set its L points
correspond to, ``"aflw21"``, ``"ibug68"``, or an int array of model vertex indices.

May import: the floors below :mod:`stn3dmm.training` (``core``, ``model``, ``stn``, ``photos``,
``fitting``, ``flatten``: the photo textures come from the flatten pipeline).
"""

from .sample import collate, landmark_vertices

__all__ = ["collate", "landmark_vertices"]
