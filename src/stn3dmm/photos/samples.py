"""Built-in sample photos: real photos that installed packages ship, for the demo and tests.

* matplotlib's ``grace_hopper.jpg`` (always present: matplotlib is a dependency);
* scikit-image's ``astronaut.png`` (when scikit-image is installed: ``pip install
  'stn3dmm[samples]'``).

Nothing is downloaded and nothing is committed to this repository: the files are read from
the installed packages.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


def sample_photo_paths() -> list[Path]:
    """Paths of the sample photos available in this environment."""
    from matplotlib import cbook

    out = [Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    try:
        p = resources.files("skimage") / "data" / "astronaut.png"
        if p.is_file():
            out.append(Path(str(p)))
    except ModuleNotFoundError:
        pass
    return out


def copy_samples(dest) -> list[Path]:
    """Copy the sample photos into ``dest`` (so outputs sit beside their inputs)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sample_photo_paths():
        q = dest / p.name
        if not q.exists():
            shutil.copyfile(p, q)
        out.append(q)
    return out
