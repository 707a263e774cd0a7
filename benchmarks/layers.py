"""Benchmark of the batched STN layer stack (MorphableSTN) against a per-image Python loop.

Owns: timing, throughput and peak memory of ``MorphableSTN`` forward (and forward + backward)
on a batch, each against a named baseline measured in the same run: the same layer stack run
image by image in a Python loop -- the way the original MatConvNet layers looped over the
batch. Ratios are baseline / batched (higher = batched is better).

Uses a synthetic R x R grid face model (tests/testkit/synthetic_models.py) with K identity and E expression
components (the real model plugs in the same way). Every measurement runs in a fresh
subprocess so that its peak memory (peak RSS above the level before the first run; CUDA:
``torch.cuda.max_memory_allocated``) is its own.

    .venv/bin/python benchmarks/layers.py [--batch 64] [--res 112] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

from _common import rss_kb, run_child, synthetic_models




def build(res, n_id, n_exp, batch, device, seed=0):
    """Model (K, E components mixed from the synthetic ones), images, theta."""
    import numpy as np
    import torch

    from stn3dmm.model import MorphableModel

    syn = synthetic_models()
    base = syn.make_face_model(res)
    rng = np.random.default_rng(seed)
    comps = np.concatenate([base.basis_id, base.basis_exp])
    mix = lambda k: np.tensordot(rng.normal(size=(k, len(comps))) / math.sqrt(len(comps)), comps, 1)  # noqa: E731
    model = MorphableModel(base.mean, mix(n_id), mix(n_exp), base.faces, base.landmarks, base.mirror,
                           base.midline, "synthetic benchmark", res, base.uv)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 224, 224, generator=g)
    theta = torch.zeros(batch, 6 + n_id + n_exp)
    yaw = (torch.rand(batch, generator=g) * 2 - 1) * math.radians(70)
    pitch = (torch.rand(batch, generator=g) * 2 - 1) * math.radians(20)
    theta[:, :3] = syn.euler_to_axis_angle(yaw.numpy(), pitch.numpy(), dtype=torch.float32)
    theta[:, 3:5] = 111.5 + 8 * torch.randn(batch, 2, generator=g)
    theta[:, 5] = math.log(0.95)
    theta[:, 6:] = torch.randn(batch, n_id + n_exp, generator=g)
    return model, images.to(device), theta.to(device)


def run_batched(stn, images, theta, backward):
    if backward:
        th = theta.clone().requires_grad_(True)
        out = stn(images, th)
        (out["masked"].square().mean() + out["landmarks"].square().mean()).backward()
        return out
    import torch

    with torch.no_grad():
        return stn(images, theta)


def run_landmark_path(stn, images, theta, backward, full=False):
    """The layers the original's 264 ms figure covers (B = 64, forward + backward): morphable
    model, rotation, projection, scale, translation, landmark selection and the landmark
    loss. ``full``: evaluate the model at all N vertices, then select (as the original did);
    otherwise only the landmark rows are evaluated."""
    from stn3dmm.stn.losses import landmark_loss
    from stn3dmm.stn.layers import grid_generator, select_landmarks

    th = theta.clone().requires_grad_(True)
    idx = stn.landmark_index
    if full:
        pts = select_landmarks(grid_generator(th, stn.mean, stn.basis_id, stn.basis_exp, stn.n_id, stn.n_exp,
                                              stn.scale_map).points, idx)
    else:
        pts = grid_generator(th, stn.mean[idx], stn.basis_id[:, idx], stn.basis_exp[:, idx], stn.n_id, stn.n_exp,
                             stn.scale_map).points
    target = pts.detach() + 1.0
    loss = landmark_loss(pts, target)
    loss.backward()
    return {"masked": th.grad}


def run_loop(stn, images, theta, backward):
    """The baseline: the same layer stack, one image at a time (as the original looped)."""
    import torch

    outs = []
    for i in range(images.shape[0]):
        outs.append(run_batched(stn, images[i:i + 1], theta[i:i + 1], backward)["masked"].detach())
    return {"masked": torch.cat(outs)}



def child(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from stn3dmm.stn import MorphableSTN

    model, images, theta = build(args.res, args.n_id, args.n_exp, args.batch, args.device)
    stn = MorphableSTN(model, visibility=args.visibility).to(args.device)
    if args.case.startswith("landmarks"):
        full = args.case == "landmarks-full"
        one = lambda s_, im, th, bw: run_landmark_path(s_, im, th, bw, full)  # noqa: E731
        fn = one if args.mode == "batched" else (
            lambda s_, im, th, bw: [one(s_, im[i:i + 1], th[i:i + 1], bw) for i in range(th.shape[0])])
    else:
        fn = run_batched if args.mode == "batched" else run_loop
    backward = args.case == "fwd+bwd"
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_kb = rss_kb("VmRSS:")
    times = []
    repeats = args.repeats * (10 if args.case.startswith("landmarks") else 1)   # short runs: more samples
    for _ in range(repeats + 1):  # the first run is a warm-up
        t0 = time.perf_counter()
        fn(stn, images, theta, backward)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if cuda
               else max(rss_kb("VmHWM:") - base_kb, 0) / 1024)
    t = min(times[1:])  # the least-disturbed run: robust to other load on the machine
    print(json.dumps({"time": t, "peak_mb": peak_mb, "threads": torch.get_num_threads()}))


def measure(args, case, visibility, mode):
    cmd = ["--case", case, "--visibility", visibility, "--mode", mode,
           "--batch", str(args.batch), "--res", str(args.res), "--n-id", str(args.n_id), "--n-exp", str(args.n_exp),
           "--repeats", str(args.repeats), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return run_child(__file__, cmd)


def check_equivalence(args):
    """Batched and looped outputs must agree before their speed means anything."""
    from stn3dmm.stn import MorphableSTN

    model, images, theta = build(min(args.res, 48), args.n_id, args.n_exp, 8, "cpu")
    worst = 0.0
    for vis in ("none", "backface", "depth"):
        stn = MorphableSTN(model, visibility=vis)
        a = run_batched(stn, images, theta, False)["masked"]
        b = run_loop(stn, images, theta, False)["masked"]
        worst = max(worst, float((a - b).abs().max()))
    return worst


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--res", type=int, default=112)
    p.add_argument("--n-id", type=int, default=40)
    p.add_argument("--n-exp", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", default="fwd")
    p.add_argument("--visibility", default="none")
    p.add_argument("--mode", default="batched")
    args = p.parse_args()
    if args.child:
        return child(args)
    import torch

    diff = check_equivalence(args)
    print(f"MorphableSTN layer stack: B={args.batch}, 224x224 input, R={args.res} grid, K={args.n_id}, "
          f"E={args.n_exp}, device={args.device}, torch {torch.__version__}, threads="
          f"{args.threads or torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"equivalence check (B=8, R<=48): max |batched - per-image loop| = {diff:.2e}")
    print("baseline = the same layers run image by image in a Python loop (as the original's layers did)")
    print()
    head = (f"{'case':<22}{'visibility':<11}{'impl':<9}{'ms/batch':>10}{'ms/img':>9}{'img/s':>9}{'peak MB':>9}"
            f"{'speed-up':>10}{'mem ratio':>10}")
    print(head)
    print("-" * len(head))
    rows = [("landmarks", "none"), ("landmarks-full", "none"), ("fwd", "none"), ("fwd", "backface"),
            ("fwd", "depth"), ("fwd+bwd", "none"), ("fwd+bwd", "depth")]
    for case, vis in rows:
        res = {mode: measure(args, case, vis, mode) for mode in ("loop", "batched")}
        for mode in ("loop", "batched"):
            r = res[mode]
            ms = 1e3 * r["time"]
            extra = ("", "")
            if mode == "batched":
                extra = (f"{res['loop']['time'] / r['time']:.1f}x",
                         f"{res['loop']['peak_mb'] / max(r['peak_mb'], 1e-6):.2f}x")
            print(f"{case:<22}{vis:<11}{mode:<9}{ms:>10.1f}{ms / args.batch:>9.2f}{args.batch / r['time']:>9.1f}"
                  f"{r['peak_mb']:>9.0f}{extra[0]:>10}{extra[1]:>10}")
    print()
    print("speed-up = loop time / batched time; mem ratio = loop peak / batched peak (peak RSS above the "
          "pre-run level, one fresh process per row)")
    print("landmarks = forward + backward of model, rotation, projection, scale, translation, selection and "
          "the landmark loss, only the landmark rows evaluated; landmarks-full evaluates all N vertices first. "
          "The original's MatConvNet layers took 264 ms for this at B = 64 on this machine (figure from the "
          "issue; MATLAB is not available to re-run it here).")


if __name__ == "__main__":
    main()
