"""The tuning set for large poses: synthetic renders of real face textures at up to 90 degrees of yaw.

AFLW2000-3D is a test set, so the landmark pipeline's large-pose choices are made here instead:
faces of the default model, each textured with a real photo's flattened face (LFW photos, one per
person, from ../shared/data/lfw), rendered at yaw ~ U(-90, 90), pitch and roll as the synthetic
data draw them, over synthetic backgrounds, with their exact 68 landmarks and pose. The same
protocol as AFLW2000-3D is applied (NME by |yaw| bucket normalised by the landmarks' box, faces
found, pose error) to each variant of the face-mesh stage, side by side:

    python benchmarks/large_pose.py [--identities 100] [--views 3] [--out /tmp/large_pose]
    python benchmarks/large_pose.py --set heads --views 1 --variants fallback --methods localiser,auto@60

``--set heads`` is the other tuning set, closer to real photos: the held-out LFW people's own
photos turned by head profiling (:mod:`stn3dmm.training.data.profiling`), which the shipped
localiser's training never saw; ``--methods`` adds the localiser and ``flatten --method auto``
at a given switch (``auto@60``) to the table. ``--turn K`` turns every image of the set by K
quarter turns (exactly: whole pixels; the landmarks alike; the pose is not turned, so its roll
error is not meaningful there), as a photo turned on its side or upside down would be;
``--turns`` sets how the localiser turns detected faces upright (``LocaliserFitter.turns``).

Variants: ``crop`` (the face mesh on a crop levelled by the detector's eyes, nothing else),
``fallback`` (then mediapipe's landmark model on ROIs of the box where that finds no mesh, the
mesh found re-placed on the ROI of its own points; the default), ``refine`` (every mesh
re-placed so: lower landmark error here, but see ``FaceDetector``'s docstring for what it costs
in consistency).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {"crop": dict(mesh_fallback=False, mesh_refine=False),
            "fallback": dict(mesh_fallback=True, mesh_refine=False),
            "refine": dict(mesh_fallback=True, mesh_refine=True)}


class SyntheticSet:
    """A rendered landmark folder seen as the benchmark harness sees AFLW2000-3D."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names = sorted(p.name for p in folder.glob("*.png"))
        meta = [json.loads((folder / n).with_suffix(".json").read_text()) for n in self.names]
        self.reannotated = np.array([m["landmarks"] for m in meta], dtype=np.float64)
        self.original = self.reannotated
        self._pose = np.array([m["pose"] for m in meta], dtype=np.float64)
        self.abs_yaw = np.abs(self._pose[:, 0])
        self.roll_added = np.array([m.get("roll_added", 0.0) for m in meta], dtype=np.float64)   # rolled_set's turn

    def __len__(self):
        return len(self.names)

    def image_path(self, i):
        return self.folder / self.names[i]

    def pose(self, i):
        return self._pose[i]

    def face_square(self, i):
        p = self.reannotated[i]
        lo, hi = p.min(0), p.max(0)
        c, half = (lo + hi) / 2, (hi - lo).max() / 2
        return np.concatenate([c - half, c + half])


def turned_set(data: SyntheticSet, k: int) -> SyntheticSet:
    """``data`` with every image turned by ``k`` quarter turns counter-clockwise as seen
    (``np.rot90``), and its landmarks alike, written beside it (once)."""
    from PIL import Image

    k %= 4
    if k == 0:
        return data
    folder = data.folder.parent / f"{data.folder.name}_turn{90 * k}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in data.names:
            img = np.asarray(Image.open(data.folder / name))
            meta = json.loads((data.folder / name).with_suffix(".json").read_text())
            p = np.asarray(meta["landmarks"], np.float64)
            for _ in range(k):                          # one turn: (x, y) -> (y, W - 1 - x)
                w = img.shape[1]
                p = np.stack([p[:, 1], w - 1 - p[:, 0]], 1)
                img = np.rot90(img)
            Image.fromarray(np.ascontiguousarray(img)).save(folder / name)
            (folder / name).with_suffix(".json").write_text(json.dumps(dict(meta, landmarks=p.tolist())))
        (folder / "done").write_text("")
    return SyntheticSet(folder)


def rolled_set(data: SyntheticSet, lo: float, hi: float, seed: int = 3) -> SyntheticSet:
    """``data`` with each image turned in its plane by its own angle ~ U(``lo``, ``hi``) degrees
    counter-clockwise as seen, on a canvas grown to hold it all (black corners), its landmarks
    alike, written beside it (once): faces at any roll, as in photos taken sideways or upside down."""
    from PIL import Image

    folder = data.folder.parent / f"{data.folder.name}_roll{lo:g}_{hi:g}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for name in data.names:
            img = Image.open(data.folder / name).convert("RGB")
            meta = json.loads((data.folder / name).with_suffix(".json").read_text())
            t = math.radians(rng.uniform(lo, hi))
            rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])   # y down
            w, h = img.size
            size = (math.ceil(abs(w * rot[0, 0]) + abs(h * rot[0, 1])), math.ceil(abs(w * rot[1, 0]) + abs(h * rot[1, 1])))
            c, c2 = np.array([w, h]) / 2.0, np.array(size) / 2.0     # pixel-corner coordinates
            back = rot.T                                              # output -> input
            off = c - back @ c2
            img = img.transform(size, Image.Transform.AFFINE, (*back[0], off[0], *back[1], off[1]), Image.Resampling.BILINEAR)
            img.save(folder / name)
            p = np.asarray(meta["landmarks"], np.float64) + 0.5      # pixel centres at integers
            p = (p - c) @ rot.T + c2 - 0.5
            meta = dict(meta, landmarks=p.tolist(), roll_added=math.degrees(t))
            (folder / name).with_suffix(".json").write_text(json.dumps(meta))
        (folder / "done").write_text("")
    return SyntheticSet(folder)


def textures_from_lfw(lfw: Path, dest: Path, n: int) -> Path:
    """One photo of each of ``n`` people spread through LFW, copied to ``dest``."""
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    dest.mkdir(parents=True, exist_ok=True)
    for person in people[:: max(1, len(people) // n)][:n]:
        first = sorted(person.glob("*.jpg"))[0]
        shutil.copy(first, dest / first.name)
    return dest


def render_set(out: Path, model, identities: int, views: int, lfw: Path) -> SyntheticSet:
    from stn3dmm.training.data.synthetic import SyntheticConfig
    from stn3dmm.training.data.synthetic_export import export_synthetic

    folder = out / "renders"
    if not (folder / "done").exists():
        tex = textures_from_lfw(lfw, out / "textures", 60)
        cfg = SyntheticConfig(yaw_range=90.0, photo_fraction=1.0, textures=str(tex))
        export_synthetic(folder, model, identities, views=views, size=224, seed=7, landmark_set="ibug68",
                         config=cfg, overwrite=True, progress=False, log=lambda m: None)
        (folder / "done").write_text("")
    return SyntheticSet(folder)


def head_render_set(out: Path, model, flat: Path, lfw: Path, views: int, yaw_min: float = 0.0) -> SyntheticSet:
    """Head renders (:mod:`stn3dmm.training.data.profiling`) of the HELD-OUT people of a flatten
    tree of LFW (every 10th name; never trained on), 224 px, the face's 68-point square 1/1.6 of
    the side, with their exact 68 landmarks and pose: the photo itself turned to |yaw| up to 90
    (from ``yaw_min``: a set of profiles, ``heads{views}_yaw{yaw_min}``)."""
    import torch
    from PIL import Image

    from stn3dmm.training.data.fitted import FittedPhotos

    folder = out / (f"heads{views}" + (f"_yaw{yaw_min:g}" if yaw_min else ""))
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        ds = FittedPhotos(flat, model, 224, photos=lfw, split="val", real_views=0, profiled_views=views,
                          head_share=1.0, context=1.6, grid_step=0, seed=11, head_yaw_min=yaw_min, progress=False)
        for lo in range(0, len(ds), 64):
            for k, it in enumerate(ds.__getitems__(list(range(lo, min(len(ds), lo + 64))))):
                name = f"head{lo + k:05d}"
                img = (it["image"].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{name}.png")
                meta = {"landmarks": torch.as_tensor(it["landmarks"])[:68].tolist(),
                        "pose": [float(v) for v in it["pose"]]}
                (folder / f"{name}.json").write_text(json.dumps(meta))
        (folder / "done").write_text("")
    return SyntheticSet(folder)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--set", choices=["synthetic", "heads"], default="synthetic",
                    help="synthetic: the default model textured with LFW faces; heads: held-out LFW photos "
                         "turned by head profiling (needs --flat, a flatten tree of --lfw)")
    ap.add_argument("--flat", default=str(ROOT / "data" / "lfw_flat"),
                    help="stn3dmm flatten ../shared/data/lfw --out data/lfw_flat --method landmarks --no-mesh")
    ap.add_argument("--methods", default="", help="also score: localiser, auto@YAW[:SHARE[:AGREE]],... (auto's switch at "
                    "YAW, the landmark fit's share of its blend, its turn agreement in degrees)")
    ap.add_argument("--sweep-fit", default="", help="with --sweep: also keep the landmark fit where its own |yaw| "
                                                    "is below each of these (e.g. 15,20,25,30)")
    ap.add_argument("--shares", default="1", help="with --sweep: auto's blend, the landmark fit's shares to score "
                    "(e.g. 1,0.5,0.4,0.3; Flattener.fit_share)")
    ap.add_argument("--passes", type=int, default=2, help="the localiser's forward passes (default 2)")
    ap.add_argument("--checkpoint", help="a training checkpoint's localiser in place of the shipped one")
    ap.add_argument("--refiner", help="one more pass after the cascade: a training checkpoint, or none (default: the "
                                      "package's refiner for the shipped localiser, none for a --checkpoint)")
    ap.add_argument("--fitter", action="append", default=[], metavar="KEY=VALUE",
                    help="set a LocaliserFitter setting of the shipped localiser (e.g. shift=3); repeatable")
    ap.add_argument("--yaw-min", type=float, default=0.0, help="with --set heads: |yaw| from this many degrees "
                                                                "up (a set of profiles)")
    ap.add_argument("--turn", type=int, default=0, help="turn every image by this many quarter turns")
    ap.add_argument("--roll", default="", help="LO,HI: turn each image by its own angle ~ U(LO, HI) degrees, "
                    "and count the faces fitted wrongly (NME above --wrong)")
    ap.add_argument("--records", help="write each method's per-face records (name, |yaw|, NME, pose) to this JSON")
    ap.add_argument("--wrong", type=float, default=20.0, help="with --roll: NME %% above which a fit counts as wrong")
    ap.add_argument("--turns", type=int, help="the localiser turns detected faces upright by multiples of "
                                              "360 / TURNS degrees (default: LocaliserFitter's)")
    ap.add_argument("--turn-within", type=float, help="... where the eye line is within this many degrees of "
                                                      "one (default: LocaliserFitter's)")
    ap.add_argument("--sweep", default="", help="auto's switch: score these |yaw| switches (e.g. 30,40,50,60,70,90) "
                                                "from one run of the landmark fit and one of the localiser")
    args = ap.parse_args()
    lfw = Path(args.lfw)
    if not lfw.is_dir():
        sys.exit(f"{lfw}: LFW not found (needed for the real face textures); pass --lfw")
    import torch

    torch.set_num_threads(1)
    from stn3dmm.evaluation.aflw2000 import format_table
    from stn3dmm.evaluation.methods import FlattenMethod, run_benchmark
    from stn3dmm.flatten import Flattener
    from stn3dmm.model import load_model
    from stn3dmm.photos import FaceDetector

    model = load_model()
    data = (render_set(Path(args.out), model, args.identities, args.views, lfw) if args.set == "synthetic" else
            head_render_set(Path(args.out), model, Path(args.flat), lfw, args.views, args.yaw_min))
    data = turned_set(data, args.turn)
    if args.roll:
        data = rolled_set(data, *(float(v) for v in args.roll.split(",")))
    print(f"{len(data)} renders, |yaw| buckets: " + ", ".join(
        f"{lo}-{hi}: {int(((data.abs_yaw >= lo) & (data.abs_yaw < hi)).sum())}"
        for lo, hi in ((0, 30), (30, 60), (60, math.inf))))
    runs = [(f"variant {name}: {VARIANTS[name]}", FlattenMethod(
        model, Flattener(model, detector=FaceDetector(**VARIANTS[name])))) for name in args.variants.split(",") if name]
    fitter = None
    from stn3dmm.evaluation.checkpoint import refiner_option

    if args.checkpoint:
        from stn3dmm.evaluation.checkpoint import checkpoint_fitter

        fitter = checkpoint_fitter(args.checkpoint, model, "cpu", args.passes, refiner=refiner_option(args.refiner))
    elif args.passes != 2 or args.turns is not None or args.turn_within is not None or args.refiner or args.fitter:
        from stn3dmm.fitting.localiser import load_localiser

        fitter = load_localiser(model=model, passes=args.passes, refiner=refiner_option(args.refiner))
    for key, value in (kv.split("=", 1) for kv in args.fitter):
        if not hasattr(fitter, key):
            raise SystemExit(f"--fitter {key}: LocaliserFitter has no such setting")
        kind = type(getattr(fitter, key))
        setattr(fitter, key, value.lower() in ("1", "true", "yes") if kind is bool else kind(value))
    if args.turns is not None:
        fitter.turns = args.turns
    if args.turn_within is not None:
        fitter.turn_within = math.radians(args.turn_within)
    runs += [(m, _method(m, model, fitter)) for m in args.methods.split(",") if m]
    every = {}
    for title, method in runs:
        results, records = run_benchmark(data, method, progress=False)
        every[title] = records
        print(f"\n== {title}")
        if args.roll:
            wrong = [r["name"] for r in records if not r["nme"] <= args.wrong]
            print(f"fitted wrongly (NME > {args.wrong:g} % or not found): {len(wrong)} of {len(records)}: "
                  + " ".join(n.split(".")[0] for n in wrong[:40]))
        print(format_table(results).split("\npublished")[0])
        print("\n".join(line for line in format_table(results).splitlines()
                        if line.startswith(("faces found", "stn3dmm ", "pose"))))
    if args.records:
        Path(args.records).write_text(json.dumps(every))
    if args.sweep:
        sweep_switch(data, model, [float(v) for v in args.sweep.split(",")], fitter,
                     [float(v) for v in args.sweep_fit.split(",") if v], [float(v) for v in args.shares.split(",")])


def sweep_switch(data, model, switches: list, fitter=None, fit_switches=None, shares=(1.0,)) -> None:
    """``flatten --method auto`` at each switch and blend, from per-face predictions of its two parts:
    the landmark fit where the detector's face has face-mesh points and the localiser's |yaw| is below
    the switch, the localiser (from the detector's box) elsewhere. ``shares``: the fit's share of the
    blend of the two faces' 68 points (``Flattener.fit_share`` blends their targets, which moves the
    fitted points about as much). Prints NME by bucket per switch and share."""
    from stn3dmm.evaluation.aflw2000 import score
    from stn3dmm.evaluation.methods import predict_all

    every = np.arange(len(data))
    fit = predict_all(data, _method("landmarks", model), every, progress=False)
    loc = predict_all(data, _method("localiser-detect", model, fitter), every, progress=False)
    yaw = np.abs([p.pose[0] for p in loc])
    meshed = np.array([p.found and p.how == "detected" for p in fit])
    p_fit, p_loc = np.stack([p.points for p in fit]), np.stack([p.points for p in loc])
    found, pose = np.array([p.found for p in loc]), np.stack([p.pose for p in loc])
    buckets = [(0, 30), (30, 60), (60, math.inf)]
    print("\n== auto's switch (|yaw| of the localiser from which it is kept) and blend: NME % by bucket")
    print(f"{'switch':>8}{'share':>7}" + "".join(f"{f'{lo}-{hi if hi < 1e9 else 90}':>9}" for lo, hi in buckets)
          + f"{'mean':>9}{'fit share':>11}")
    fit_yaw = np.abs([p.pose[0] for p in fit])
    abs_yaw = np.asarray(data.abs_yaw)
    for second in [math.inf] + list(fit_switches or []):
        if second < math.inf:
            print(f"-- and the landmark fit kept where its own |yaw| is below {second:.0f}")
        for share in shares:
            for t in switches:
                use_fit = meshed & ((yaw < t) | (fit_yaw < second if second < math.inf else False))
                pts = np.where(use_fit[:, None, None], share * p_fit + (1 - share) * p_loc, p_loc)
                e = np.asarray(score(data, every, pts, found, pose)["per_image_nme"])
                means = [float(e[(abs_yaw >= lo) & (abs_yaw < hi)].mean()) for lo, hi in buckets]
                print(f"{t:>8.0f}{share:>7.2f}" + "".join(f"{m:>9.2f}" for m in means)
                      + f"{np.mean(means):>9.2f}{use_fit.mean():>11.2f}")


def _method(spec: str, model, fitter=None):
    """``landmarks`` (flatten's default), ``localiser`` (from the benchmark box), ``localiser-detect``
    or ``auto@YAW`` (``auto@YAW:SHARE``: with the landmark fit's share of the blend;
    ``auto@YAW:SHARE:AGREE``: and the fit kept only where the face mesh's turn is within AGREE
    degrees of the localiser's, ``Flattener.fit_turn_agree``)."""
    from stn3dmm.evaluation.methods import FlattenMethod, LocaliserMethod
    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten import Flattener

    if spec == "landmarks":
        return FlattenMethod(model)
    fitter = fitter or load_localiser(model=model)
    if spec.startswith("auto@"):
        switch, _, rest = spec[5:].partition(":")
        share, _, agree = rest.partition(":")
        options = {"fit_share": float(share)} if share else {}
        options.update({"fit_turn_agree": float(agree)} if agree else {})
        return FlattenMethod(model, Flattener(model, method="auto", localiser=fitter, switch_yaw=float(switch), **options))
    return LocaliserMethod(fitter, "detect" if spec == "localiser-detect" else "box")


if __name__ == "__main__":
    main()
