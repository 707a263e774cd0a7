"""Benchmark of the synthetic-data renderer: images per second and peak memory, batched vs one by one.

Owns: the throughput of :class:`stn3dmm.training.data.synthetic.SyntheticFaces` (the whole item pipeline:
random parameters, per-identity textures, backgrounds, rendering with depth test and
anti-aliasing, landmark visibility, camera effects) at 112 and 224 px, against a named
baseline measured in the same run: the SAME pipeline called one image at a time
(``render_batch([i])`` in a Python loop). Also the bare renderer (:class:`GridRenderer`
forward only) and, with ``--export N``, :func:`export_synthetic` writing N PNG + JSON pairs.
The target (issue 5): 10k images in under 5 minutes, i.e. >= 34 images/s at 112 px.

Every measurement runs in a fresh subprocess over fresh identities (textures are made, not
cached); peak memory is the peak RSS above the level after the data set was built and one
warm-up batch rendered (CUDA: max allocated). The first batch (warm-up) is not timed.

    .venv/bin/python benchmarks/synthetic.py [--batch 32] [--images 256] [--threads N] [--export 512]
        [--sizes 112,224] [--supersample 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _common import rss_kb, run_child

TARGET_IPS = 10000 / 300.0



def child(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from stn3dmm.training.data.synthetic import SyntheticFaces
    from stn3dmm.training.data.synthetic_export import export_synthetic
    from stn3dmm.model.store import load_model

    model = load_model(args.model) if args.model else load_model()
    views = 4
    n_img = args.images if args.mode != "loop" else args.loop_images
    n_id = (n_img + args.batch + views - 1) // views + 1
    ds = SyntheticFaces(model, n_id, views, size=args.size, seed=1, device=args.device,
                        supersample=args.supersample or None)
    cuda = args.device.startswith("cuda")
    warm = list(range(len(ds) - args.batch, len(ds)))  # identities not used by the timed part
    ds.render_batch(warm)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_kb = rss_kb("VmRSS:")
    t0 = time.perf_counter()
    if args.mode == "batched":
        for lo in range(0, n_img, args.batch):
            ds.render_batch(range(lo, min(n_img, lo + args.batch)))
    elif args.mode == "loop":
        for i in range(n_img):
            ds.render_batch([i])
    elif args.mode == "renderer":
        b = ds.render_batch(range(args.batch), extras=True)
        theta, tex = b["theta"], b["texture"]
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(0, n_img, args.batch):
                ds.renderer(theta, tex)
    elif args.mode == "export":
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            export_synthetic(tmp, model, n_img // views, views, size=args.size, seed=1, progress=False,
                             batch_size=args.batch, device=args.device, supersample=args.supersample or None)
            n_img = (n_img // views) * views
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else max(rss_kb("VmHWM:") - base_kb, 0) / 1024)
    print(json.dumps({"images": n_img, "seconds": dt, "peak_mb": peak, "threads": torch.get_num_threads(),
                      "supersample": ds.renderer.supersample, "factor": ds.renderer.factor}))


def measure(args, mode, size, images):
    cmd = ["--mode", mode, "--size", str(size), "--batch", str(args.batch),
           "--images", str(images), "--loop-images", str(args.loop_images), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    if args.supersample:
        cmd += ["--supersample", str(args.supersample)]
    return run_child(__file__, cmd)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=256, help="images per batched measurement")
    p.add_argument("--loop-images", type=int, default=48, help="images for the one-by-one baseline")
    p.add_argument("--sizes", default="112,224")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--export", type=int, default=0, help="also time export_synthetic of this many images")
    p.add_argument("--model", default=None, help="grid model file (default: the prepared default model)")
    p.add_argument("--supersample", type=int, default=0,
                   help="anti-aliasing factor (0: the default, 2 up to 160 px, else 1)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="batched")
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args()
    if args.child:
        return child(args)
    import torch

    print(f"synthetic faces: batch {args.batch}, {args.images} images per batched run, 4 views per identity, "
          f"device={args.device}, torch {torch.__version__}, threads={args.threads or torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("baseline ('one by one') = the same pipeline, render_batch([i]) image by image in a Python loop")
    print()
    head = (f"{'size':>5} {'impl':<12}{'images':>7}{'img/s':>9}{'ms/img':>9}{'peak MB':>9}{'speed-up':>10}"
            f"{'10k imgs':>10}")
    print(head)
    print("-" * len(head))
    verdict = {}
    for size in (int(s) for s in args.sizes.split(",")):
        modes = [("one by one", "loop", args.loop_images), ("batched", "batched", args.images),
                 ("renderer", "renderer", args.images)]
        if args.export:
            modes.append(("export", "export", args.export))
        res = {}
        for label, mode, n in modes:
            r = measure(args, mode, size, n)
            res[mode] = r
            ips = r["images"] / r["seconds"]
            up = ips / (res["loop"]["images"] / res["loop"]["seconds"])
            print(f"{size:>5} {label:<12}{r['images']:>7}{ips:>9.1f}{1e3 / ips:>9.2f}{r['peak_mb']:>9.0f}"
                  f"{up:>9.1f}x{10000 / ips / 60:>8.1f} min")
        verdict[size] = res["batched"]["images"] / res["batched"]["seconds"]
        print(f"      (supersample {res['batched']['supersample']}, lattice factor {res['batched']['factor']}, "
              f"{res['batched']['threads']} thread(s))")
    print()
    for size, ips in verdict.items():
        print(f"{size} px batched: {ips:.1f} images/s = 10k images in {10000 / ips / 60:.1f} min -- target "
              f">= {TARGET_IPS:.1f} images/s (10k in 5 min): {'met' if ips >= TARGET_IPS else 'NOT met'}")


if __name__ == "__main__":
    main()
