"""Benchmark: preparing the default grid model, step by step, against named baselines.

    python benchmarks/prepare_model.py [--res 112]

Prints one table: for each step (download, mesh, UV, resample) its wall and CPU time, the
peak resident memory it added (sampled every 5 ms) and a quality figure, and beside it a
baseline that does the same job measured in the same run:

* mesh     vs ball pivoting (pymeshlab) and vs a point-cloud Laplacian + harmonic map +
             Delaunay in UV (robust-laplacian + SciPy) — the two approaches the issue names;
* UV       vs libigl's harmonic map with plain (unclamped) cotangent weights on the same cut;
* resample vs nothing (the original released only the result for BFM 2009).

Baselines whose packages are missing are skipped with a note. Absolute times on a shared
machine are noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np
from _common import measure




def baseline_ball_pivoting(P):
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=P))
    ms.compute_normal_for_point_clouds(k=10, viewpos=np.array([0.0, 0.0, 1000.0]))
    ms.generate_surface_reconstruction_ball_pivoting()
    return ms.current_mesh().face_matrix().astype(np.int64)


def baseline_laplacian_delaunay(P):
    import robust_laplacian
    import scipy.sparse.linalg as spla
    from scipy.spatial import ConvexHull, Delaunay

    L, M = robust_laplacian.point_cloud_laplacian(P)
    # boundary: points on the hull of the frontal projection, pinned to a circle by angle
    hull = ConvexHull(P[:, :2]).vertices
    ang = np.arctan2(P[hull, 1] - P[:, 1].mean(), P[hull, 0] - P[:, 0].mean())
    B = np.zeros(len(P), bool)
    B[hull] = True
    uv = np.zeros((len(P), 2))
    uv[hull] = np.stack([np.cos(ang), np.sin(ang)], 1)
    I = np.where(~B)[0]
    A = L.tocsr()[I][:, I].tocsc()
    rhs = -L.tocsr()[I][:, hull] @ uv[hull]
    solve = spla.factorized(A)
    uv[I] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], 1)
    return Delaunay(uv).simplices.astype(np.int64)


def mesh_quality(P, F):
    from stn3dmm.model.mesh import mesh_report

    if len(F) == 0:
        return "no faces"
    r = mesh_report(P, F)
    return (f"{r.unused_vertices} unused, {len(r.boundary_loops)} loops, "
            f"{r.long_triangles} long, {r.nonmanifold_edges} nm-edges")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=112)
    args = ap.parse_args()

    from stn3dmm.model.prepare import PrepareReport, measure_quality, resample_model, source_mesh, symmetric_uv
    from stn3dmm.model.sources import load_default_source
    from stn3dmm.model.uv import signed_areas

    rows = []
    cache = tempfile.mkdtemp(prefix="stn3dmm-bench-")
    os.environ["STN3DMM_CACHE"] = cache
    src, dt, dc, pk = measure(load_default_source, log=lambda m: None)
    rows.append(("download + read", dt, dc, pk, f"{src.n_vertices} vertices", "-", "", "", ""))
    P = src.mean.astype(np.float64)

    (F, mrep), dt, dc, pk = measure(source_mesh, src, log=lambda m: None)
    ours = (dt, dc, pk, mesh_quality(P, F))
    for name, fn in (("ball pivoting (MeshLab)", baseline_ball_pivoting),
                     ("PC-Laplacian + Delaunay", baseline_laplacian_delaunay)):
        try:
            Fb, bdt, _, bpk = measure(fn, P)
            rows.append(("mesh", *ours, name, f"{bdt:.1f}", f"{bpk:.0f}", mesh_quality(P, Fb)))
        except ImportError as e:
            rows.append(("mesh", *ours, name, "skipped", "", f"({e.name} not installed)"))

    suv, dt, dc, pk = measure(symmetric_uv, P, F)
    A = signed_areas(suv.left.uv, suv.left.F)
    As = signed_areas(suv.source_uv, F)
    ours = (dt, dc, pk, f"{(A <= 0).sum()} flipped half, {(As <= 0).sum()} whole ({int(suv.moved.sum())} moved)")
    try:
        import igl

        def plain_cot():
            loop = igl.boundary_loop(suv.left.F)
            return igl.harmonic(suv.left.V, suv.left.F, loop, suv.left.uv[loop], 1)

        uvb, bdt, _, bpk = measure(plain_cot)
        Ab = signed_areas(np.asarray(uvb), suv.left.F)
        rows.append(("UV", *ours, "libigl harmonic, plain cot", f"{bdt:.1f}", f"{bpk:.0f}", f"{(Ab <= 0).sum()} flipped half"))
    except ImportError:
        rows.append(("UV", *ours, "libigl", "skipped", "", "(igl not installed)"))

    (mean, *_), dt, dc, pk = measure(resample_model, src, suv, F, args.res)
    rep = PrepareReport(res=args.res)
    measure_quality(rep, suv, F, mean, args.res)
    rows.append((f"resample R={args.res}", dt, dc, pk,
                 f"mirror {rep.grid_mirror_error[0]:.2f} mm, rms {rep.resampling_rms:.2f}/{rep.grid_to_source_rms:.2f} mm",
                 "-", "", "", ""))
    total = sum(r[1] for r in rows[1:] if r[0] != "mesh") + rows[1][1]
    total_cpu = sum(r[2] for r in rows[1:] if r[0] != "mesh") + rows[1][2]
    rows.append(("total after download", total, total_cpu, float("nan"), "", "-", "", "", ""))
    shutil.rmtree(cache, ignore_errors=True)

    head = ("step", "wall s", "CPU s", "peak MiB", "result", "baseline", "wall s", "peak MiB", "result")
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    print(" | ".join(head))
    print("-" * 150)
    for r in rows:
        step, t, c, m, q, bn, bt, bm, bq = r
        print(f"{step:<22} | {t:6.1f} | {c:6.1f} | {m:8.0f} | {q:<44} | {bn:<27} | {bt:>6} | {bm:>8} | {bq}")


if __name__ == "__main__":
    main()
