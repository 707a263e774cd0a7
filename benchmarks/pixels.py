"""Benchmark: the per-photo pixel work of flattening, each against the code it replaced.

    python benchmarks/pixels.py [--repeats 30]

Two rows of work, on the sample photos' own pixels, CPU ms per call (the process's CPU clock,
median of ``--repeats``; one thread), each with its ratio to a named baseline measured in the
same run:

* **box filter** of a photo region before a crop is resampled (:func:`stn3dmm.photos.crop._box_reduce`,
  by OpenCV's area resize) against the code before it (Pillow's ``reduce`` on each float channel)
  and torch's ``avg_pool2d``, at the region sizes and factors the localiser's crops of 400-1200 px
  photos meet;
* **PNG compression** of the outputs' images (texture and completion 112 x 112 RGBA, overlay
  224 x 1136 RGB) at the level flatten writes (:data:`stn3dmm.flatten.outputs.PNG_LEVEL`):
  ISA-L (:mod:`stn3dmm.photos.png`) against zlib, with the files' sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

import numpy as np


def cpu_ms(fn, *args, repeats: int) -> float:
    """Median CPU ms of ``fn(*args)`` over ``repeats`` calls, after one warm-up call."""
    fn(*args)
    times = []
    for _ in range(repeats):
        c = time.process_time()
        fn(*args)
        times.append(1000 * (time.process_time() - c))
    return statistics.median(times)


def pillow_reduce(region: np.ndarray, k: int):
    """The box filter before: each channel as a float image, reduced by Pillow."""
    import torch
    from PIL import Image

    a = region.astype(np.float32) / 255.0
    return torch.from_numpy(np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[:, :, c])).reduce(k))
                                      for c in range(a.shape[2])]))


def torch_pool(region: np.ndarray, k: int):
    import torch

    t = torch.from_numpy(region.copy()).permute(2, 0, 1).float() / 255.0
    return torch.nn.functional.avg_pool2d(t[None], k, stride=k, ceil_mode=True)[0]


def sample_image(height: int, width: int, channels: int = 3) -> np.ndarray:
    from PIL import Image

    from stn3dmm.photos.samples import sample_photo_paths

    im = Image.open(sample_photo_paths()[0]).convert("RGBA" if channels == 4 else "RGB")
    return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    import cv2
    import torch

    from stn3dmm.flatten.outputs import PNG_LEVEL
    from stn3dmm.photos.crop import _box_reduce
    from stn3dmm.photos.png import _compress

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    r = args.repeats
    print(f"box filter, CPU ms per call (median of {r}), one thread")
    print(f"{'region':<16} {'k':>2} {'ours (OpenCV)':>14} {'Pillow (before)':>16} {'torch pool':>11} "
          f"{'ours / before':>14}")
    for side, k in ((300, 2), (450, 2), (600, 3), (900, 4)):
        region = sample_image(side + 1, side + 3)
        ours, before, pool = (cpu_ms(f, region, k, repeats=r) for f in (_box_reduce, pillow_reduce, torch_pool))
        err = float((_box_reduce(region, k) - torch_pool(region, k)).abs().max())
        assert err < 1e-6, err
        name = f"{side + 1} x {side + 3}"
        print(f"{name:<16} {k:>2} {ours:>14.2f} {before:>16.2f} {pool:>11.2f} {ours / before:>14.2f}")
    print(f"\nPNG compression at level {PNG_LEVEL}, CPU ms per image (median of {r})")
    print(f"{'image':<26} {'ours (ISA-L)':>13} {'zlib (before)':>14} {'ours / before':>14} {'kB ours':>8} "
          f"{'kB zlib':>8}")
    for name, (h, w, c) in (("texture 112 x 112 RGBA", (112, 112, 4)), ("overlay 224 x 1136 RGB", (224, 1136, 3)),
                            ("texture 512 x 512 RGBA", (512, 512, 4))):
        data = sample_image(h, w, c).tobytes()
        ours, before = (cpu_ms(f, data, PNG_LEVEL, repeats=r) for f in (_compress, zlib.compress))
        assert zlib.decompress(_compress(data, PNG_LEVEL)) == data
        print(f"{name:<26} {ours:>13.2f} {before:>14.2f} {ours / before:>14.2f} "
              f"{len(_compress(data, PNG_LEVEL)) / 1e3:>8.0f} {len(zlib.compress(data, PNG_LEVEL)) / 1e3:>8.0f}")


if __name__ == "__main__":
    main()
