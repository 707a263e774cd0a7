"""Training the localiser through the 3DMM spatial transformer (SPEC sections 5 and 6).

Owns the configuration (TOML file + ``--set key=value`` overrides), the deterministic batch
schedule, the training step (four losses, flip augmentation, mirror and identity pairs),
optimisation (AdamW or SGD, head learning-rate multipliers, warm-up + cosine schedule,
gradient clipping, mixed precision on CUDA), checkpoints (atomic, loaded with
``weights_only=True``, exact resume), logs (TensorBoard, ``metrics.jsonl``, a progress bar)
and data parallelism with ``torch.distributed`` (DDP, launched by ``torchrun``).

Loss normalisation: each term is the original's *sum* over a batch divided by the number of
images in it, i.e. the original's per-image balance between the terms. Because every
process divides by its own (equal) batch size and DDP averages gradients, N processes with
global batch B train exactly like one process with batch B.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .augment import flip_images
from .losses import ORIGINAL_WEIGHTS, landmark_loss, prior_loss, siamese_loss, symmetry_loss
from .paths import publish

DEFAULTS = {
    "model": {"path": "", "n_id": 10, "n_exp": 10},
    "localiser": {"backbone": "resnet18", "image_size": 112, "norm": "", "width": 1.0, "pretrained": ""},
    "stn": {"visibility": "depth", "out_res": 0},
    "data": {"kind": "synthetic", "path": "", "image_root": "", "size": 0, "n_identities": 400, "views": 6,
             "seed": 0, "identity_offset": 0, "prerender": True, "landmark_set": "aflw21", "points": ""},
    "loss": dict(ORIGINAL_WEIGHTS),
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9, "head_lr_weight": 4.0,
              "head_lr_bias": 8.0, "warmup": 100, "schedule": "cosine", "clip": 10.0, "amp": True},
    "train": {"steps": 1000, "batch": 32, "mirror": True, "pairs": "mirror", "seed": 0, "out": "runs/train",
              "log_every": 10, "image_every": 200, "ckpt_every": 200, "keep": 3, "device": "auto",
              "threads": 0},
}


# ----------------------------------------------------------------------------- config

def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text                                   # a bare string


def load_config(path=None, overrides=()) -> dict:
    """DEFAULTS, updated by the TOML file ``path`` and then by ``section.key=value`` strings."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: cannot read the training configuration ({e})") from None
        for sec, vals in data.items():
            if sec not in cfg or not isinstance(vals, dict):
                raise ValueError(f"{path}: unknown section [{sec}] (known: {', '.join(cfg)})")
            for k, v in vals.items():
                if k not in cfg[sec]:
                    raise ValueError(f"{path}: unknown key {sec}.{k} (known: {', '.join(cfg[sec])})")
                cfg[sec][k] = v
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, text = item.split("=", 1)
        sec, k = key.split(".", 1)
        if sec not in cfg or k not in cfg[sec]:
            raise ValueError(f"unknown setting {key!r}")
        cfg[sec][k] = _parse_value(text)
    return cfg


# ----------------------------------------------------------------------------- data

def build_dataset(spec: dict, model, size: int, landmark_set: str):
    """A training or validation data set from a [data]/[val] section."""
    kind = spec["kind"]
    if kind == "synthetic":
        from .data.synthetic import SyntheticFaces

        ds = SyntheticFaces(model, n_identities=int(spec["n_identities"]), views_per_identity=int(spec["views"]),
                            size=size, seed=int(spec["seed"]), landmark_set=landmark_set,
                            identity_offset=int(spec.get("identity_offset", 0)))
        return ds.prerender(progress=True) if spec.get("prerender", True) else ds
    if kind == "demo":                                # the original demo's six photos (evaluation)
        from .demo import DemoPhotos

        return DemoPhotos(spec.get("path") or None, size=size)
    from .data import readers

    if kind == "umdfaces":
        return readers.UMDFaces(spec["path"], spec["image_root"], size=size)
    if kind in ("300w-lp", "aflw2000-3d", "mat68"):     # AFLW2000-3D's 68-point protocol uses pt3d_68
        return readers.Mat68(spec["path"], size=size, points=spec.get("points") or
                             ("pt3d_68" if kind == "aflw2000-3d" else "pt2d"))
    if kind == "folder":
        return readers.LandmarkFolder(spec["path"], size=size)
    if kind == "photos":
        return readers.DetectedPhotos(spec["path"], model, size=size, identity_from="folder")
    raise ValueError(f"unknown data kind {kind!r} (synthetic, umdfaces, 300w-lp, aflw2000-3d, folder, photos)")


def dataset_identities(ds):
    """(n,) identity of every item, or None when the data set does not know them."""
    ids = getattr(ds, "identities", None)
    if ids is None and hasattr(ds, "identity_of"):
        ids = np.array([ds.identity_of(i)[0] for i in range(len(ds))])
    return None if ids is None else np.asarray(ids)


def fetch(ds, indices) -> dict:
    """A collated batch of items ``indices`` (batched rendering / reading when offered)."""
    from .data.sample import collate

    many = getattr(ds, "__getitems__", None)
    return collate(many([int(i) for i in indices]) if many else [ds[int(i)] for i in indices])


def batch_indices(n: int, batch: int, step: int, seed: int, identities=None) -> np.ndarray:
    """The global batch of ``step``: a pure function of (n, batch, step, seed), so every
    process, and every resumed run, sees the same batches. With ``identities`` (n,), the
    batch is batch/2 pairs of different items of one identity (consecutive entries)."""
    if identities is None:
        per_epoch = max(1, n // batch)
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        return perm[k * batch:(k + 1) * batch]
    rng = np.random.default_rng([seed, step, 7])
    ids = np.asarray(identities)
    groups = {i: np.where(ids == i)[0] for i in np.unique(ids) if i >= 0 and (ids == i).sum() >= 2}
    if not groups:
        raise ValueError("train.pairs = 'identity' needs a data set with at least one identity seen twice")
    keys = np.array(sorted(groups))
    out = []
    for g in rng.choice(keys, size=batch // 2, replace=len(keys) < batch // 2):
        out += list(rng.choice(groups[g], size=2, replace=False))
    return np.array(out)


def mirror_vertices(model, vertices: torch.Tensor) -> torch.Tensor:
    """The mirror vertex of each landmark vertex: a flipped image's landmark l sits on it."""
    return torch.as_tensor(model.mirror, dtype=torch.long)[vertices]


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """One process's share of a (possibly distributed) training run."""

    def __init__(self, cfg: dict, log=print):
        from .data.sample import landmark_vertices
        from .localiser import build_localiser, param_groups
        from .model.prepare import load_model
        from .stn import MorphableSTN

        self.cfg, self.log = cfg, log
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        dev = cfg["train"]["device"]
        dev = ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev
        if dev.startswith("cuda") and self.world > 1:
            dev = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(dev)
        self.device = torch.device(dev)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        threads = int(cfg["train"]["threads"]) or (max(1, (os.cpu_count() or 1) // self.world)
                                                  if self.world > 1 and self.device.type == "cpu" else 0)
        if threads:     # several processes on one CPU: oversubscribed threads slow down 10-20x
            torch.set_num_threads(threads)
        torch.manual_seed(cfg["train"]["seed"])
        self.model = load_model(cfg["model"]["path"] or None, log=log if self.rank == 0 else (lambda m: None))
        n_id, n_exp = int(cfg["model"]["n_id"]), int(cfg["model"]["n_exp"])
        self.size = int(cfg["localiser"]["image_size"])
        size = int(cfg["data"]["size"]) or self.size
        self.data = build_dataset(cfg["data"], self.model, size, cfg["data"]["landmark_set"])
        self.vertices = torch.as_tensor(landmark_vertices(self.model, self.data.landmark_set), dtype=torch.long)
        loc = cfg["localiser"]
        self.net = build_localiser(loc["backbone"], n_id=n_id, n_exp=n_exp, image_size=self.size, norm=loc["norm"] or None,
                                   width=loc["width"], pretrained=loc["pretrained"] or None).to(self.device)
        self.stn = MorphableSTN(self.model, out_res=int(cfg["stn"]["out_res"]) or None,
                                visibility=cfg["stn"]["visibility"], landmarks=None, n_id=n_id, n_exp=n_exp,
                                max_outside=None).to(self.device)
        o = cfg["optim"]
        groups = param_groups(self.net, o["lr"], o["weight_decay"], head_lr_weight=o["head_lr_weight"],
                              head_lr_bias=o["head_lr_bias"])
        if o["name"] == "adamw":
            self.opt = torch.optim.AdamW(groups, lr=o["lr"], weight_decay=o["weight_decay"])
        elif o["name"] == "sgd":
            self.opt = torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        else:
            raise ValueError(f"optim.name must be adamw or sgd, got {o['name']!r}")
        steps, warm = int(cfg["train"]["steps"]), int(o["warmup"])

        def factor(s):
            if s < warm:
                return (s + 1) / warm
            if o["schedule"] == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm))))
            return 1.0

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.amp = bool(o["amp"]) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ddp = (torch.nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device.index]
                                                               if self.device.type == "cuda" else None)
                    if self.world > 1 else self.net)
        self.step_count = 0
        self.out = Path(cfg["train"]["out"])

    # -- data --------------------------------------------------------------------------------

    def local_batch(self, step: int) -> dict:
        t = self.cfg["train"]
        b = int(t["batch"])
        if b % self.world:
            raise ValueError(f"train.batch ({b}) must be divisible by the number of processes ({self.world})")
        ids = dataset_identities(self.data) if t["pairs"] == "identity" else None
        idx = batch_indices(len(self.data), b, step, int(t["seed"]), ids)
        per = b // self.world
        mine = idx[self.rank * per:(self.rank + 1) * per]
        return {k: v.to(self.device) for k, v in fetch(self.data, mine).items()}

    # -- one step ----------------------------------------------------------------------------

    def losses(self, batch: dict) -> dict:
        cfg = self.cfg
        images, target, vis = batch["image"], batch["landmarks"], batch["visibility"]
        b, w = images.shape[0], images.shape[-1]
        verts = self.vertices.to(self.device).expand(b, -1)
        if cfg["train"]["mirror"]:
            fl = target.clone()
            fl[..., 0] = (w - 1) - fl[..., 0]
            images = torch.cat([images, flip_images(images)])
            target, vis = torch.cat([target, fl]), torch.cat([vis, vis])
            verts = torch.cat([verts, mirror_vertices(self.model, verts.cpu()).to(self.device)])
        n = images.shape[0]
        with torch.autocast(self.device.type, enabled=self.amp):
            theta = self.ddp(images)
        theta = theta.float()
        out = self.stn(images, theta)
        pred = torch.gather(out["points"], 1, verts[..., None].expand(-1, -1, 2))
        wts = cfg["loss"]
        terms = {"landmark": wts["landmark"] * landmark_loss(pred, target, vis, "sum") / n,
                 "prior": wts["prior"] * prior_loss(theta[:, 6:], "sum") / n}
        masked = out["masked"]
        if wts["symmetry"]:
            terms["symmetry"] = wts["symmetry"] * symmetry_loss(masked, "sum") / n
        if wts["siamese"]:
            sia = []
            if cfg["train"]["mirror"]:                # an image and its mirror: compare mirrored UV
                sia.append(siamese_loss(masked[:b], masked[b:].flip(-1), "sum"))
            if cfg["train"]["pairs"] == "identity":   # consecutive items are views of one person
                sia.append(siamese_loss(masked[0:b:2], masked[1:b:2], "sum"))
            if sia:
                terms["siamese"] = wts["siamese"] * sum(sia) / n
        terms["total"] = sum(terms.values())
        terms["_out"], terms["_pred"], terms["_images"], terms["_target"] = out, pred, images, target
        return terms

    def step(self, batch: dict) -> dict:
        self.net.train()
        terms = self.losses(batch)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        self.scaler.unscale_(self.opt)
        clip = float(self.cfg["optim"]["clip"])
        gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip if clip > 0 else float("inf"))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.step_count += 1
        vals = {k: float(v.detach()) for k, v in terms.items() if not k.startswith("_")}
        vals["grad_norm"] = float(gnorm)
        if self.world > 1:                            # log the global mean
            t = torch.tensor([vals[k] for k in sorted(vals)], dtype=torch.float64)
            dist.all_reduce(t)
            vals = {k: float(x) / self.world for k, x in zip(sorted(vals), t)}
        vals["lr"] = self.sched.get_last_lr()[0]
        self._last = terms
        return vals

    # -- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict:
        return {"step": self.step_count, "model": self.net.state_dict(), "optim": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state(), "config": json.dumps(self.cfg),
                "format": "stn3dmm-checkpoint-1"}

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        d = self.out / "checkpoints"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"step_{self.step_count:07d}.pt"
        for target in (path, d / "last.pt"):
            fd, tmp = tempfile.mkstemp(dir=d, prefix=target.name + ".", suffix=".tmp")
            os.close(fd)
            try:
                torch.save(self.state(), tmp)
                publish(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        keep = int(self.cfg["train"]["keep"])
        for old in sorted(d.glob("step_*.pt"))[:-keep] if keep > 0 else []:
            old.unlink()
        return path

    def load(self, path) -> None:
        ck = load_checkpoint(path)
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optim"])
        self.sched.load_state_dict(ck["sched"])
        self.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["torch_rng"])
        self.step_count = int(ck["step"])


def load_checkpoint(path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True`` (no code runs); clear errors."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated files, foreign pickles ...
        raise ValueError(f"{path}: not a readable stn3dmm checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or ck.get("format") != "stn3dmm-checkpoint-1":
        raise ValueError(f"{path}: not an stn3dmm training checkpoint")
    return ck


# ----------------------------------------------------------------------------- logs

class Logs:
    """metrics.jsonl always; TensorBoard scalars and images when tensorboard is installed."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out / "metrics.jsonl", "a", buffering=1)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.tb = None

    def scalars(self, step: int, vals: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **vals}) + "\n")
        if self.tb:
            for k, v in vals.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def images(self, step: int, terms: dict) -> None:
        if not (self.enabled and self.tb):
            return
        out = terms["_out"]
        k = min(8, out["masked"].shape[0])
        self.tb.add_images("flattened/masked", out["masked"][:k].detach().clamp(0, 1), step)
        self.tb.add_images("landmarks/overlay", landmark_overlays(terms["_images"][:k], terms["_pred"][:k],
                                                                  terms["_target"][:k]), step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tb:
                self.tb.close()


def landmark_overlays(images, pred, target) -> torch.Tensor:
    """(B, 3, S, S) copies with predicted (red) and target (green) landmarks as 3x3 dots."""
    img = images.detach().clone().clamp(0, 1)
    s = img.shape[-1]
    for pts, col in ((target, (0.0, 1.0, 0.0)), (pred.detach(), (1.0, 0.0, 0.0))):
        p = torch.nan_to_num(pts, nan=-10).round().long()
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                x, y = p[..., 0] + dx, p[..., 1] + dy
                ok = (x >= 0) & (x < s) & (y >= 0) & (y < s)
                bi = torch.arange(img.shape[0])[:, None].expand_as(x)
                for c in range(3):
                    img[bi[ok], c, y[ok], x[ok]] = col[c]
    return img


# ----------------------------------------------------------------------------- the loop

def train(cfg: dict, resume=None, log=print, progress=True) -> dict:
    """Run (or resume) a training run; returns the last logged values."""
    from tqdm import tqdm

    tr = Trainer(cfg, log=log)
    t = cfg["train"]
    if resume:
        path = Path(tr.out / "checkpoints" / "last.pt") if resume == "auto" else Path(resume)
        if path.exists() or resume != "auto":
            tr.load(path)
            log(f"resumed from {path} at step {tr.step_count}") if tr.rank == 0 else None
    logs = Logs(tr.out, enabled=tr.rank == 0)
    if tr.rank == 0:
        (tr.out).mkdir(parents=True, exist_ok=True)
        (tr.out / "config.json").write_text(json.dumps(cfg, indent=1))
    steps = int(t["steps"])
    kill_at = int(os.environ.get("STN3DMM_TEST_KILL_AT_STEP", "0"))   # tests: simulate a crash
    bar = tqdm(total=steps, initial=tr.step_count, desc="train", unit="step",
               disable=not progress or tr.rank != 0, dynamic_ncols=True)
    last, t0, seen = {}, time.perf_counter(), 0
    while tr.step_count < steps:
        batch = tr.local_batch(tr.step_count)
        vals = tr.step(batch)
        seen += int(t["batch"]) * (2 if t["mirror"] else 1)
        s = tr.step_count
        if s % int(t["log_every"]) == 0 or s == steps:
            vals["images_per_s"] = seen / (time.perf_counter() - t0)
            logs.scalars(s, vals)
            last = vals
            bar.set_postfix(loss=f"{vals['total']:.2f}", lm=f"{vals['landmark']:.2f}",
                            img_s=f"{vals['images_per_s']:.0f}")
        if int(t["image_every"]) and s % int(t["image_every"]) == 0:
            logs.images(s, tr._last)
        if (int(t["ckpt_every"]) and s % int(t["ckpt_every"]) == 0) or s == steps:
            tr.save()
        bar.update(1)
        if kill_at and s == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    logs.close()
    if tr.world > 1:
        dist.barrier()
    return last
