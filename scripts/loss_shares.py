"""Each loss term's share of the gradient on theta, for a training configuration.

    python scripts/loss_shares.py --config configs/lfw_localiser.toml [--checkpoint X.pt]
        [--batches 4] [--set section.key=value ...]

Builds the run's Trainer (its data, localiser and transformer), optionally loads a checkpoint's
weights, and for ``--batches`` of the run's own batches (steps 0, 1, ...) takes the gradient of
every weighted term (landmark, prior, symmetry, siamese) with respect to the localiser's output
theta. Prints each term's value and the norm of its gradient on theta, split into the pose part
(r, t, log s) and the shape part (alpha), and its share of the summed norms. A term whose share
is a few parts in a million does not move training, whatever the paper meant it to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TERMS = ("landmark", "prior", "symmetry", "siamese")


def shares(trainer, batches: int) -> dict:
    """{term: (value, |grad| on pose, |grad| on shape)}, means over ``batches`` batches."""
    from stn3dmm.core.conventions import N_POSE

    seen = {}
    net = trainer.ddp

    def keep(images):
        th = net(images)
        seen["theta"] = th
        return th

    trainer.ddp = keep
    acc = {k: [0.0, 0.0, 0.0] for k in TERMS}
    trainer.net.train()
    for step in range(batches):
        terms = trainer.losses(trainer.local_batch(step))
        theta = seen["theta"]
        for k in TERMS:
            if k not in terms or not terms[k].requires_grad:
                continue
            g, = torch.autograd.grad(terms[k], theta, retain_graph=True)
            acc[k][0] += float(terms[k]) / batches
            acc[k][1] += float(g[:, :N_POSE].norm()) / batches
            acc[k][2] += float(g[:, N_POSE:].norm()) / batches
    trainer.ddp = net
    return acc


def main(argv=None) -> int:
    from stn3dmm.training.config import load_config
    from stn3dmm.training.loop import Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", help="a training checkpoint whose weights to use (default: the initial ones)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(a.config, a.set)
    tr = Trainer(cfg, log=print, progress=False)
    if a.checkpoint:
        from stn3dmm.training.checkpoints import load_checkpoint, load_weights

        load_weights(tr.net, load_checkpoint(a.checkpoint)["model"], a.checkpoint)
    acc = shares(tr, a.batches)
    total = sum(v[1] + v[2] for v in acc.values()) or 1.0
    print(f"{'term':10} {'weight':>8} {'value':>12} {'|grad| pose':>12} {'|grad| shape':>12} {'share':>8}")
    for k, (v, gp, gs) in acc.items():
        print(f"{k:10} {cfg['loss'][k]:8.3g} {v:12.4g} {gp:12.4g} {gs:12.4g} {100 * (gp + gs) / total:7.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
