"""Regenerate the README's pictures from the prepared default model: python scripts/make_readme_figures.py"""

import numpy as np

from stn3dmm.model.store import load_model
from stn3dmm.viz import draw_shaded, plt, save_figure, yaw_rotation


def main():
    m = load_model()
    R = m.res
    rng = np.random.default_rng(3)
    fig, ax = plt.subplots(1, 5, figsize=(20, 4.4), dpi=90)
    for a, (V, t) in zip(ax[:3], [(m.mean, "mean"), (m.shape(2 * rng.standard_normal(m.n_id)), "random identity"),
                                  (m.shape(None, 2 * rng.standard_normal(m.n_exp)), "random expression")]):
        draw_shaded(a, V.astype(float) @ yaw_rotation(25).T, m.faces)
        a.set_title(t)
    uv, F = m.extras["source_uv"], m.extras["source_faces"]
    ax[3].triplot(uv[:, 0], uv[:, 1], F[::3], lw=0.05, color="k")
    ax[3].set_aspect("equal"); ax[3].set_xlim(0, 1); ax[3].set_ylim(0, 1); ax[3].set_title("symmetric UV map (1/3 of the triangles)")
    g = m.mean.reshape(R, R, 3).astype(float)
    lo, hi = g.reshape(-1, 3).min(0), g.reshape(-1, 3).max(0)
    ax[4].imshow((g - lo) / (hi - lo)); ax[4].axis("off"); ax[4].set_title(f"{R}x{R} grid: x, y, z as R, G, B")
    fig.tight_layout()
    save_figure(fig, "docs/model.png")


if __name__ == "__main__":
    main()
