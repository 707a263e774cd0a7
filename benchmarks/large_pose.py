"""The tuning set for large poses: synthetic renders of real face textures at up to 90 degrees of yaw.

AFLW2000-3D is a test set, so the landmark pipeline's large-pose choices are made here instead:
faces of the default model, each textured with a real photo's flattened face (LFW photos, one per
person, from ../shared/data/lfw), rendered at yaw ~ U(-90, 90), pitch and roll as the synthetic
data draw them, over synthetic backgrounds, with their exact 68 landmarks and pose. The same
protocol as AFLW2000-3D is applied (NME by |yaw| bucket normalised by the landmarks' box, faces
found, pose error) to each variant of the face-mesh stage, side by side:

    python benchmarks/large_pose.py [--identities 100] [--views 3] [--out /tmp/large_pose]

Variants: ``crop`` (the face mesh on a crop levelled by the detector's eyes, nothing else),
``fallback`` (then mediapipe's landmark model on ROIs of the box where that finds no mesh, the
mesh found re-placed on the ROI of its own points; the default), ``refine`` (every mesh
re-placed so: lower landmark error here, but see ``FaceDetector``'s docstring for what it costs
in consistency).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {"crop": dict(mesh_fallback=False, mesh_refine=False),
            "fallback": dict(mesh_fallback=True, mesh_refine=False),
            "refine": dict(mesh_fallback=True, mesh_refine=True)}


class SyntheticSet:
    """A rendered landmark folder seen as the benchmark harness sees AFLW2000-3D."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names = sorted(p.name for p in folder.glob("*.png"))
        meta = [json.loads((folder / n).with_suffix(".json").read_text()) for n in self.names]
        self.reannotated = np.array([m["landmarks"] for m in meta], dtype=np.float64)
        self.original = self.reannotated
        self._pose = np.array([m["pose"] for m in meta], dtype=np.float64)
        self.abs_yaw = np.abs(self._pose[:, 0])

    def __len__(self):
        return len(self.names)

    def image_path(self, i):
        return self.folder / self.names[i]

    def pose(self, i):
        return self._pose[i]

    def face_square(self, i):
        p = self.reannotated[i]
        lo, hi = p.min(0), p.max(0)
        c, half = (lo + hi) / 2, (hi - lo).max() / 2
        return np.concatenate([c - half, c + half])


def textures_from_lfw(lfw: Path, dest: Path, n: int) -> Path:
    """One photo of each of ``n`` people spread through LFW, copied to ``dest``."""
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    dest.mkdir(parents=True, exist_ok=True)
    for person in people[:: max(1, len(people) // n)][:n]:
        first = sorted(person.glob("*.jpg"))[0]
        shutil.copy(first, dest / first.name)
    return dest


def render_set(out: Path, model, identities: int, views: int, lfw: Path) -> SyntheticSet:
    from stn3dmm.training.data.synthetic import SyntheticConfig
    from stn3dmm.training.data.synthetic_export import export_synthetic

    folder = out / "renders"
    if not (folder / "done").exists():
        tex = textures_from_lfw(lfw, out / "textures", 60)
        cfg = SyntheticConfig(yaw_range=90.0, photo_fraction=1.0, textures=str(tex))
        export_synthetic(folder, model, identities, views=views, size=224, seed=7, landmark_set="ibug68",
                         config=cfg, overwrite=True, progress=False, log=lambda m: None)
        (folder / "done").write_text("")
    return SyntheticSet(folder)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    lfw = Path(args.lfw)
    if not lfw.is_dir():
        sys.exit(f"{lfw}: LFW not found (needed for the real face textures); pass --lfw")
    import torch

    torch.set_num_threads(1)
    from stn3dmm.evaluation.aflw2000 import format_table
    from stn3dmm.evaluation.methods import FlattenMethod, run_benchmark
    from stn3dmm.flatten import Flattener
    from stn3dmm.model import load_model
    from stn3dmm.photos import FaceDetector

    model = load_model()
    data = render_set(Path(args.out), model, args.identities, args.views, lfw)
    print(f"{len(data)} renders, |yaw| buckets: " + ", ".join(
        f"{lo}-{hi}: {int(((data.abs_yaw >= lo) & (data.abs_yaw < hi)).sum())}"
        for lo, hi in ((0, 30), (30, 60), (60, math.inf))))
    for name in args.variants.split(","):
        method = FlattenMethod(model, Flattener(model, detector=FaceDetector(**VARIANTS[name])))
        results, _ = run_benchmark(data, method, progress=False)
        print(f"\n== variant {name}: {VARIANTS[name]}")
        print(format_table(results).split("\npublished")[0])
        print("\n".join(line for line in format_table(results).splitlines()
                        if line.startswith(("faces found", "stn3dmm flatten:"))))


if __name__ == "__main__":
    main()
