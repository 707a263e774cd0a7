"""What the localiser's training sees, on the sample photos (docs picture): a real crop, face
renders and head renders, with their 68 labels.

    python scripts/plot_profiling.py docs/profiling.png

The sample photos (the ones ``stn3dmm flatten --samples`` uses) are flattened with the landmark
pipeline into a temporary folder, read back as ``data.kind = "fitted"`` and drawn: per photo, the
real crop (labelled by the fit), then face renders (the fitted face with its completed texture over
another photo's surroundings) and head renders (the photo itself, meshed around its face, turned:
``stn3dmm.training.data.profiling``), each at the pose in its title.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(out: str) -> None:
    from stn3dmm.model import load_model
    from stn3dmm.training.data.fitted import FittedPhotos

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "stn3dmm.cli", "flatten", "--samples", "--out", tmp, "--no-mesh",
                        "--max-faces", "1", "--method", "landmarks", "--quiet"], check=True)
        ds = FittedPhotos(tmp, load_model(), 112, split="all", real_views=1, profiled_views=5, head_share=0.6,
                          augment=False, tiles=20, context=1.25, progress=False)
        n = len(ds.fits)
        fig, axes = plt.subplots(n, ds.views, figsize=(1.6 * ds.views, 1.75 * n), dpi=100)
        for k in range(len(ds)):
            photo, view = ds.identity_of(k)
            s, ax = ds[k], axes[photo, view]
            ax.imshow(s["image"].permute(1, 2, 0).clamp(0, 1).numpy())
            lm = np.asarray(s["landmarks"][:68])
            ax.scatter(lm[:, 0], lm[:, 1], s=1.5, c="lime", linewidths=0)
            kind = "real crop" if view == 0 else ("head" if ds.is_head(photo, view) else "face")
            title = kind if view == 0 else f"{kind}, yaw {float(s['pose'][0]):+.0f}"
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        fig.tight_layout(pad=0.3)
        fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/profiling.png")
