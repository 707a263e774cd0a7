"""Benchmark: face detection + landmarks (photos/second), against named baselines in the same run.

    python benchmarks/detect.py [--repeat 20]

Photos (all made from matplotlib's sample photo, so nothing needs downloading):

* ``portrait 512``   -- grace_hopper.jpg as shipped (512 x 600, one face of ~190 px);
* ``portrait 2048``  -- the same upscaled to 1747 x 2048 (a camera photo after read_photo);
* ``group 2048``     -- a 2048 x 1536 canvas with 6 faces of 60-400 px (the small-face case).

Rows, each timed on each photo, with the faces found (with landmarks) as a quality figure:

* ``ours``                     -- :func:`stn3dmm.photos.detect_faces` defaults: detectors on a
                                  copy downscaled to 640 px plus one tile level, then the face
                                  mesh on a crop per face;
* ``ours, tiles=0``            -- the same without the tile pass (faster, misses small faces);
* ``boxes only, downscaled``   -- stage 1 alone on the 640 px copy (no landmarks);
* ``baseline: boxes, full size`` -- stage 1 alone, the detectors fed the full-size image;
* ``baseline: face_mesh``      -- mediapipe's own FaceMesh (static mode, up to 10 faces) on the
                                  full image: the one-call approach.

Also printed: reading a 4000 x 3000 JPEG with read_photo (decoded at a reduced DCT scale and
downscaled to 2048), for the end-to-end budget. Times are medians; a shared 2-core machine is
noisy, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image


def timed(fn, repeat: int):
    fn()  # warm up (graph creation, caches)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return out, statistics.median(ts)


def photos():
    from matplotlib import cbook

    g = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    u8 = np.asarray(g)
    big = np.asarray(g.resize((1747, 2048), Image.Resampling.LANCZOS))
    rng = np.random.default_rng(0)
    group = (rng.random((1536, 2048, 3)) * 50 + 90).astype(np.uint8)
    head = g.crop((120, 90, 420, 400))  # 300 x 310, the face ~0.65 of its width
    x = 20
    for face_px in (400, 240, 160, 110, 80, 60):
        w = round(face_px / 0.65)
        h = round(w * 310 / 300)
        group[700 - h // 2:700 - h // 2 + h, x:x + w] = np.asarray(head.resize((w, h), Image.Resampling.LANCZOS))
        x += w + 20
    return {"portrait 512": u8, "portrait 2048": big, "group 2048 (6 faces)": group}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    from mediapipe.python.solutions import face_mesh

    from stn3dmm.photos import FaceDetector, read_photo

    imgs = photos()
    ours = FaceDetector()
    ours0 = FaceDetector(tiles=0)
    full_size = FaceDetector(detect_side=100_000)
    mp_mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=10, refine_landmarks=False)

    def n_faces_mesh(img):
        r = mp_mesh.process(img)
        return len(r.multi_face_landmarks or [])

    rows = [
        ("ours", lambda im: sum(f.points is not None for f in ours(im))),
        ("ours, tiles=0", lambda im: sum(f.points is not None for f in ours0(im))),
        ("boxes only, downscaled", lambda im: len(ours.detect_boxes(im))),
        ("baseline: boxes, full size", lambda im: len(full_size.detect_boxes(im))),
        ("baseline: face_mesh", n_faces_mesh),
    ]
    print(f"{'method':28s}" + "".join(f"{name:>30s}" for name in imgs))
    print(f"{'':28s}" + "".join(f"{'photos/s   ms  faces':>30s}" for _ in imgs))
    for name, fn in rows:
        cells = []
        for img in imgs.values():
            n, dt = timed(lambda: fn(img), args.repeat)
            cells.append(f"{1.0 / dt:8.1f} {dt * 1e3:6.1f} {n:6d}")
        print(f"{name:28s}" + "".join(f"{c:>30s}" for c in cells))

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "camera.jpg")
        Image.fromarray(imgs["portrait 2048"]).resize((3000, 4000)).save(p, quality=90)
        ph, dt = timed(lambda: read_photo(p), max(3, args.repeat // 4))
        print(f"\nread_photo 3000 x 4000 JPEG -> {ph.width} x {ph.height}: {dt * 1e3:.1f} ms")
    for d in (ours, ours0, full_size):
        d.close()
    mp_mesh.close()


if __name__ == "__main__":
    main()
