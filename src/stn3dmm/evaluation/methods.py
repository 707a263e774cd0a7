"""What is scored on a benchmark: ``stn3dmm flatten`` (by each ``--method``), the raw detector, a localiser.

A method turns one photo (and the benchmark's face box, used only when the method cannot find
the face by itself) into a :class:`Prediction`: 68 landmarks in photo pixels, a pose, and
whether the method found the face on its own. :func:`run_benchmark` runs a method over a
benchmark's images and scores them.

:class:`FlattenMethod` is the product's main job as ``stn3dmm flatten`` runs it: detect the
faces, take the first (main face first; with ``--method landmarks``, the first with face-mesh
points), find theta as its method does, and read the model's 68 landmark vertices and pose
off it. The landmark method also reports the raw detector's own 68 points (mediapipe's, by
the usual index subset), so one run scores both. :class:`LocaliserMethod` scores a trained
localiser alone, from the benchmark's box or from our detector's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..flatten.pipeline import Flattener
from ..photos import read_photo
from ..photos.landmark_map import mediapipe_ibug68
from ..stn.pose import pose_in_photo
from .aflw2000 import Aflw2000, score


@dataclass
class Prediction:
    """One face's prediction: ``points`` (68, 2) photo px; ``pose`` (3,) yaw, pitch, roll in
    degrees; ``found`` by the method itself; ``how`` it was placed ("detected", "benchmark box",
    "benchmark box (face 0 is another face)", "mean face"); ``raw`` (68, 2) the detector's own points, or None."""

    points: np.ndarray
    pose: np.ndarray
    found: bool
    how: str
    raw: np.ndarray | None = None


def _contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


class FlattenMethod:
    """The main job's pipeline (:class:`~stn3dmm.flatten.pipeline.Flattener`): detect, then the
    landmark fit (face mesh, dense landmark map, Levenberg-Marquardt), or with ``method="auto"``
    the localiser where it sees a turned face or the face mesh finds none."""

    def __init__(self, model, flattener: Flattener | None = None):
        self.model = model
        self.flattener = flattener or Flattener(model)
        self.ibug68 = np.asarray(model.landmarks["ibug68"])
        method = self.flattener.method
        self.name = f"stn3dmm flatten --method {method}"
        self.fallback = LocaliserMethod(self.flattener.localiser) if self.flattener.localiser is not None else None

    def _mean_face(self, square: np.ndarray) -> Prediction:
        """The mean face, frontal, filling ``square``: the prediction when nothing finds a face."""
        p = np.asarray(self.model.mean, dtype=np.float64)[self.ibug68][:, :2] * np.array([1.0, -1.0])
        lo, hi = p.min(0), p.max(0)
        c, side = (square[:2] + square[2:]) / 2, (square[2:] - square[:2]).max()
        pts = c + (p - (lo + hi) / 2) * side / (hi - lo).max()
        return Prediction(pts, np.zeros(3), False, "mean face")

    def predict(self, image: np.ndarray, face_square: np.ndarray) -> Prediction:
        """``image`` (H, W, 3) float in [0, 1]; ``face_square`` (4,) the benchmark's box of the face,
        used to check that the face found is the benchmark's, and to place it when it is not
        (by the face mesh on that box for the landmark fit, by the localiser from it otherwise)."""
        fl = self.flattener
        centre = (face_square[:2] + face_square[2:]) / 2
        faces = [f for f in fl.detect(image) if not f.tiny and (f.points is not None or not fl.needs_mesh)]
        face = faces[0] if faces else None
        found = face is not None and _contains(face.bbox, centre)
        how = "detected"
        if not found:
            box = "benchmark box" + (" (face 0 is another face)" if face is not None else "")
            if self.fallback is not None:
                p = self.fallback.predict(image, face_square)
                return Prediction(p.points, p.pose, False, box)
            face, how = fl.detector.face_in_box(image, face_square), box
            if face.points is None:
                return self._mean_face(face_square)
        r = fl.flatten_faces(image, [face])[0]
        pts = r.transform.to_source(r.points[self.ibug68])
        pose = pose_in_photo(torch.as_tensor(r.theta, dtype=torch.float64)[None], r.transform.angle)[0].numpy()
        # the raw detector row is the landmark pipeline's (auto's would mix in the localiser's faces)
        raw = mediapipe_ibug68(face.points) if face.points is not None and fl.method == "landmarks" else None
        return Prediction(pts, pose, found, how, raw=raw)


class LocaliserMethod:
    """A trained localiser (:class:`~stn3dmm.fitting.localiser.LocaliserFitter`): crop, forward
    passes, theta, landmarks.

    ``start="box"`` (the published protocol): the first crop frames the benchmark's face box as
    the localiser's training crops framed the 68 points (the benchmark box shrunk by
    :data:`~.aflw2000.ROI_TO_FACE` taken as the 68 points' box); every face counts as found.
    ``start="detect"`` (end to end): our face detector's box of the face, as ``stn3dmm flatten
    --method localiser`` runs it; where the detector finds no face on the benchmark's, the
    benchmark box is used and the face counts as not found.
    """

    STARTS = ("box", "detect")

    def __init__(self, fitter, start: str = "box", detector=None):
        if start not in self.STARTS:
            raise ValueError(f"start must be one of {self.STARTS}, got {start!r}")
        self.fitter, self.start = fitter, start
        self.name = "stn3dmm localiser" + (" (from our detector)" if start == "detect" else "")
        self.detector = detector
        if start == "detect" and detector is None:
            from ..photos import FaceDetector

            self.detector = FaceDetector(landmarks=False)

    def _detected_face(self, image: np.ndarray, face_square: np.ndarray):
        """Our detector's main face, if its box holds the benchmark box's centre; else None."""
        from ..photos import detect_faces

        centre = (face_square[:2] + face_square[2:]) / 2
        faces = [f for f in detect_faces(image, self.detector) if not f.tiny]
        face = faces[0] if faces else None
        return face if face is not None and _contains(face.bbox, centre) else None

    def predict(self, image: np.ndarray, face_square: np.ndarray) -> Prediction:
        from ..photos.crop import landmark_square_of_box

        detected = self._detected_face(image, face_square) if self.start == "detect" else None
        if detected is not None:
            face, found, how = self.fitter.from_faces([image], [detected])[0], True, "detected"
        else:
            sq = landmark_square_of_box(face_square, "ibug68")
            face, found, how = self.fitter.from_squares([image], [sq])[0], self.start == "box", "benchmark box"
        pose = pose_in_photo(torch.as_tensor(face.theta, dtype=torch.float64)[None], face.angle)[0].numpy()
        return Prediction(face.points68, pose, found, how)


def predict_all(bench: Aflw2000, method, idx, progress: bool = True) -> list[Prediction]:
    """``method``'s :class:`Prediction` for each image ``idx`` of ``bench``, read one at a time."""
    from tqdm import tqdm

    return [method.predict(read_photo(bench.image_path(int(i))).image, bench.face_square(int(i)))
            for i in tqdm(idx, desc="aflw2000-3d", unit="photo", disable=not progress, dynamic_ncols=True)]


def run_benchmark(bench: Aflw2000, method, idx=None, progress: bool = True) -> tuple[dict, list[dict]]:
    """Run ``method`` on the images ``idx`` (default: all) of ``bench`` and score them.

    Returns:
        (results, records): results maps a method name to :func:`.aflw2000.score`'s dict (the
        method, and ``"raw detector"`` when the method reports the detector's own points);
        records has one dict per image (name, |yaw|, found by the method itself, how it was placed,
        NME).
    """
    idx = np.arange(len(bench)) if idx is None else np.asarray(idx)
    preds = predict_all(bench, method, idx, progress)
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
    :class:`FlattenMethod`; or a list of methods, scored in one run) on the benchmark in ``root``
    (every image, or ``per_bucket`` images of each |yaw| bucket spread through the file order),
    scored with the protocol. ``images`` holds the first method's per-image records,
    ``images_by_method`` every method's. The result is written to ``out`` as strict JSON when given."""
    import json
    from pathlib import Path

    from ..core.paths import write_bytes_atomically
    from .aflw2000 import load_aflw2000, spread_subset
    from .protocol import strict_json

    bench = load_aflw2000(root)
    idx = None if per_bucket is None else spread_subset(bench, per_bucket)
    methods = method if isinstance(method, (list, tuple)) else [method or FlattenMethod(model)]
    results, by_method = {}, {}
    for m in methods:
        r, records = run_benchmark(bench, m, idx, progress=progress)
        results.update(r)
        by_method[m.name] = records
    res = {"benchmark": "AFLW2000-3D", "root": str(root), "methods": results,
           "images": by_method[methods[0].name], "images_by_method": by_method}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(Path(out), json.dumps(strict_json(res), indent=1, allow_nan=False).encode())
    return res


__all__ = ["FlattenMethod", "LocaliserMethod", "Prediction", "evaluate_aflw2000", "predict_all", "run_benchmark"]
