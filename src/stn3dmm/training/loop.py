"""Training the localiser through the 3DMM spatial transformer.

The paper's training and where ours differs from the original's: docs/paper.md, "Losses and the
flip augmentation" and "The localiser and its training".

Owns the training step (four losses, flip augmentation, mirror and identity pairs),
optimisation (AdamW or SGD, head learning-rate multipliers, warm-up + cosine schedule,
gradient clipping, mixed precision on CUDA), the training state for checkpoints (exact
resume, with the CPU and every rank's CUDA random state; written by :mod:`.checkpoints`),
resuming (the checkpoint found, its configuration compared with the run's, what a killed save
left removed, the logs cut back to the resumed step), logs (TensorBoard, ``metrics.jsonl``, a
progress bar) and data parallelism with ``torch.distributed`` (DDP, launched by ``torchrun``).
The configuration is :mod:`.config`; data sets, pairing and the batch schedule are :mod:`.batches`.

Loss normalisation: each term is the ``reduction="sum"`` form of :mod:`stn3dmm.stn.losses`
over a batch divided by the number of images in it. For the landmark and prior terms that is
the original's sum per image; for symmetry and siamese it is our per-image normalisation, not
the original's batch-wide one (docs/paper.md, "Losses and the flip augmentation"). Because every
process divides by its own (equal) batch size and DDP averages gradients, N processes with
global batch B train exactly like one process with batch B.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..core.conventions import N_POSE
from ..core.paths import write_text_atomically
from ..stn.flip import flip_images
from ..stn.losses import siamese_loss, total_loss
from .batches import IdentityGroups, batch_indices, build_dataset, dataset_pair_groups, fetch
from .checkpoints import (check_resume_state, copy_durably, load_checkpoint, load_init_weights, load_weights,
                          remove_partial_saves, write_durably)
from .config import (DEFAULTS, check_batch, check_config, config_differences, config_from_checkpoint, depth_options,
                     load_config)

# ----------------------------------------------------------------------------- trainer

def mirror_vertices(model, vertices: torch.Tensor) -> torch.Tensor:
    """The mirror vertex of each landmark vertex (same shape and device as ``vertices``):
    a flipped image's landmark l sits on it."""
    return torch.as_tensor(model.mirror, dtype=torch.long, device=vertices.device)[vertices]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; any other name as given (checked)."""
    if name in ("", "auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available here (use 'cpu' or 'auto')")
    return dev


class Trainer:
    """One process's share of a (possibly distributed) training run."""

    def __init__(self, cfg: dict, log=print, progress: bool = True):
        from .data.sample import landmark_vertices
        from ..nets.localiser import build_localiser, param_groups
        from ..model.store import load_model
        from ..stn import MorphableSTN

        check_config(cfg)
        self.cfg, self.log = cfg, log
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        dev = resolve_device(cfg["train"]["device"])
        if dev.type == "cuda" and self.world > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        self.device = dev
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        threads = int(cfg["train"]["threads"]) or (max(1, (os.cpu_count() or 1) // self.world)
                                                  if self.world > 1 and self.device.type == "cpu" else 0)
        if threads:     # several processes on one CPU: share its cores (oversubscribed threads crawl)
            torch.set_num_threads(threads)
        check_batch(cfg["train"], self.world)
        torch.manual_seed(cfg["train"]["seed"])
        self.model = load_model(cfg["model"]["path"] or None, log=log if self.rank == 0 else (lambda m: None))
        n_id, n_exp = int(cfg["model"]["n_id"]), int(cfg["model"]["n_exp"])
        self.size = int(cfg["localiser"]["image_size"])
        size = int(cfg["data"]["size"]) or self.size
        self.data = build_dataset(cfg["data"], self.model, size, cfg["data"]["landmark_set"],
                                  progress=progress and self.rank == 0, distributed=self.world > 1)
        self.groups = None
        if cfg["train"]["pairs"] == "identity":   # grouped once: regrouping a large data set every step is slow
            ids = dataset_pair_groups(self.data)
            self.groups = IdentityGroups(np.full(len(self.data), -1) if ids is None else ids)
            if not len(self.groups.keys):
                raise ValueError("train.pairs = 'identity' needs a data set with at least one identity seen twice "
                                 f"(data.kind = {cfg['data']['kind']!r} has none)")
        self.vertices = torch.as_tensor(landmark_vertices(self.model, self.data.landmark_set), dtype=torch.long,
                                        device=self.device)
        loc = cfg["localiser"]
        self.net = build_localiser(loc["backbone"], n_id=n_id, n_exp=n_exp, image_size=self.size, norm=loc["norm"] or None,
                                   width=loc["width"], pretrained=loc["pretrained"] or None).to(self.device)
        self.stn = MorphableSTN(self.model, out_res=int(cfg["stn"]["out_res"]) or None,
                                visibility=cfg["stn"]["visibility"], landmarks=None, n_id=n_id, n_exp=n_exp,
                                max_outside=None, depth_options=depth_options(cfg["stn"])).to(self.device)
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
        idx = batch_indices(len(self.data), b, step, int(t["seed"]), self.groups)
        per = b // self.world
        mine = idx[self.rank * per:(self.rank + 1) * per]
        return {k: v.to(self.device) for k, v in fetch(self.data, mine).items()}

    # -- one step ----------------------------------------------------------------------------

    def losses(self, batch: dict) -> dict:
        cfg = self.cfg
        images, target, vis = batch["image"], batch["landmarks"], batch["visibility"]
        b, w = images.shape[0], images.shape[-1]
        verts = self.vertices.expand(b, -1)
        if cfg["train"]["mirror"]:
            fl = target.clone()
            fl[..., 0] = (w - 1) - fl[..., 0]
            images = torch.cat([images, flip_images(images)])
            target, vis = torch.cat([target, fl]), torch.cat([vis, vis])
            verts = torch.cat([verts, mirror_vertices(self.model, verts)])
        n = images.shape[0]
        with torch.autocast("cuda" if self.device.type == "cuda" else "cpu", enabled=self.amp):
            theta = self.ddp(images)
        theta = theta.float()
        out = self.stn(images, theta)
        pred = torch.gather(out["points"], 1, verts[..., None].expand(-1, -1, 2))
        wts = cfg["loss"]
        masked = out["masked"]
        # the sum forms, weighted, then per image (module docstring); the siamese term
        # is not total_loss's single pair: it adds the mirror pairs and the identity pairs
        weighted = total_loss(predicted=pred, target=target, visibility=vis, alpha=theta[:, N_POSE:],
                              flattened=masked if wts["symmetry"] else None, weights=wts, reduction="sum")
        terms = {k: v / n for k, v in weighted.items() if k != "total"}
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
            t = torch.tensor([vals[k] for k in sorted(vals)], dtype=torch.float64, device=self.device)  # NCCL: CUDA only
            dist.all_reduce(t)
            vals = {k: float(x) / self.world for k, x in zip(sorted(vals), t)}
        vals["lr"] = self.sched.get_last_lr()[0]
        self._last = terms
        return vals

    # -- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict:
        """The full training state. Collective under DDP with CUDA (every rank must call it)."""
        st = {"step": self.step_count, "model": self.net.state_dict(), "optim": self.opt.state_dict(),
              "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
              "torch_rng": torch.get_rng_state(), "config": json.dumps(self.cfg),
              "format": "stn3dmm-checkpoint-1"}
        cuda = self._cuda_rng_states()
        if cuda is not None:
            st["cuda_rng"] = cuda
        return st

    def _cuda_rng_states(self):
        """Each rank's CUDA generator state (rank order), or None on the CPU."""
        if self.device.type != "cuda":
            return None
        mine = torch.cuda.get_rng_state(self.device)
        if self.world == 1:
            return [mine]
        out = [None] * self.world
        dist.all_gather_object(out, mine)
        return [torch.as_tensor(t).cpu() for t in out]

    def save(self) -> Path | None:
        """Write ``step_<n>.pt`` (temp file, fsync, rename), then ``last.pt`` as an independent
        copy of it (not a hard link: damage to one must not be damage to both); keep the newest
        ``train.keep`` step files."""
        state = self.state()                          # collective: every rank takes part
        if self.rank != 0:
            return None
        d = self.out / "checkpoints"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"step_{self.step_count:07d}.pt"
        write_durably(path, lambda f: torch.save(state, f))
        copy_durably(path, d / "last.pt")
        keep = int(self.cfg["train"]["keep"])
        for old in sorted(d.glob("step_*.pt"))[:-keep] if keep > 0 else []:
            old.unlink()
        return path

    def load(self, path) -> None:
        """Restore the training state of the checkpoint ``path`` (:meth:`restore`)."""
        self.restore(load_checkpoint(path), path)

    def restore(self, ck: dict, path) -> None:
        """Restore a loaded checkpoint's training state. Anything that does not fit this run
        (missing keys, weights of another shape, optimiser state of other parameters) raises a
        ValueError naming the file and the part, never a torch traceback."""
        check_resume_state(ck, path)
        load_weights(self.net, ck["model"], path)
        try:
            self.opt.load_state_dict(ck["optim"])
            _check_optimiser_state(self.opt)
            self.sched.load_state_dict(ck["sched"])
            self.scaler.load_state_dict(ck["scaler"])
            torch.set_rng_state(ck["torch_rng"])
            self._restore_cuda_rng(ck.get("cuda_rng"), path)
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(f"{path}: the checkpoint's training state does not fit this run "
                             f"({type(e).__name__}: {first})") from None
        self.step_count = int(ck["step"])

    def _restore_cuda_rng(self, cuda, path) -> None:
        if self.device.type == "cuda" and cuda:
            if len(cuda) != self.world and self.rank == 0:
                self.log(f"note: {path} holds the CUDA random state of {len(cuda)} process(es), this run has "
                         f"{self.world}: the resumed run is not bit-exact")
            torch.cuda.set_rng_state(cuda[self.rank % len(cuda)], self.device)


def _check_optimiser_state(opt) -> None:
    """Refuse per-parameter optimiser state (momenta, Adam's moments) whose shape is not its
    parameter's: torch loads it as it is and fails only at the next step."""
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.ndim and v.shape != p.shape:
                    raise ValueError(f"optimiser state {k!r} has shape {tuple(v.shape)}, its parameter "
                                     f"{tuple(p.shape)}")


# ----------------------------------------------------------------------------- logs

class Logs:
    """metrics.jsonl always; TensorBoard scalars and images when tensorboard is installed.

    A run (re)starting at step ``start`` first drops the rows of later steps, which a run
    killed after its last checkpoint logged and the resumed run logs again (each step once:
    :func:`truncate_metrics`); TensorBoard purges them the same way (``purge_step``)."""

    def __init__(self, out: Path, enabled: bool, start: int = 0):
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        truncate_metrics(out / "metrics.jsonl", start)
        self.jsonl = open(out / "metrics.jsonl", "a", buffering=1)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start + 1 if start else None)
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
        self.tb.add_images("flattened/masked", out["masked"][:k].detach().clamp(0, 1).float().cpu(), step)
        self.tb.add_images("landmarks/overlay", landmark_overlays(terms["_images"][:k], terms["_pred"][:k],
                                                                  terms["_target"][:k]).float().cpu(), step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tb:
                self.tb.close()


def truncate_metrics(path: Path, step: int) -> int:
    """Keep only the rows of ``metrics.jsonl`` up to ``step`` (and drop a line torn by a kill),
    rewriting the file atomically; returns the number of rows dropped."""
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and int(row["step"]) <= step
        except (ValueError, KeyError, TypeError):
            ok = False
        if ok:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        write_text_atomically(path, "".join(f"{x}\n" for x in keep))
    return dropped


def landmark_overlays(images, pred, target) -> torch.Tensor:
    """(B, 3, S, S) copies with predicted (red) and target (green) landmarks as 3x3 dots.

    Device-agnostic and without data-dependent shapes: the dots are scattered into a
    (B, S*S + 1) canvas on the images' device (off-image points go to the spare last cell)."""
    img = images.detach().clamp(0, 1)
    b, s = img.shape[0], img.shape[-1]
    for pts, col in ((target, (0.0, 1.0, 0.0)), (pred.detach(), (1.0, 0.0, 0.0))):
        p = torch.nan_to_num(pts.to(img.device), nan=-10, posinf=-10, neginf=-10).round().long()
        canvas = torch.zeros(b, s * s + 1, device=img.device, dtype=img.dtype)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                x, y = p[..., 0] + dx, p[..., 1] + dy
                ok = (x >= 0) & (x < s) & (y >= 0) & (y < s)
                cell = torch.where(ok, y * s + x, torch.full_like(x, s * s))
                canvas.scatter_(1, cell, 1.0)
        dots = canvas[:, :-1].view(b, 1, s, s) > 0
        colour = torch.tensor(col, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
        img = torch.where(dots, colour, img)
    return img


# ----------------------------------------------------------------------------- the loop

def find_checkpoint(out: Path, resume, log=print):
    """``(checkpoint, path)`` to resume from, or ``(None, None)`` to start afresh. ``resume`` is
    a path, or ``"auto"``: the run's ``last.pt``, else (missing or damaged) its newest readable
    step file, else nothing (a new run). A named file that cannot be loaded raises ValueError."""
    if resume != "auto":
        return load_checkpoint(resume), Path(resume)
    d = Path(out) / "checkpoints"
    first_error = None
    for path in [d / "last.pt", *sorted(d.glob("step_*.pt"), reverse=True)]:
        if not path.exists():
            continue
        try:
            ck = load_checkpoint(path)
        except ValueError as e:
            first_error = first_error or e
            continue
        if first_error:
            log(f"note: {first_error}; resuming from {path} instead")
        return ck, path
    if first_error:
        raise first_error
    return None, None


def check_resume_config(cfg: dict, ck: dict, path, force: bool = False, log=print) -> None:
    """Refuse to resume a run whose configuration differs from its checkpoint's, naming each
    differing setting (the checkpoint's value and the run's); with ``force``, warn instead.
    The settings free to change are :data:`~.config.RESUME_FREE`."""
    diff = config_differences(cfg, config_from_checkpoint(ck["config"], str(path)))
    if not diff:
        return
    listed = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, a, b in diff)
    if not force:
        raise ValueError(f"{path}: this run's configuration differs from the checkpoint's in {len(diff)} "
                         f"setting(s): {listed}. Resume with the checkpoint's settings, start a new run "
                         "(another train.out), or pass --force to resume anyway")
    log(f"warning: resuming anyway (--force), though the configuration differs from {path}'s in: {listed}; "
        "the weights, optimiser and schedule continue from the checkpoint's state")


def train(cfg: dict, resume=None, log=print, progress=True, force: bool = False) -> dict:
    """Run (or resume) a training run; returns the last logged values. ``force``: resume even
    when the configuration differs from the checkpoint's (:func:`check_resume_config`)."""
    from tqdm import tqdm

    check_config(cfg)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    quiet = log if rank0 else (lambda m: None)
    ck, path = find_checkpoint(Path(cfg["train"]["out"]), resume, quiet) if resume else (None, None)
    if ck is not None:
        check_resume_config(cfg, ck, path, force, quiet)
    tr = Trainer(cfg, log=log, progress=progress)
    t = cfg["train"]
    if ck is not None:
        tr.restore(ck, path)
        del ck
        quiet(f"resumed from {path} at step {tr.step_count}")
    elif cfg["localiser"]["init"]:      # a fine-tune starts from another run's network (not needed to resume)
        init = cfg["localiser"]["init"]
        load_weights(tr.net, load_init_weights(init), init, "this run's network (localiser.init)")
        quiet(f"network initialised from {init}")
    if tr.rank == 0:
        for p in remove_partial_saves(tr.out / "checkpoints"):
            log(f"removed {p.name}, left by a save that was killed")
    logs = Logs(tr.out, enabled=tr.rank == 0, start=tr.step_count)
    if tr.rank == 0:
        (tr.out).mkdir(parents=True, exist_ok=True)
        write_text_atomically(tr.out / "config.json", json.dumps(cfg, indent=1))
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


__all__ = ["Trainer", "train", "find_checkpoint", "check_resume_config", "truncate_metrics", "resolve_device",
           "mirror_vertices", "landmark_overlays", "Logs",
           "DEFAULTS", "load_config", "load_checkpoint", "batch_indices", "build_dataset", "fetch"]
