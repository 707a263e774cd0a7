"""The original's demo: fit the six demo photos from their landmarks, then flatten them.

Owns running both optimisers (the original's plain gradient descent and our
Levenberg–Marquardt) and the figures: per photo ``photo | projected mesh | flattened | mask |
masked``, plus a convergence plot. Reading ``demodata.mat`` is a data reader's job
(:mod:`stn3dmm.training.data.demo_photos`); its names stay importable from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .fitting.landmarks import fit_landmarks
from .stn import MorphableSTN
from .training.data.demo_photos import DemoPhotos, default_demo_data, read_demodata
from .viz import plt, save_figure

__all__ = ["DemoRun", "demo_configs", "run_demo", "demo_outputs", "demo_figure", "demo_figures",
           "convergence_figure", "default_demo_data", "read_demodata", "DemoPhotos"]


@dataclass
class DemoRun:
    name: str
    error: np.ndarray          # (B,) mean landmark error px
    seconds: float
    iterations: np.ndarray
    history: np.ndarray        # (T, B) energy
    theta: torch.Tensor
    n_id: int
    n_exp: int
    scale: str


def demo_configs(model) -> list[tuple[str, dict]]:
    """The demo's fits as ``(name, fit_landmarks keyword arguments)``: the original's gradient
    descent (``method="gd"``, whose defaults are the original demo's loop: 5 + 5 components,
    s = 0.99^logs, step 1e-6, shape gradient x101, no prior, stop when the batch's total loss
    changes by < 1; random alpha from a generator seeded 0) and Levenberg–Marquardt (5 + 5, and
    all components; default prior weight). Each call makes a fresh generator, so every run (the
    demo's, a benchmark's repeats) starts from the same alpha."""
    return [
        ("gradient descent (original), 5+5", dict(method="gd", n_id=5, n_exp=5,
                                                  generator=torch.Generator().manual_seed(0))),
        ("Levenberg-Marquardt, 5+5", dict(method="lm", n_id=5, n_exp=5)),
        (f"Levenberg-Marquardt, {model.n_id}+{model.n_exp}", dict(method="lm")),
    ]


def run_demo(model, images, labels, log=print) -> list[DemoRun]:
    """Fit the photos with each of :func:`demo_configs`, timing each (after a warm-up), and log
    a table: iterations, mean landmark error (and per photo), time."""
    runs = []
    log(f"{'fitting the ' + str(len(labels)) + ' photos':<36} {'iterations':>10} {'error px':>9} {'time s':>8}"
        "   error per photo px")
    for name, kw in demo_configs(model):
        fit_landmarks(model, labels[:1], **{k: v for k, v in kw.items() if k != "generator"})   # warm-up
        t = time.perf_counter()
        r = fit_landmarks(model, labels, image_size=tuple(images.shape[-2:]), **kw)
        dt = time.perf_counter() - t
        runs.append(DemoRun(name, r.error.numpy(), dt, r.iterations.numpy(), r.history.numpy(), r.theta,
                            r.n_id, r.n_exp, r.scale))
        its = r.iterations.tolist()
        its = str(its[0]) if len(set(its)) == 1 else f"{min(its)}-{max(its)}"
        log(f"{name:<36} {its:>10} {float(r.error.mean()):>9.2f} {dt:>8.3f}   {np.round(r.error.numpy(), 2).tolist()}")
    return runs


def _wireframe(ax, points, res, every=4, **kw):
    g = points.reshape(res, res, 2)
    for i in range(0, res, every):
        ax.plot(g[i, :, 0], g[i, :, 1], **kw)
        ax.plot(g[:, i, 0], g[:, i, 1], **kw)


def demo_outputs(model, images, run: DemoRun, visibility="depth") -> dict:
    """The STN's outputs (:class:`~stn3dmm.stn.MorphableSTN`, float64) for the photos at a run's theta."""
    stn = MorphableSTN(model, visibility=visibility, n_id=run.n_id, n_exp=run.n_exp, scale=run.scale).double()
    with torch.no_grad():
        return stn(images.double(), run.theta.double())


def demo_figure(images, labels, out: dict, run: DemoRun, k: int, res: int, visibility="depth"):
    """Photo ``k``'s figure: photo with labels (o) and fit (+) | projected mesh | flattened | mask |
    masked (5 axes, each panel's array in ``ax.images[0]``). Returns the Figure (not saved)."""
    fig, ax = plt.subplots(1, 5, figsize=(16, 3.6), dpi=90)
    photo = images[k].permute(1, 2, 0).numpy()
    ax[0].imshow(photo)
    ax[0].plot(labels[k, :, 0], labels[k, :, 1], "o", ms=3, mfc="none", mec="lime")
    ax[0].plot(out["landmarks"][k, :, 0], out["landmarks"][k, :, 1], "+", ms=5, color="red")
    ax[0].set_title(f"photo {k + 1}: labels (o), fit (+)")
    ax[1].imshow(photo)
    _wireframe(ax[1], out["points"][k].numpy(), res, color="cyan", lw=0.4)
    ax[1].set_title(f"projected mesh, error {run.error[k]:.2f} px")
    ax[2].imshow(out["flattened"][k].permute(1, 2, 0).clamp(0, 1).numpy())
    ax[2].set_title("flattened (UV)")
    ax[3].imshow(out["mask"][k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax[3].set_title(f"mask ({visibility})")
    ax[4].imshow(out["masked"][k].permute(1, 2, 0).clamp(0, 1).numpy())
    ax[4].set_title("masked")
    for a in ax:
        a.axis("off")
    for a in ax[:2]:
        a.set_xlim(0, images.shape[-1] - 1)
        a.set_ylim(images.shape[-2] - 1, 0)
    fig.tight_layout()
    return fig


def demo_figures(model, images, labels, run: DemoRun, out_dir, visibility="depth", log=print) -> list[Path]:
    """Per photo ``demo_<k>.png`` (:func:`demo_figure`), written atomically."""
    out = demo_outputs(model, images, run, visibility)
    return [save_figure(demo_figure(images, labels, out, run, k, model.res, visibility),
                        Path(out_dir) / f"demo_{k + 1}.png") for k in range(len(images))]


def convergence_figure(runs: list[DemoRun], out_dir) -> Path:
    """Energy against iteration for every photo and optimiser (log scales)."""
    fig, ax = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.8), dpi=90)
    for a, r in zip(np.atleast_1d(ax), runs):
        h = r.history
        for k in range(h.shape[1]):
            n = int(r.iterations[k]) + 1
            a.plot(np.arange(1, n + 1), h[:n, k], lw=1)
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("iteration")
        a.set_ylabel("energy (landmark + prior)")
        a.set_title(f"{r.name}\nmean error {r.error.mean():.2f} px in {r.seconds:.3f} s", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / "convergence.png")
