"""Benchmark: landmark fitting, time and error per face, against the peer eos (C++).

    python benchmarks/fit.py [--batch 64] [--threads 1]

Same model (the prepared default grid model, 10 identity + 10 expression components), same
landmarks (iBUG-68 vertices projected from random faces, |yaw| <= 60 degrees, plus 1 px
Gaussian noise), same error measure (mean distance of the fitted landmarks to the given
ones, px). Rows:

* ours, Levenberg–Marquardt, batch 1 and batch B (closed-form Jacobian, batched solves);
* ours, preconditioned L-BFGS, batch 1 and batch B;
* ours, gradient descent with the original's step sizes (5 + 5, s = 0.99^logs), each face
  stopping on its own, from alpha = 0, prior 0.111, batch B;
* eos-py 1.5.0 ``fit_shape_and_pose`` (5 iterations, its default), one face at a time, on
  PCA models built from our arrays, landmarks named by vertex index with an identity
  LandmarkMapper (eos's own name-to-vertex mapping is for its models, not ours);
* on the original demo's six photos when ``../shared/data/demodata.mat`` exists.

Peak memory is the resident memory added during the row (sampled). Times are best of 3.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from _common import measure


def timed(fn, repeat=3):
    """(result of the last call, best wall time, largest peak MiB) over ``repeat`` calls."""
    best, out, peak = float("inf"), None, 0.0
    for _ in range(repeat):
        out, dt, _, pk = measure(fn, sample_s=0.002)
        best, peak = min(best, dt), max(peak, pk)
    return out, best, peak


def random_faces(stn, b, seed=0, noise=1.0):
    from stn3dmm.stn.layers import axis_angle_to_rotation, rotation_to_axis_angle

    g = torch.Generator().manual_seed(seed)
    u = lambda: 2 * torch.rand(b, generator=g, dtype=torch.float64) - 1  # noqa: E731
    R = [axis_angle_to_rotation(torch.stack([p, 0 * p, 0 * p])) @ axis_angle_to_rotation(torch.stack([0 * y, y, 0 * y]))
         for y, p in zip(math.radians(60) * u(), math.radians(20) * u())]
    th = torch.zeros(b, stn.n_params, dtype=torch.float64)
    th[:, :3] = rotation_to_axis_angle(torch.stack(R))
    th[:, 3:5] = 112 + 10 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    th[:, 5] = math.log(0.9)
    th[:, 6:] = torch.randn(b, stn.n_params - 6, generator=g, dtype=torch.float64)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    return lm + noise * torch.randn(lm.shape, generator=g, dtype=torch.float64)


def eos_model(model):
    import eos

    def pca(B, mean):
        Bf = B.reshape(len(B), -1).T.astype(np.float64)
        nrm = np.linalg.norm(Bf, axis=0)
        return eos.morphablemodel.PcaModel(mean.reshape(-1, 1).astype(np.float32), (Bf / nrm).astype(np.float32),
                                           (nrm ** 2).reshape(-1, 1).astype(np.float32), model.faces.tolist())

    shape = pca(model.basis_id, model.mean)
    expr = pca(model.basis_exp, np.zeros_like(model.mean))
    return eos.morphablemodel.MorphableModel(shape, expr, eos.morphablemodel.PcaModel())


def eos_fit(mm, vertex_ids, landmarks, size=(224, 224)):
    """Fit each face with eos; return (B,) mean landmark error px."""
    import eos

    mapper = eos.core.LandmarkMapper()
    h, w = size
    errs = []
    for lm in landmarks:
        L = [eos.core.Landmark(str(int(i)), p.astype(np.float32).reshape(2, 1)) for i, p in zip(vertex_ids, lm)]
        mesh, rp, _, _ = eos.fitting.fit_shape_and_pose(mm, L, mapper, w, h)
        V = np.asarray(mesh.vertices)[vertex_ids]
        clip = (np.asarray(rp.get_projection()) @ np.asarray(rp.get_modelview()) @ np.c_[V, np.ones(len(V))].T).T
        ndc = clip[:, :2] / clip[:, 3:4]
        pred = np.stack([(ndc[:, 0] + 1) / 2 * w, h - (ndc[:, 1] + 1) / 2 * h], 1)
        errs.append(np.linalg.norm(pred - lm, axis=1).mean())
    return np.array(errs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for our fits (fit_landmarks(threads=...); its default is 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from stn3dmm.fitting.landmarks import ORIGINAL_PRIOR_WEIGHT, fit_landmarks
    from stn3dmm.model.store import load_model
    from stn3dmm.stn import MorphableSTN

    model = load_model()
    stn = MorphableSTN(model, landmarks="ibug68", visibility="none").double()
    lm = random_faces(stn, args.batch)
    rows = []

    def ours(name, b, **kw):
        kw = dict(kw, threads=args.threads)
        fit_landmarks(model, lm[:1], **kw)
        r, dt, pk = timed(lambda: fit_landmarks(model, lm[:b], **kw))
        rows.append((name, b, 1000 * dt / b, pk, float(r.error.mean()), float(r.error.max())))

    for b in (1, args.batch):
        ours("ours: Levenberg-Marquardt", b, method="lm")
    for b in (1, args.batch):
        ours("ours: L-BFGS", b, method="lbfgs")
    # the original's step sizes, but each face stopping on its own, from alpha = 0, with the
    # original's training prior ratio (the settings of the figure in docs/benchmarks.md); the
    # original demo's own loop (batch-total rule, random alpha, no prior) is the demo rows below
    ours("ours: gradient descent (per-face stop, prior 0.111), 5+5", args.batch, method="gd", n_id=5, n_exp=5,
         stop="image", init_alpha="zeros", prior_weight=ORIGINAL_PRIOR_WEIGHT)
    try:
        mm = eos_model(model)
        ids = model.landmarks["ibug68"]
        lmn = lm.numpy()
        errs, dt, pk = timed(lambda: eos_fit(mm, ids, lmn), repeat=2)
        rows.append(("eos-py 1.5.0 fit_shape_and_pose (peer)", args.batch, 1000 * dt / args.batch, pk,
                     float(errs.mean()), float(errs.max())))
        errs1, dt1, pk1 = timed(lambda: eos_fit(mm, ids, lmn[:1]), repeat=3)
        rows.append(("eos-py 1.5.0 fit_shape_and_pose (peer)", 1, 1000 * dt1, pk1, float(errs1.mean()), float(errs1.max())))
    except ImportError:
        rows.append(("eos-py (not installed: pip install eos-py==1.5.0)", 0, float("nan"), float("nan"), float("nan"), float("nan")))

    print(f"Synthetic faces from the default model, iBUG-68 + 1 px noise, {args.threads} threads")
    print(f"{'method':<58} {'batch':>5} {'ms/face':>9} {'faces/s':>9} {'peak MiB':>9} {'err px':>8} {'max px':>8}")
    for name, b, ms, pk, e, mx in rows:
        print(f"{name:<58} {b:>5} {ms:>9.2f} {1000 / ms:>9.1f} {pk:>9.0f} {e:>8.3f} {mx:>8.3f}")

    shared = Path(os.environ.get("STN3DMM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    f = shared / "data" / "demodata.mat"
    if f.exists():
        from stn3dmm.demo import demo_configs, read_demodata

        images, labels = read_demodata(f)
        print(f"\nThe original demo's six photos (AFLW-21 labels), {args.threads} threads")
        print(f"{'method':<58} {'iterations':>10} {'s total':>9} {'mean px':>8} per photo")
        # the very settings of `stn3dmm demo`; a fresh seed-0 generator for every timed run
        for k in range(3):
            name = "ours: " + demo_configs(model)[k][0]

            def run(k=k):
                return fit_landmarks(model, labels, image_size=tuple(images.shape[-2:]), threads=args.threads,
                                     **demo_configs(model)[k][1])

            r, dt, _ = timed(run)
            its = r.iterations.tolist()
            its = str(its[0]) if len(set(its)) == 1 else f"{min(its)}-{max(its)}"
            print(f"{name:<58} {its:>10} {dt:>9.3f} {float(r.error.mean()):>8.2f} "
                  f"{np.round(r.error.numpy(), 2).tolist()}")
        try:
            mm = eos_model(model)
            errs, dt, _ = timed(lambda: eos_fit(mm, model.landmarks["aflw21"], labels.numpy()), repeat=2)
            print(f"{'eos-py 1.5.0 fit_shape_and_pose (peer)':<58} {'':>10} {dt:>9.3f} {errs.mean():>8.2f} "
                  f"{np.round(errs, 2).tolist()}")
        except ImportError:
            pass
    else:
        print(f"\n({f} not found: demo-photo rows skipped)", file=sys.stderr)


if __name__ == "__main__":
    main()
