"""Benchmark: training throughput (images/s) and peak memory per backbone, batch 32, inputs
112 and 224, on this CPU.

    python benchmarks/train_throughput.py [--batch 32] [--threads 2] [--backbones mobilenet resnet18 vggface16]

Each row is one full training step as ``stn3dmm train`` runs it (mirroring on: ``--batch``
images through the network per step, i.e. ``train.batch = batch / 2`` images and their
mirrors, as in ``configs/synthetic_small.toml``; localiser forward, the 3DMM-STN with the
depth-test mask, the four losses, backward, AdamW step), on synthetic faces, in a fresh
subprocess so its peak memory (peak RSS above the level before the first step) is its own.
images/s counts the network's images (with the mirrors), as the training progress bar does.
The baseline beside it, measured in the same subprocess, is the localiser's own forward +
backward + step on the same ``--batch`` images (the batch and its mirrors) with a dummy loss:
the difference is what the spatial transformer and the losses cost. Best of ``--repeats``
steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _common import rss_kb, run_child




def child(args):
    import torch

    torch.set_num_threads(args.threads)
    from stn3dmm.training.loop import Trainer, load_config

    half = max(1, args.batch // 2)                    # train.batch images + their mirrors
    cfg = load_config(None, [f"localiser.backbone='{args.backbone}'", f"localiser.image_size={args.size}",
                             f"train.batch={half}", "train.mirror=true", "data.n_identities=8",
                             f"data.views={max(1, -(-half // 8))}", f"train.threads={args.threads}",
                             "train.out='/tmp/stn3dmm-bench-train'", "data.prerender=true"])
    tr = Trainer(cfg, log=lambda m: None, progress=False)
    batch = tr.local_batch(0)
    both = torch.cat([batch["image"], batch["image"].flip(-1)])   # the images the network sees
    base = rss_kb("VmRSS:")

    def full():
        tr.step(batch)

    def net_only():
        tr.opt.zero_grad(set_to_none=True)
        tr.net(both).square().mean().backward()
        tr.opt.step()

    out = {}
    for name, fn in (("baseline", net_only), ("full", full)):
        fn()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = min(times)
    out["peak_mb"] = max(0, rss_kb("VmHWM:") - base) / 1024
    out["images"] = int(both.shape[0])
    out["params"] = sum(p.numel() for p in tr.net.parameters())
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument("--backbones", nargs="+", default=["mobilenet", "resnet18", "vggface16"])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backbone", default="resnet18", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=112, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    print(f"training step as stn3dmm train runs it: {args.batch} images through the network (train.batch "
          f"{max(1, args.batch // 2)} + mirrors), {args.threads} threads, load average {os.getloadavg()[0]:.2f}; "
          "baseline = the localiser alone (forward + backward + step, dummy loss) on the same images")
    print(f"{'backbone':<11}{'input':>6}{'params':>12}{'img/s':>9}{'s/step':>9}{'baseline img/s':>16}"
          f"{'STN+loss share':>16}{'peak MB':>9}")
    for bb in args.backbones:
        for size in args.sizes:
            m = run_child(__file__, ["--backbone", bb, "--size", size, "--batch", args.batch,
                                     "--threads", args.threads, "--repeats", args.repeats], check=False)
            if "error" in m:
                print(f"{bb:<11}{size:>6}  failed: {m['error']}")
                continue
            share = 1 - m["baseline"] / m["full"]
            n = m["images"]
            print(f"{bb:<11}{size:>6}{m['params']:>12,}{n / m['full']:>9.1f}{m['full']:>9.2f}"
                  f"{n / m['baseline']:>16.1f}{100 * share:>15.0f}%{m['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
