"""Benchmark: the localiser's forward pass in faces/s against the landmark pipeline, on this CPU.

    python benchmarks/localiser_speed.py [--threads 1,2] [--repeats 5]

For each candidate backbone and input size: faces per second of one forward pass (photo crop
-> theta) at batch 1 and batch 64, in eval mode, no gradients, best of ``--repeats`` after a
warm-up, with the weights and images in torch's default layout, in ``channels_last``, and in
``channels_last`` with batch normalisation folded into the convolutions (how
:class:`stn3dmm.fitting.localiser.LocaliserFitter` runs a torch network on the CPU), and for the
shipped network its ONNX graph run by onnxruntime (how :func:`~stn3dmm.fitting.localiser.load_localiser`
runs it on the CPU; :mod:`stn3dmm.nets.runtime`). Then the localiser as
``flatten --method localiser`` uses it on one face: the face detector's box, and the shipped
localiser as :func:`~stn3dmm.fitting.localiser.load_localiser` runs it (the cascade and the refiner's
pass). The baseline, measured in the same run on the same CPU: the landmark pipeline's
per-face work as ``stn3dmm flatten`` does it (detect + face mesh on matplotlib's sample photo,
then the crop, landmark map and Levenberg-Marquardt fit), faces per second. Weights are
random: speed does not depend on them. Each thread count is a separate table: on a busy
2-core machine two intra-op threads can be many times slower than one (OpenMP waits for a core
another process holds), so the load average is printed with each.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

CANDIDATES = [("mobilenetv2", 112, 1.0), ("mobilenetv2", 128, 1.0), ("mobilenetv2", 112, 0.5),
              ("resnet18", 112, 1.0), ("resnet18", 128, 1.0)]


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def localiser_rows(repeats: int, candidates=CANDIDATES) -> list[tuple]:
    import torch

    from stn3dmm.nets import fold_batch_norm
    from stn3dmm.nets.localiser import build_localiser

    rows = []
    for name, size, width in candidates:
        plain = build_localiser(name, n_id=10, n_exp=10, image_size=size, width=width).eval()
        params = sum(p.numel() for p in plain.parameters())
        for layout in ("default", "channels_last", "channels_last, BN folded"):
            fmt = torch.channels_last if layout.startswith("channels_last") else torch.contiguous_format
            net = (fold_batch_norm(plain) if "folded" in layout else plain).to(memory_format=fmt)
            per = []
            for batch in (1, 64):
                x = torch.rand(batch, 3, size, size).contiguous(memory_format=fmt)
                with torch.no_grad():
                    per.append(batch / _best(lambda: net(x), repeats))
            rows.append((f"{name} x{width:g} @ {size} px, {layout}", params, per[0], per[1]))
        if (name, size, width) == CANDIDATES[0]:
            rows += onnx_rows(repeats, params)
    return rows


def onnx_rows(repeats: int, params: int) -> list[tuple]:
    """The shipped network's ONNX graph by onnxruntime (how load_localiser runs it on the CPU),
    when the package holds one."""
    import torch

    from stn3dmm.nets.shipped import load_shipped_onnx

    try:
        graph = load_shipped_onnx()
    except ValueError:
        graph = None
    if graph is None:
        return []
    per = []
    for batch in (1, 64):
        x = torch.rand(batch, 3, *graph.image_size)
        per.append(batch / _best(lambda: graph(x), repeats))
    return [("the shipped graph, onnxruntime", params, per[0], per[1])]


def localiser_face_rate(repeats: int) -> float:
    """Faces/s of the face detector's box + the shipped localiser as ``load_localiser`` runs it (two
    passes, the second with its mirror, then the refiner's mirrored pass) on the sample photo, one face."""
    from stn3dmm.fitting.localiser import LocaliserFitter, load_localiser
    from stn3dmm.model import load_model
    from stn3dmm.nets.localiser import build_localiser
    from stn3dmm.photos import FaceDetector, read_photo
    from stn3dmm.photos.samples import sample_photo_paths

    model = load_model()
    try:
        fitter = load_localiser(model=model)
    except ValueError:               # no shipped weights yet: the same network, untrained
        fitter = LocaliserFitter(build_localiser("mobilenetv2", n_id=10, n_exp=10, image_size=112).eval(),
                                 model, 10, 10)
    image = read_photo(sample_photo_paths()[0]).image
    det = FaceDetector(landmarks=False)

    def once():
        face = det(image)[0]
        fitter.from_boxes([image], [face.bbox])

    return 1.0 / _best(once, repeats)


def pipeline_rate(repeats: int) -> float:
    """Faces/s of detect + mesh + crop + map + fit on the sample photo, one face per call."""
    import numpy as np
    import torch

    from stn3dmm.fitting import fit_landmarks
    from stn3dmm.model import load_model
    from stn3dmm.photos import FaceDetector, crop_face, face_targets, read_photo
    from stn3dmm.photos.samples import sample_photo_paths

    model = load_model()
    image = read_photo(sample_photo_paths()[0]).image
    det = FaceDetector()

    def once():
        face = det(image)[0]
        crop, tr = crop_face(image, face)
        t = face_targets(face.transformed(tr), model)
        fit_landmarks(model, torch.tensor(t.points[None]), torch.tensor(t.weights[None]),
                      landmark_set=torch.as_tensor(t.vertices), prior_weight=4.0, image_size=(224, 224))

    np.random.seed(0)
    return 1.0 / _best(once, repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shipped-only", action="store_true",
                    help="only the shipped network's row (MobileNetV2 x1 @ 112 px), not every candidate")
    args = ap.parse_args()
    import os

    import torch

    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        base = pipeline_rate(args.repeats)
        print(f"\ntorch {torch.__version__}, {threads} thread(s), load {os.getloadavg()[0]:.2f}")
        print(f"{'localiser':54}{'parameters':>12}{'faces/s b=1':>14}{'faces/s b=64':>14}{'b=64 vs pipeline':>18}")
        rows = localiser_rows(args.repeats, CANDIDATES[:1] if args.shipped_only else CANDIDATES)
        for name, params, r1, r64 in rows:
            print(f"{name:54}{params / 1e6:>11.2f}M{r1:>14.1f}{r64:>14.1f}{r64 / base:>17.1f}x")
        print(f"{'baseline: landmark pipeline':54}{'':>12}{base:>14.1f}{'':>14}{'1.0x':>18}"
              "   (detect + face mesh + map + LM fit, one face)")
        face = localiser_face_rate(args.repeats)
        print(f"{'detector box + the shipped localiser':54}{'':>12}{face:>14.1f}{'':>14}"
              f"{face / base:>17.1f}x   (detect + the cascade and the refiner, as load_localiser runs it, one face)")


if __name__ == "__main__":
    main()
