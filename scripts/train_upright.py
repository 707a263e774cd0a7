"""Train the up-direction network (:mod:`stn3dmm.nets.upright`) on crops of ``scripts/upright_data.py``.

    python scripts/upright_data.py --split train --out runs/upright/train.pt
    python scripts/upright_data.py --split val --views 1,2 --out runs/upright/val.pt
    python scripts/upright_data.py --renders 1500 --out runs/upright/train_renders.pt
    python scripts/upright_data.py --boxes 1 --shard 0/2 --out runs/upright/train_boxes0.pt   # and 1/2
    python scripts/upright_data.py --split val --boxes 1 --out runs/upright/val_boxes.pt
    python scripts/train_upright.py --data runs/upright [--epochs 12] [--resume]

Every epoch each crop is also turned by a random quarter turn and mirrored at random (exact: the
label turns and mirrors with it). The loss is the cross-entropy against the wrapped-Gaussian
target of its angle (:func:`~stn3dmm.nets.upright.soft_targets`). Every ``train*.pt`` of ``--data``
is trained on. After each epoch the held-out people's crops (each ``val*.pt``) are scored: the median angle error, and how often the network's verdict on "more
than a quarter turn off" (``p_upside_down > 0.5``) is wrong, overall and on renders beyond 60
degrees of yaw. The checkpoint (``last.pt``: weights, optimiser, epoch, random state) is written
after each epoch, so ``--resume`` goes on exactly; the final weights go to ``upright.pt``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stn3dmm.nets.upright import UprightNet, p_upside_down, soft_targets, up_angle  # noqa: E402


def augment(images: torch.Tensor, angles: torch.Tensor, gen: torch.Generator):
    """A random quarter turn (counter-clockwise ``k`` times: the up direction by ``-k pi/2``) and
    mirror of each crop, with its label; a mild brightness and contrast change."""
    k = torch.randint(0, 4, (len(images),), generator=gen)
    flip = torch.rand(len(images), generator=gen) < 0.5
    out = images.clone()
    for q in range(1, 4):
        m = k == q
        out[m] = torch.rot90(images[m], q, dims=(-2, -1))
    out[flip] = out[flip].flip(-1)
    a = angles - k.float() * (math.pi / 2)
    a = torch.where(flip, -a, a)
    a = torch.remainder(a + math.pi, 2 * math.pi) - math.pi
    out = fake_borders(out, gen)
    gain = 1 + 0.2 * (torch.rand(len(images), 1, 1, 1, generator=gen) - 0.5)
    bias = 0.1 * (torch.rand(len(images), 1, 1, 1, generator=gen) - 0.5)
    return (out * gain + bias).clamp(0, 1), a


def fake_borders(images: torch.Tensor, gen: torch.Generator, share: float = 0.5) -> torch.Tensor:
    """Black out, in ``share`` of the crops, one or two half-planes at random turns, their edges
    0.35 to 1 disc radius from the centre: a photo's edge, where a crop leaves the photo, then
    shows at every turn with every label, and tells the network nothing. (Without this, it read the
    turn of the photo's edges in the crop: crops of real photos and head renders show them turned
    as their faces are.)"""
    n, side = len(images), images.shape[-1]
    r = (torch.arange(side, dtype=torch.float32) + 0.5 - side / 2) / (side / 2)
    y, x = r[:, None], r[None]
    keep = torch.ones(n, 1, side, side)
    for extra in (0, 1):
        pick = torch.rand(n, generator=gen) < (share if extra == 0 else share * 0.3)
        turn = torch.rand(n, generator=gen) * 2 * math.pi
        reach = 0.35 + 0.65 * torch.rand(n, generator=gen)
        along = x[None] * turn.cos()[:, None, None] + y[None] * turn.sin()[:, None, None]
        cut = (along > reach[:, None, None]) & pick[:, None, None]
        keep[:, 0][cut] = 0.0
    return images * keep


@torch.no_grad()
def score(net: UprightNet, data: dict, batch: int = 512) -> dict:
    net.eval()
    logits = torch.cat([net(data["images"][i:i + batch].float() / 255) for i in range(0, len(data["images"]), batch)])
    err = torch.remainder(up_angle(logits) - data["angles"] + math.pi, 2 * math.pi) - math.pi
    down = data["angles"].abs() > math.pi / 2
    wrong = (p_upside_down(logits) > 0.5) != down
    far = data["abs_yaw"] > 60
    return {"median_err_deg": float(err.abs().median().rad2deg()), "p90_err_deg": float(err.abs().quantile(0.9).rad2deg()),
            "verdict_wrong_pct": 100 * float(wrong.float().mean()),
            "verdict_wrong_yaw60_pct": 100 * float(wrong[far].float().mean()) if far.any() else float("nan")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "runs/upright")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    parts = [torch.load(f, weights_only=True) for f in sorted(a.data.glob("train*.pt"))]   # train.pt, train_renders.pt
    if not parts:
        sys.exit(f"{a.data}: no train*.pt (python scripts/upright_data.py, see the docstring)")
    train = {k: torch.cat([d[k] for d in parts]) for k in ("images", "angles", "abs_yaw")}
    vals = {f.stem: torch.load(f, weights_only=True) for f in sorted(a.data.glob("val*.pt"))}   # val.pt, val_boxes.pt
    if not vals:
        sys.exit(f"{a.data}: no val*.pt (python scripts/upright_data.py --split val, see the docstring)")
    n = len(train["images"])
    steps = a.epochs * (n // a.batch)
    torch.manual_seed(a.seed)
    net = UprightNet()
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(a.seed)
    start, last = 0, a.data / "last.pt"
    if a.resume and last.exists():
        ck = torch.load(last, weights_only=True)
        net.load_state_dict(ck["net"]), opt.load_state_dict(ck["opt"]), sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        start = int(ck["epoch"])
        print(f"resumed after epoch {start}")
    for epoch in range(start, a.epochs):
        net.train()
        t0, total = time.time(), 0.0
        order = torch.randperm(n, generator=gen)
        for s in range(n // a.batch):
            idx = order[s * a.batch:(s + 1) * a.batch]
            x, y = augment(train["images"][idx].float() / 255, train["angles"][idx], gen)
            loss = -(soft_targets(y) * net(x).log_softmax(1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        print(f"epoch {epoch + 1}/{a.epochs}: loss {total / (n // a.batch):.4f}, {time.time() - t0:.0f} s; held out: "
              + "; ".join(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in score(net, val).items())
                          for name, val in vals.items()), flush=True)
        tmp = last.with_suffix(".part")
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "epoch": epoch + 1}, tmp)
        tmp.replace(last)
    out = a.data / "upright.pt"
    torch.save({k: v for k, v in net.state_dict().items()}, out)
    print(f"weights -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
