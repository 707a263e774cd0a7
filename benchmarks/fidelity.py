"""Benchmark: fidelity to the original release, every deviation of docs/paper.md measured.

    python benchmarks/fidelity.py [--seeds 30] [--threads 1]

Prints one section per measured row of docs/paper.md: the original demo's gradient descent
(its loop, and each of our earlier departures from it), the sampling-grid normalisation, the
back-face visibility (the original's normals against ours, and the depth test), the symmetry
and siamese losses (normalisation, pairing, the original's backward), the scale map, mean vs
sum, samples from outside the image, the rotation gradient near r = 0, and the layers that
agree (the forward chain and the flip, in the original's frame, against its equations written
out here). Uses the default model (``stn3dmm.load_model()``, the original's 5 + 5 components
where it matters) and, for the demo rows, ``../shared/data/demodata.mat``
(``$STN3DMM_SHARED/data``). float64 throughout; timings are wall time with ``--threads``.

The original's MATLAB cannot run here. Where a row needs one of its formulas (the equations of
its forward chain, its backward of the symmetry and siamese losses, the Gallego-Yezzi rotation
derivative), the formula is written out below from its definition.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

W = H = 224


def _demo_data():
    from stn3dmm.training.data.demo_photos import read_demodata

    shared = Path(os.environ.get("STN3DMM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    f = shared / "data" / "demodata.mat"
    if not f.exists():
        sys.exit(f"{f} not found: this benchmark needs the original demo's photos")
    return read_demodata(f)


def _fit(model, labels, **kw):
    from stn3dmm.fitting.landmarks import fit_landmarks

    t = time.perf_counter()
    r = fit_landmarks(model, labels, image_size=(H, W), **kw)
    return r, time.perf_counter() - t


def _stn(model, fit, **kw):
    from stn3dmm.stn import MorphableSTN

    return MorphableSTN(model, n_id=fit.n_id, n_exp=fit.n_exp, scale=fit.scale, **kw).double()


# -- 1. the demo's gradient descent ------------------------------------------------------------

def gradient_descent_rows(model, labels, seeds):
    from stn3dmm.fitting.landmarks import ORIGINAL_PRIOR_WEIGHT

    print("\n== the original demo's gradient descent (6 photos, 5 + 5 components) ==")
    base = dict(method="gd", n_id=5, n_exp=5)
    its, errs, secs = [], [], []
    for s in range(seeds):
        r, dt = _fit(model, labels, generator=torch.Generator().manual_seed(s), **base)
        its.append(int(r.iterations[0]))
        errs.append(float(r.error.mean()))
        secs.append(dt)
        if s == 0:
            gd0 = r
    print(f"original loop, seed 0: {its[0]} iterations, mean error {errs[0]:.2f} px, {secs[0]:.2f} s")
    print(f"original loop, seeds 0-{seeds - 1}: {min(its)}-{max(its)} iterations (median {int(np.median(its))}), "
          f"{min(errs):.2f}-{max(errs):.2f} px (mean {np.mean(errs):.2f}), {min(secs):.2f}-{max(secs):.2f} s")
    variants = [
        ("each image stops on its own", dict(stop="image")),
        ("prior 0.1/0.8998, batch rule", dict(prior_weight=ORIGINAL_PRIOR_WEIGHT)),
        ("each image on its own + prior 0.1/0.8998 (our earlier default)",
         dict(stop="image", prior_weight=ORIGINAL_PRIOR_WEIGHT)),
        ("s = exp(logs) instead of 0.99^logs", dict(scale="exp")),
    ]
    print(f"{'seed 0, changed from the original loop':<64} {'iterations':>10} {'error px':>9}")
    for name, kw in variants:
        r, _ = _fit(model, labels, generator=torch.Generator().manual_seed(0), **dict(base, **kw))
        it = r.iterations.tolist()
        its_s = str(it[0]) if len(set(it)) == 1 else f"{min(it)}-{max(it)}"
        print(f"{name:<64} {its_s:>10} {float(r.error.mean()):>9.2f}")
    lm, dt = _fit(model, labels, method="lm", n_id=5, n_exp=5)
    lm_o, _ = _fit(model, labels, method="lm", n_id=5, n_exp=5, scale="original")
    print(f"Levenberg-Marquardt 5+5: {int(lm.iterations.max())} iterations, {float(lm.error.mean()):.2f} px, "
          f"{dt:.3f} s; with s = 0.99^logs the error changes by {float((lm.error - lm_o.error).abs().max()):.1e} px")
    return gd0, lm


# -- 2. the sampling grid ----------------------------------------------------------------------

def grid_rows(model, images, fits):
    from stn3dmm.stn.layers import bilinear_sampler, inside_image, sampling_grid

    print("\n== sampling grid: the original's (x - 112)/112 against ours (6 photos, 0-255 scale) ==")
    for name, fit in fits:
        stn = _stn(model, fit, visibility="none", landmarks=None)
        with torch.no_grad():
            p = stn.geometry(fit.theta.double()).points
            g_ours = sampling_grid(p, stn.res, H, W)
            g_orig = sampling_grid(p, stn.res, H, W, convention="original")
            inside = (inside_image(g_ours) * inside_image(g_orig))[:, 0].bool()          # (B, R, R)
            col, row = (p[..., 0] + 1) * (W - 1) / W, p[..., 1] * (H - 1) / H            # where the original reads
            dist = torch.stack((col - p[..., 0], row - p[..., 1]), -1).norm(dim=-1).view_as(inside)[inside]
            img = images.double() * 255
            diff = (bilinear_sampler(img, g_ours) - bilinear_sampler(img, g_orig)).abs()
            diff = diff.permute(0, 2, 3, 1)[inside]
        print(f"at the {name} fit: the original samples {float(dist.min()):.2f}-{float(dist.max()):.2f} px "
              f"(mean {float(dist.mean()):.2f}) from the projected point; flattened images differ by "
              f"{float(diff.mean()):.1f} on average, {float(diff.max()):.0f} at most")


# -- 3. visibility -----------------------------------------------------------------------------

def _area_angle_all(v, faces):
    """The original's weights (area x angle, its clockwise faces) summed over EVERY triangle."""
    c = [v[:, faces[:, k]] for k in range(3)]
    e1, e2, e3 = c[1] - c[0], c[2] - c[0], c[1] - c[2]
    n = torch.linalg.cross(e1, e3)

    def ang(a, b):
        return torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1))

    a1, a2 = ang(e1, e2), ang(e3, e1)
    out = torch.zeros_like(v)
    for k, a in enumerate((a1, a2, math.pi - a1 - a2)):
        out.index_add_(1, faces[:, k], n * a[..., None])
    return out[..., 2] >= 0


def visibility_rows(model, posed_fits):
    from stn3dmm.stn.layers import axis_angle_to_rotation, rotate
    from stn3dmm.stn.visibility import (original_grid_faces, visibility_backface, visibility_backface_original,
                                        visibility_depth)

    print("\n== back-face visibility: share of the default model's vertices on which two rules disagree ==")
    faces, fo = torch.as_tensor(model.faces), original_grid_faces(model.res)
    mean = torch.as_tensor(model.mean, dtype=torch.float64)[None]
    yaws = list(range(0, 80, 10))
    rows = {k: [] for k in ("ours vs original", "its rule on our triangles", "overwrite only", "diagonal only",
                            "depth hides, ours shows")}
    for yaw in yaws:
        v = rotate(mean, axis_angle_to_rotation(torch.tensor([[0.0, math.radians(yaw), 0.0]], dtype=torch.float64)))
        ours, orig = visibility_backface(v, faces), visibility_backface_original(v, fo)
        rows["ours vs original"].append((ours != orig).double().mean())
        mine_cw = faces[:, [0, 2, 1]]                                     # our triangles, the original's winding
        rows["its rule on our triangles"].append((visibility_backface_original(v, mine_cw) != ours).double().mean())
        rows["overwrite only"].append((_area_angle_all(v, fo) != orig).double().mean())
        rows["diagonal only"].append((visibility_backface(v, fo[:, [0, 2, 1]]) != ours).double().mean())
        rows["depth hides, ours shows"].append((ours & ~visibility_depth(v, faces)).double().mean())
    print(f"{'mean face, yaw (degrees)':<56}" + "".join(f"{y:>7}" for y in yaws))
    labels = {"ours vs original": "our rule vs the original's (its normals and triangles)",
              "its rule on our triangles": "the original's rule on our triangles vs our rule",
              "overwrite only": "original's weights over all 6 triangles vs its 3",
              "diagonal only": "our rule on the original's triangles vs ours",
              "depth hides, ours shows": "front-facing but hidden (depth test) / our back-face"}
    for k, vals in rows.items():
        print(f"{labels[k]:<56}" + "".join(f"{100 * float(x):>6.2f}%" for x in vals))
    for name, posed in posed_fits:
        d = (visibility_backface(posed, faces) != visibility_backface_original(posed, fo)).double().mean(1)
        print(f"the six photos at the {name} fit: our rule vs the original's differ on "
              f"{100 * float(d.min()):.2f}-{100 * float(d.max()):.2f}% of the vertices")


# -- 4. the symmetry and siamese losses --------------------------------------------------------

def _masked_pairs(model, images, labels):
    """Masked outputs (0-255) of the photos and of their mirrors, each fitted (LM 5+5) on its own."""
    from stn3dmm.stn.flip import flip_images, flip_landmarks

    out = []
    for imgs, lms in ((images, labels), (flip_images(images), flip_landmarks(labels, W))):
        fit, _ = _fit(model, lms, method="lm", n_id=5, n_exp=5)
        with torch.no_grad():
            out.append(_stn(model, fit)(imgs.double() * 255, fit.theta.double()).masked)
    return out


def _original_backward_symmetry(x):
    """The original's symmetry backward (p = 1): 2 (x - flip x) * (x != 0 & flip x != 0)."""
    f = x.flip(-1)
    return 2 * (x - f) * ((x != 0) & (f != 0))


def loss_rows(model, images, labels):
    from stn3dmm.stn.losses import landmark_loss, prior_loss, siamese_loss, symmetry_loss

    print("\n== symmetry and siamese losses on the six photos and their mirrors (masked outputs, 0-255) ==")
    x, m = _masked_pairs(model, images, labels)
    batch = torch.cat((x, m))                             # the original's doubled batch
    s_sum, s_orig = symmetry_loss(batch), symmetry_loss(batch, "original")
    print(f"symmetry: ours ('sum') {float(s_sum):.1f}, the original's {float(s_orig):.2f}: "
          f"{float(s_sum / s_orig):.1f}x; 'mean' {float(symmetry_loss(batch, 'mean')):.2f}")
    ours_pair = siamese_loss(x, m.flip(-1))
    orig_pair = siamese_loss(x, m, "original")
    print(f"siamese: ours (mirror flipped back, 'sum') {float(ours_pair):.1f}; the original's pairing and "
          f"normalisation {float(orig_pair):.2f}; ours / original {float(ours_pair / orig_pair):.2f}x; "
          f"our pairing with the original's normalisation {float(siamese_loss(x, m.flip(-1), 'original')):.2f}")
    per = [(float(siamese_loss(x[i:i + 1], m[i:i + 1].flip(-1))), float(siamese_loss(x[i:i + 1], m[i:i + 1])),
            float(symmetry_loss(x[i:i + 1]))) for i in range(len(x))]
    print("per photo ('sum'): siamese flipped back (ours) / unflipped (the original's pairing) / symmetry: "
          + "; ".join(f"{a:.0f} / {b:.0f} / {c:.0f}" for a, b, c in per))
    xs = batch.clone().requires_grad_(True)
    (g_true,) = torch.autograd.grad(symmetry_loss(xs, "original"), xs)
    g_orig = _original_backward_symmetry(batch)
    n = float((batch != 0).sum())
    ratio = float(g_orig.norm() / g_true.norm())
    print(f"symmetry backward: the original's is {ratio:.0f}x the true gradient (N/2 = {n / 2:.0f}, N the non-zero entries)")
    a, b = x.clone().requires_grad_(True), m.clone().requires_grad_(True)
    ga, gb = torch.autograd.grad(siamese_loss(a, b, "original"), (a, b))
    cos = float((ga * gb).sum() / (ga.norm() * gb.norm()))
    print(f"siamese backward: true gradients of the pair's two images have cosine {cos:.2f} (the original gives "
          "both the first image's: cosine +1, the second's sign wrong)")
    lm = torch.zeros(12, 21, 2, dtype=torch.float64)
    tg = torch.ones(12, 21, 2, dtype=torch.float64)
    print(f"sum / mean on this batch of 12: landmark {float(landmark_loss(lm, tg) / landmark_loss(lm, tg, reduction='mean')):.0f}"
          f", prior (10 coefficients) {float(prior_loss(tg[:, :10, 0]) / prior_loss(tg[:, :10, 0], 'mean')):.0f}"
          f", symmetry {float(s_sum / symmetry_loss(batch, 'mean')):.0f}")


# -- 5. outside the image, rotation gradient, agreeing layers ----------------------------------

def outside_rows(model, fits):
    from stn3dmm.stn.layers import inside_image, sampling_grid

    print("\n== samples from outside the image ==")
    for name, fit in fits:
        stn = _stn(model, fit, visibility="none", landmarks=None)
        for shift in (0.0, 80.0):
            th = fit.theta.double().clone()
            th[:, 3] -= shift                                                 # the face moved left
            with torch.no_grad():
                p = stn.geometry(th).points
                out = 1 - inside_image(sampling_grid(p, stn.res, H, W))
                partial = ((p > -1) & (p < 0)) | ((p > W - 1) & (p < W))      # read partly from the zero padding
            where = f"the {name} fit" + (f", moved {shift:.0f} px left" if shift else "")
            print(f"at {where}: {100 * float(out.mean()):.2f}% of the grid samples lie outside the image, "
                  f"{100 * float(partial.any(-1).double().mean()):.2f}% within a pixel of it")


def _gallego_yezzi(r):
    """dR/dr_i = (r_i [r]x + [r x (I - R) e_i]x) R / |r|^2 (Gallego & Yezzi 2015), as the original used."""
    from stn3dmm.stn.layers import axis_angle_to_rotation, skew

    R = axis_angle_to_rotation(r)
    eye = torch.eye(3, dtype=r.dtype)
    out = [(r[i] * skew(r) + skew(torch.linalg.cross(r, (eye - R)[:, i]))) @ R / (r @ r) for i in range(3)]
    return torch.stack(out)


def rotation_rows():
    from stn3dmm.stn.layers import axis_angle_to_rotation

    print("\n== rotation gradient near r = 0, float32: largest error against float64 ==")
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    axis = axis / axis.norm()
    for a in (1e-1, 1e-2, 1e-3, 1e-4):
        r64 = axis * a
        ref = torch.autograd.functional.jacobian(axis_angle_to_rotation, r64).permute(2, 0, 1)
        ours = torch.autograd.functional.jacobian(axis_angle_to_rotation, r64.float()).permute(2, 0, 1).double()
        gy = _gallego_yezzi(r64.float()).double()
        print(f"|r| = {a:g}: ours {float((ours - ref).abs().max()):.1e}, Gallego-Yezzi closed form "
              f"{float((gy - ref).abs().max()):.1e}")


def agreeing_rows(model, fit, labels):
    from stn3dmm.core.conventions import points_to_original, theta_to_original
    from stn3dmm.stn.flip import AFLW21_FLIP, flip_landmarks

    print("\n== layers that agree: ours against the original's equations in its own frame ==")
    stn = _stn(model, fit, visibility="none", landmarks=None)
    ours = points_to_original(stn.geometry(fit.theta.double()).points, H)
    th = theta_to_original(fit.theta.double(), H, scale=fit.scale).numpy()
    mean, bid, bexp = (np.asarray(a, dtype=np.float64) for a in (model.mean, model.basis_id[:5], model.basis_exp[:5]))
    worst = 0.0
    for b in range(len(th)):
        r, t, logs, alpha = th[b, :3], th[b, 3:5], th[b, 5], th[b, 6:]
        x = mean + np.tensordot(alpha[:5], bid, 1) + np.tensordot(alpha[5:], bexp, 1)
        ang = np.linalg.norm(r)
        k = r / ang
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + np.sin(ang) * K + (1 - np.cos(ang)) * K @ K
        p = 0.99 ** logs * (x @ R.T)[:, :2] + t                           # no y flip: its frame is y up
        worst = max(worst, float(np.abs(p - ours[b].numpy()).max()))
    print(f"model, rotation, projection, 0.99^logs scale, translation (6 photos, all vertices): max {worst:.1e} px")
    lo = points_to_original(labels.double(), H).numpy()
    fl = lo.copy()
    fl[..., 0] = W + 1 - lo[..., 0]                                       # x' = W + 1 - x, then re-ordered
    fl = fl[:, list(AFLW21_FLIP)]
    mine = points_to_original(flip_landmarks(labels.double(), W), H).numpy()
    print(f"landmark flip (W + 1 - x and the AFLW-21 order): max {np.abs(fl - mine).max():.1e} px")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30, help="random alpha starts of the demo's gradient descent")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import stn3dmm

    model = stn3dmm.load_model()
    images, labels = _demo_data()
    print(f"default model R = {model.res}, {model.n_id} + {model.n_exp} components; {len(labels)} demo photos; "
          f"{args.threads} thread(s)")
    gd0, lm = gradient_descent_rows(model, labels, args.seeds)
    fits = [("original gradient descent", gd0), ("Levenberg-Marquardt", lm)]
    grid_rows(model, images, fits)
    posed = [(n, _stn(model, f).geometry(f.theta.double()).posed) for n, f in fits]
    visibility_rows(model, posed)
    loss_rows(model, images, labels)
    outside_rows(model, fits)
    rotation_rows()
    agreeing_rows(model, lm, labels)


if __name__ == "__main__":
    main()
