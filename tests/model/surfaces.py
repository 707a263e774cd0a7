"""Synthetic test surfaces made by the tests themselves (no data files)."""

import numpy as np


def grid_faces(rows, cols, offset=0, mirror_diagonals=True):
    """Two triangles per cell of a rows x cols vertex grid (row-major), counter-clockwise
    seen from +z when rows run downwards (decreasing y) and columns along +x. With
    ``mirror_diagonals`` the right half uses the mirrored diagonal, so the mesh is symmetric."""
    out = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a = offset + r * cols + c
            b, d, e = a + cols, a + cols + 1, a + 1      # below, below-right, right
            if mirror_diagonals and c >= (cols - 1) / 2:
                out += [[a, b, e], [e, b, d]]
            else:
                out += [[a, b, d], [a, d, e]]
    return np.array(out, dtype=np.int64)


def face_surface(n_theta=41, n_y=51, nose=14.0, asym=0.0):
    """A symmetric face-like shell: a cylinder section (radius 80 mm, facing +z, y up)
    with a nose bump on the mid-line. Returns (V (N, 3), F (T, 3)). ``asym`` skews it."""
    theta = np.linspace(-1.3, 1.3, n_theta)
    y = np.linspace(70, -70, n_y)
    t, yy = np.meshgrid(theta, y)
    r = 80 + nose * np.exp(-(t / 0.14) ** 2 - (yy / 18) ** 2)
    V = np.stack([r * np.sin(t) * (1 + asym * t), yy, r * np.cos(t) - 40], -1).reshape(-1, 3)
    return V, grid_faces(n_y, n_theta)


def scanline_cloud(rng=None):
    """A point cloud in scanline (column-strip) order made of two patches that meet end to
    end across a seam, like the default model: a face patch and a forehead patch above it."""
    def patch(th0, th1, y0, y1, nc, nr):
        cols = []
        for th in np.linspace(th0, th1, nc):
            y = np.linspace(y0, y1, nr)
            r = 80 + 10 * np.exp(-(th / 0.2) ** 2 - (y / 15) ** 2)
            cols.append(np.stack([r * np.sin(th), y, r * np.cos(th)], 1))
        return np.concatenate(cols)
    a = patch(-1.1, 1.1, 40.0, -40.0, 61, 57)        # spacing about 1.4 mm
    b = patch(-0.9, 0.9, 75.0, 41.4, 50, 25)          # top patch, seam gap 1.4 mm
    return np.concatenate([a, b])
