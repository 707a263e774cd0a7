"""Pictures of models: UV layouts, geometry images, shaded faces, landmarks, visibility rules.

Matplotlib only (Agg backend, no screen needed). Meshes are drawn with the painter's
algorithm: triangles sorted back to front, each filled with Lambert shading.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .core.paths import write_atomically  # noqa: E402


def save_figure(fig, path) -> Path:
    """Save a figure atomically (temporary file, then rename) and close it."""
    path = Path(path)
    try:
        return write_atomically(path, lambda f: fig.savefig(f, dpi=fig.dpi, format=path.suffix[1:] or "png"))
    finally:
        plt.close(fig)


def yaw_rotation(deg: float) -> np.ndarray:
    """Rotation about the vertical (y) axis; positive turns the face to its left."""
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def draw_shaded(ax, V: np.ndarray, F: np.ndarray, colors=None, light=(0.3, 0.4, 1.0)):
    """Draw mesh (V (N, 3), y up, viewer on +z) on ``ax`` with Lambert shading.
    ``colors``: optional (N, 3) per-vertex RGB in [0, 1]."""
    P = V[F]
    n = np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    front = n[:, 2] > 0
    P, n, Fi = P[front], n[front], F[front]
    order = np.argsort(P[:, :, 2].mean(1))
    L = np.asarray(light, float) / np.linalg.norm(light)
    shade = 0.25 + 0.75 * np.clip(n[order] @ L, 0, 1)
    base = np.full((len(order), 3), 0.85) if colors is None else colors[Fi[order]].mean(1)
    fc = np.clip(base * shade[:, None], 0, 1)
    ax.add_collection(PolyCollection(P[order][:, :, :2], facecolors=fc, edgecolors="none", antialiased=False))
    ax.set_xlim(V[:, 0].min() - 5, V[:, 0].max() + 5)
    ax.set_ylim(V[:, 1].min() - 5, V[:, 1].max() + 5)
    ax.set_aspect("equal")
    ax.axis("off")


def uv_layout_figure(uv: np.ndarray, F: np.ndarray, V: np.ndarray | None = None, title: str = ""):
    """The UV map of a mesh: its triangles drawn in [0, 1]^2, coloured by the log of the
    UV-to-surface area ratio (blue = compressed) when 3D vertices are given."""
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    segs = uv[np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])]
    if V is not None:
        e1, e2 = uv[F[:, 1]] - uv[F[:, 0]], uv[F[:, 2]] - uv[F[:, 0]]
        a_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        a_3d = 0.5 * np.linalg.norm(np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]), axis=1)
        r = np.log10(np.maximum(a_uv, 1e-30) / np.maximum(a_3d, 1e-30))
        r -= np.median(r)
        tpc = ax.tripcolor(uv[:, 0], uv[:, 1], F, facecolors=np.clip(r, -2, 2), cmap="coolwarm_r", vmin=-2, vmax=2)
        fig.colorbar(tpc, ax=ax, fraction=0.046, label="log10 area scale (UV / surface), relative")
    ax.add_collection(LineCollection(segs, colors="k", linewidths=0.05, alpha=0.5))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("u")
    ax.set_ylabel("v")
    ax.set_title(title or "UV layout")
    return fig


def geometry_image_figure(grid_mean: np.ndarray, title: str = ""):
    """The mean shape as a geometry image: x, y, z of each grid vertex mapped to R, G, B."""
    g = grid_mean.astype(np.float64)
    lo, hi = g.reshape(-1, 3).min(0), g.reshape(-1, 3).max(0)
    img = (g - lo) / (hi - lo)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title or "mean shape as a geometry image (x, y, z -> R, G, B)")
    ax.axis("off")
    return fig


def faces_figure(shapes: list, F: np.ndarray, titles: list, yaw: float = 25.0):
    """A row of shaded faces (each (N, 3)), each shown turned by ``yaw`` degrees."""
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.2 * len(shapes), 3.8), dpi=100)
    for ax, V, t in zip(np.atleast_1d(axes), shapes, titles):
        draw_shaded(ax, V @ yaw_rotation(yaw).T, F)
        ax.set_title(t, fontsize=9)
    return fig


def landmarks_figure(V: np.ndarray, F: np.ndarray, landmarks: dict):
    """The mean face with each landmark set marked and numbered (1-based)."""
    fig, axes = plt.subplots(1, len(landmarks), figsize=(6 * len(landmarks), 6.5), dpi=100)
    for ax, (name, idx) in zip(np.atleast_1d(axes), landmarks.items()):
        draw_shaded(ax, V, F)
        P = V[idx]
        ax.plot(P[:, 0], P[:, 1], "o", ms=4, color="crimson")
        for k, p in enumerate(P):
            ax.annotate(str(k + 1), p[:2], fontsize=6, color="navy", xytext=(2, 2), textcoords="offset points")
        ax.set_title(f"{name} landmarks on the mean face")
    return fig


#: The most random faces ``show-model`` draws in its one-row figure.
MAX_RANDOM_FACES = 24


def source_mesh_problem(uv, faces) -> str | None:
    """Why the file's ``source_uv`` / ``source_faces`` extras cannot be drawn, or None. They are
    stored as the file holds them (not part of the checked contract), so a damaged or foreign
    file can hold anything: this checks what :func:`uv_layout_figure` indexes with."""
    uv, faces = np.asarray(uv), np.asarray(faces)
    if uv.dtype.kind not in "fiu" or uv.ndim != 2 or uv.shape[1] != 2:
        return f"source_uv must be (M, 2) numbers, got {uv.dtype} of shape {uv.shape}"
    if not np.isfinite(uv).all():
        return "source_uv holds NaN or infinity"
    if faces.dtype.kind not in "iu" or faces.ndim != 2 or faces.shape[1] != 3:
        return f"source_faces must be (F, 3) integers, got {faces.dtype} of shape {faces.shape}"
    if faces.size and (faces.min() < 0 or faces.max() >= len(uv)):
        return f"source_faces indices must lie in [0, {len(uv)}), got [{faces.min()}, {faces.max()}]"
    return None


def show_model(model, out_dir, n_random: int = 6, seed: int = 0, log=print) -> list[Path]:
    """Write the model's pictures to ``out_dir``: UV layout of the source mesh, geometry
    image, random faces (identity and expression at 2 sigma), landmarks. Returns the paths.

    A picture the model cannot give is skipped with a note through ``log``: the source mesh's
    UV layout when the file's ``source_uv`` / ``source_faces`` are absent or malformed, the grid's
    UV picture when the model has no ``uv``."""
    if not 0 <= int(n_random) <= MAX_RANDOM_FACES:
        raise ValueError(f"--n-random must be 0 to {MAX_RANDOM_FACES} (faces in one row), got {n_random}")
    out = Path(out_dir)
    paths = []
    R = model.res
    V = model.mean.astype(np.float64)
    src_uv, src_faces = model.extras.get("source_uv"), model.extras.get("source_faces")
    if src_uv is not None or src_faces is not None:
        why = "only one of them is in the file" if src_uv is None or src_faces is None else \
            source_mesh_problem(src_uv, src_faces)
        if why:
            log(f"note: skipped uv_layout.png (the source mesh's UV map): {why}")
        else:
            # the source mesh's own UV map (no area colouring: the file keeps no source vertices)
            fig = uv_layout_figure(np.asarray(src_uv, float), np.asarray(src_faces), None,
                                   f"UV layout of the source mesh ({len(src_uv)} vertices, {len(src_faces)} triangles)")
            paths.append(save_figure(fig, out / "uv_layout.png"))
    if R:
        paths.append(save_figure(geometry_image_figure(V.reshape(R, R, 3)), out / "geometry_image.png"))
        if model.uv is None:
            log("note: skipped uv_grid_area.png: the model has no uv (texture coordinates)")
        else:
            fig = uv_layout_figure(model.uv.astype(float), model.faces, V, f"UV grid {R}x{R}, coloured by area scale")
            paths.append(save_figure(fig, out / "uv_grid_area.png"))
    rng = np.random.default_rng(seed)
    shapes, titles = [V], ["mean"]
    for k in range(n_random):
        a = rng.standard_normal(model.n_id) * (1.5 if k % 2 == 0 else 0)
        e = rng.standard_normal(model.n_exp) * (1.5 if k % 2 == 1 else 0) if model.n_exp else None
        shapes.append(model.shape(a, e))
        titles.append(f"random {'identity' if k % 2 == 0 else 'expression'} #{k // 2 + 1} (1.5 sigma)")
    paths.append(save_figure(faces_figure(shapes, model.faces, titles), out / "random_faces.png"))
    if model.landmarks:
        paths.append(save_figure(landmarks_figure(V, model.faces, model.landmarks), out / "landmarks.png"))
    for p in paths:
        log(f"wrote {p}")
    return paths


def _posed_mean(model, yaw_deg: float, pitch_deg: float = 0.0):
    """Mean shape of ``model`` (MorphableModel or MorphableSTN) rotated by yaw (about y) then pitch (about x)."""
    import torch

    from .stn.layers import axis_angle_to_rotation, rotate

    if isinstance(model, torch.nn.Module):
        mean, faces, res = model.mean.detach().double().cpu(), model.faces.cpu(), model.res
    else:
        mean = torch.as_tensor(model.mean, dtype=torch.float64)
        faces, res = torch.as_tensor(model.faces, dtype=torch.long), model.res
    ry = axis_angle_to_rotation(torch.tensor([0.0, math.radians(yaw_deg), 0.0], dtype=torch.float64))
    rx = axis_angle_to_rotation(torch.tensor([math.radians(pitch_deg), 0.0, 0.0], dtype=torch.float64))
    return rotate(mean[None], (rx @ ry)[None]), faces, res


def visibility_comparison_figure(model, yaws=(0, 30, 50, 70), *, pitch: float = 0.0, path=None, depth_options=None):
    """Figure comparing rule (a) (back-face) with rule (b) (depth test) at several yaws.

    For the mean shape of ``model`` (a grid :class:`~stn3dmm.model.MorphableModel` or a
    :class:`~stn3dmm.stn.MorphableSTN`) at each yaw (degrees, about the model's y axis) it shows
    the projected vertices coloured by verdict (both visible / visible only by (a) -- occluded
    front-facing surface / invisible by both) and, for grid models, both masks in UV space.
    Draws on an Agg canvas of its own (not pyplot, so nothing to close). Saves to ``path`` if given.

    Returns:
        the :class:`matplotlib.figure.Figure`.
    """
    from .stn.visibility import visibility_backface, visibility_depth

    yaws = list(yaws)
    rows = 4 if model.res else 1
    fig = Figure(figsize=(3.0 * len(yaws), 3.0 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(rows, len(yaws), squeeze=False))
    colors = np.array([[0.75, 0.75, 0.75], [0.85, 0.15, 0.15], [0.15, 0.55, 0.15]])
    for c, yaw in enumerate(yaws):
        posed, faces, res = _posed_mean(model, yaw, pitch)
        a = visibility_backface(posed, faces)[0]
        bvis = visibility_depth(posed, faces, **(depth_options or {}))[0]
        cat = (a.long() + bvis.long()).numpy()  # 0 neither, 1 (a) only, 2 both
        p = posed[0].numpy()
        ax = axes[0, c]
        for k, size in ((0, 1.0), (2, 1.0), (1, 4.0)):  # red (the disagreement) drawn last, larger
            sel = cat == k
            ax.scatter(p[sel, 0], p[sel, 1], s=size, c=colors[k][None], linewidths=0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"yaw {yaw:g} deg: {int((cat == 1).sum())} hidden\nfront-facing vertices")
        if rows > 1:
            r = res
            imgs = [a.numpy().reshape(r, r), bvis.numpy().reshape(r, r), (a & ~bvis).numpy().reshape(r, r)]
            titles = ["(a) back-face", "(b) depth test", "(a) and not (b)"]
            for k, (im, t) in enumerate(zip(imgs, titles)):
                axk = axes[k + 1, c]
                axk.imshow(im, cmap=ListedColormap(["black", "white"]) if k < 2 else ListedColormap(["black", "red"]),
                           vmin=0, vmax=1, interpolation="nearest")
                axk.set_xticks([])
                axk.set_yticks([])
                axk.set_title(t, fontsize=9)
    fig.suptitle("visibility: green = visible by both, red = visible by (a) only, grey = invisible")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def nme_by_yaw_figure(result: dict, published: dict, method, path) -> Path:
    """AFLW2000-3D: each face's NME against its |yaw| for the first of ``method`` (a name or a
    list; crosses: faces it did not find by itself), every method's bucket means as solid steps,
    the published ones as dashed steps."""
    names = [method] if isinstance(method, str) else list(method)
    recs = result.get("images_by_method", {}).get(names[0], result["images"])
    yaw = np.array([r["abs_yaw"] for r in recs])
    e = np.array([r["nme"] for r in recs])
    found = np.array([r["found"] for r in recs])
    edges, top = (0, 30, 60, 90), 20.0
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(np.minimum(yaw[found], 99), np.minimum(e[found], top), s=4, alpha=0.35, color="tab:blue",
               label=f"{names[0]}: a face it found")
    ax.scatter(np.minimum(yaw[~found], 99), np.minimum(e[~found], top), s=14, marker="x", color="black",
               label="not found: scored from the benchmark box")
    for j, name in enumerate(names):
        ours = result["methods"][name]["nme"]
        for k, b in enumerate(("0-30", "30-60", "60-90")):
            ax.hlines(ours[b], edges[k], edges[k + 1] if k < 2 else 99, color="black" if j == 0 else f"C{j + 5}",
                      lw=2.5, label=f"{name}: bucket means ({ours['bucket_mean']:.2f})" if k == 0 else None)
    for j, (who, vals) in enumerate(published.items()):
        for k in range(3):
            ax.hlines(vals[k], edges[k], edges[k + 1] if k < 2 else 99, color=f"C{j + 2}", lw=1.5, ls="--",
                      label=f"published: {who}" if k == 0 else None)
    first = result["methods"][names[0]]["nme"]
    ax.set(xlim=(0, 100), ylim=(0, top), xlabel="|yaw|, degrees (over 90 counted in 60-90)",
           ylabel=f"NME %, 68 points (clipped at {top:.0f})",
           title=f"AFLW2000-3D, {len(recs)} faces: {names[0]}, bucket mean {first['bucket_mean']:.2f}%")
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path)


def flatten_comparison_figure(runs: dict, path) -> Path:
    """Two or more ``stn3dmm flatten`` output folders side by side: for every face that each run
    flattened (same relative name), one row per run of its overlay (crop + detector points | crop
    + fitted mesh | flattened | mask | completed), labelled with the run's name and method.

    ``runs``: label -> output folder. Raises ValueError when no face is in every run."""
    from PIL import Image

    names = [sorted(p.relative_to(d) for p in Path(d).rglob("*_overlay.png")) for d in runs.values()]
    common = sorted(set(names[0]).intersection(*names[1:]))
    if not common:
        raise ValueError(f"no face was flattened in every one of {', '.join(map(str, runs.values()))}")
    labels = list(runs)
    fig, axes = plt.subplots(len(common) * len(runs), 1, figsize=(10, 2.1 * len(common) * len(runs)), squeeze=False)
    for i, rel in enumerate(common):
        for j, (label, d) in enumerate(runs.items()):
            ax = axes[i * len(runs) + j, 0]
            with Image.open(Path(d) / rel) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
            ax.set_axis_off()
            ax.set_title(f"{rel.as_posix().removesuffix('_overlay.png')}: {labels[j]}", fontsize=8, loc="left")
    fig.tight_layout()
    return save_figure(fig, path)
