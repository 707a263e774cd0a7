"""What is scored on a benchmark: the landmark pipeline of ``stn3dmm flatten``, and the raw detector.

A method turns one photo (and the benchmark's face box, used only when the method cannot find
the face by itself) into a :class:`Prediction`: 68 landmarks in photo pixels, a pose, and
whether the method found the face on its own. :func:`run_benchmark` runs a method over a
benchmark's images and scores them.

:class:`FlattenMethod` is the product's main job as ``stn3dmm flatten`` runs it: detect the
faces, take the first with landmarks (largest first), fit the model to its dense landmarks,
and read the model's 68 landmark vertices and pose off the fit. It also reports the raw
detector's own 68 points (mediapipe's, by the usual index subset), so one run scores both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..flatten.pipeline import Flattener
from ..photos import read_photo
from ..photos.landmark_map import mediapipe_ibug68
from ..training.data.pose import pose_from_theta
from .aflw2000 import Aflw2000, score


@dataclass
class Prediction:
    """One face's prediction: ``points`` (68, 2) photo px; ``pose`` (3,) yaw, pitch, roll in
    degrees; ``found`` by the method itself; ``how`` it was placed ("detected", "benchmark box",
    "mean face"); ``raw`` (68, 2) the detector's own points, or None."""

    points: np.ndarray
    pose: np.ndarray
    found: bool
    how: str
    raw: np.ndarray | None = None


def _contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


class FlattenMethod:
    """The landmark pipeline (detect, face mesh, dense landmark map, Levenberg-Marquardt fit)."""

    name = "stn3dmm flatten"

    def __init__(self, model, flattener: Flattener | None = None):
        self.model = model
        self.flattener = flattener or Flattener(model)
        self.ibug68 = np.asarray(model.landmarks["ibug68"])

    def _mean_face(self, square: np.ndarray) -> Prediction:
        """The mean face, frontal, filling ``square``: the prediction when nothing finds a face."""
        p = np.asarray(self.model.mean, dtype=np.float64)[self.ibug68][:, :2] * np.array([1.0, -1.0])
        lo, hi = p.min(0), p.max(0)
        c, side = (square[:2] + square[2:]) / 2, (square[2:] - square[:2]).max()
        pts = c + (p - (lo + hi) / 2) * side / (hi - lo).max()
        return Prediction(pts, np.zeros(3), False, "mean face")

    def predict(self, image: np.ndarray, face_square: np.ndarray) -> Prediction:
        """``image`` (H, W, 3) float in [0, 1]; ``face_square`` (4,) the benchmark's box of the face,
        used to check that the face found is the benchmark's, and to place it when it is not."""
        centre = (face_square[:2] + face_square[2:]) / 2
        faces = [f for f in self.flattener.detect(image) if f.points is not None and not f.tiny]
        face = faces[0] if faces else None
        found = face is not None and _contains(face.bbox, centre)
        how = "detected"
        if not found:
            face, how = self.flattener.detector.face_in_box(image, face_square), "benchmark box"
            if face.points is None:
                return self._mean_face(face_square)
        r = self.flattener.flatten_faces(image, [face])[0]
        pts = r.transform.to_source(r.points[self.ibug68])
        pose = pose_from_theta(torch.as_tensor(r.theta, dtype=torch.float64)[None])[0].numpy()
        return Prediction(pts, pose, found, how, raw=mediapipe_ibug68(face.points))


class LocaliserMethod:
    """A trained localiser from the benchmark's face box: crop, one forward pass, theta, landmarks.

    The crop frames the face as the localiser's training crops did: the box of the face's 68
    landmarks (the benchmark box shrunk by :data:`~.aflw2000.ROI_TO_FACE`) turned into the box the
    face mesh would give (:data:`~stn3dmm.training.data.crop.FRAMING`), plus the photo pipeline's
    margin. Every face counts as found: the box is the benchmark's.
    """

    name = "stn3dmm localiser"

    def __init__(self, model, net, n_id: int, n_exp: int, device="cpu"):
        from ..stn import MorphableSTN

        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.size = int(net.image_size[0])
        self.stn = MorphableSTN(model, landmarks="ibug68", n_id=n_id, n_exp=n_exp, max_outside=None).to(device)

    @classmethod
    def from_checkpoint(cls, checkpoint, model, device="cpu") -> "LocaliserMethod":
        """The localiser of a training checkpoint (loaded with ``weights_only=True``)."""
        from .checkpoint import load_localiser

        net, cfg = load_localiser(checkpoint, device)
        return cls(model, net, int(cfg["model"]["n_id"]), int(cfg["model"]["n_exp"]), device)

    def crop_square(self, face_square: np.ndarray) -> tuple[np.ndarray, float]:
        """(centre (2,), side) of the localiser's crop around a face's landmark square."""
        from ..photos.crop import DEFAULT_MARGIN
        from ..training.data.crop import FRAMING

        k, fx, fy = FRAMING["ibug68"]
        d = float((face_square[2:] - face_square[:2]).max())
        centre = (face_square[:2] + face_square[2:]) / 2 + np.array([fx, fy]) * d
        return centre, d * k * (1.0 + 2.0 * DEFAULT_MARGIN)

    @torch.no_grad()
    def predict(self, image: np.ndarray, face_square: np.ndarray) -> Prediction:
        from ..photos.crop import crop_square

        centre, side = self.crop_square(face_square)
        crop, transform = crop_square(image, centre, side, self.size)
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float().to(self.device)
        theta = self.net(x).float()
        pts = self.stn.geometry(theta).points[0, self.stn.landmark_index].double().cpu().numpy()
        pose = pose_from_theta(theta.double().cpu())[0].numpy()
        return Prediction(transform.to_source(pts), pose, True, "benchmark box")


def run_benchmark(bench: Aflw2000, method, idx=None, progress: bool = True) -> tuple[dict, list[dict]]:
    """Run ``method`` on the images ``idx`` (default: all) of ``bench`` and score them.

    Returns:
        (results, records): results maps a method name to :func:`.aflw2000.score`'s dict (the
        method, and ``"raw detector"`` when the method reports the detector's own points);
        records has one dict per image (name, |yaw|, found by the method itself, how it was placed,
        NME).
    """
    from tqdm import tqdm

    idx = np.arange(len(bench)) if idx is None else np.asarray(idx)
    preds = []
    for i in tqdm(idx, desc="aflw2000-3d", unit="photo", disable=not progress, dynamic_ncols=True):
        image = read_photo(bench.image_path(int(i))).image
        preds.append(method.predict(image, bench.face_square(int(i))))
    found = np.array([p.found for p in preds])
    pts = np.stack([p.points for p in preds])
    pose = np.stack([p.pose for p in preds])
    results = {method.name: score(bench, idx, pts, found, pose)}
    if any(p.raw is not None for p in preds):
        raw = np.stack([p.raw if p.raw is not None else p.points for p in preds])
        results["raw mediapipe, 68-point subset"] = score(bench, idx, raw, found)
    e = results[method.name].pop("per_image_nme")
    for r in results.values():
        r.pop("per_image_nme", None)
    records = [{"name": bench.names[int(i)], "abs_yaw": float(bench.abs_yaw[int(i)]), "found": bool(p.found),
                "how": p.how, "nme": float(e[k]), "pose": p.pose.tolist()} for k, (i, p) in enumerate(zip(idx, preds))]
    return results, records


def evaluate_aflw2000(root, model, per_bucket: int | None = None, out=None, progress: bool = True,
                      method=None) -> dict:
    """``stn3dmm evaluate --data aflw2000-3d``: ``method`` (default: the landmark pipeline,
    :class:`FlattenMethod`) on the benchmark in ``root`` (every image, or ``per_bucket`` images of
    each |yaw| bucket spread through the file order), scored with the protocol; the result (with
    per-image records) is written to ``out`` as strict JSON when given."""
    import json
    from pathlib import Path

    from ..core.paths import write_bytes_atomically
    from .aflw2000 import load_aflw2000, spread_subset
    from .protocol import strict_json

    bench = load_aflw2000(root)
    idx = None if per_bucket is None else spread_subset(bench, per_bucket)
    results, records = run_benchmark(bench, method or FlattenMethod(model), idx, progress=progress)
    res = {"benchmark": "AFLW2000-3D", "root": str(root), "methods": results, "images": records}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(Path(out), json.dumps(strict_json(res), indent=1, allow_nan=False).encode())
    return res


__all__ = ["FlattenMethod", "LocaliserMethod", "Prediction", "evaluate_aflw2000", "run_benchmark"]
