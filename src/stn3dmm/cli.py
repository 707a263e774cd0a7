"""The ``stn3dmm`` command line. Thin: parses arguments and calls the package.

Commands: ``prepare-model`` (build the grid model file), ``show-model`` (pictures of it),
``demo`` (the original's landmark-fitting demo on its six photos), ``flatten`` (photos ->
flattened face textures, by the landmark fit or the trained localiser), ``average`` (mean texture
of one person), ``compare`` (overlays of several flatten runs side by side), ``train``,
``evaluate`` and ``synthetic`` (learning the localiser).
Errors the user can fix (bad files, missing data) print one clear line and exit with 2.

Each command imports what it calls inside its function, so that ``stn3dmm --help`` and a
mistyped option answer at once instead of after importing torch and mediapipe.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .core.defaults import GRID_RES, IMAGE_SIZE, LOCALISER_SIZE


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_prepare_model(args) -> int:
    from .model import save_model
    from .model.prepare import prepare_grid_model
    from .model.sources import load_source
    from .model.store import default_model_path, model_name

    if args.res < 16:
        raise ValueError(f"--res must be at least 16, got {args.res}")
    src = load_source(args.source, args.inputs, args.landmarks, n_id=args.n_id, n_exp=args.n_exp, log=_log)
    model, _ = prepare_grid_model(src, res=args.res, log=_log)
    out = Path(args.out) if args.out else default_model_path(args.res, args.source)
    save_model(model, out)
    use = model_name(out) if not args.out else None
    _log(f"wrote {out}")
    _log(f"use it with --model {use or out} (for show-model: stn3dmm show-model {use or out} --out DIR)"
         + ("; with no --model the commands use the default model" if use and use != "default" else ""))
    print(out)
    return 0


def cmd_show_model(args) -> int:
    from .model.store import load_model
    from .viz import show_model

    model = load_model(args.file, log=_log)
    show_model(model, args.out, n_random=args.n_random, log=_log)
    return 0


def cmd_demo(args) -> int:
    from .demo import convergence_figure, default_demo_data, demo_figures, read_demodata, run_demo
    from .model.store import load_model
    from .viz import visibility_comparison_figure

    images, labels = read_demodata(args.data or default_demo_data())
    model = load_model(args.model, log=_log)
    runs = run_demo(model, images, labels, log=_log)
    out = Path(args.out)
    paths = demo_figures(model, images, labels, runs[-1], out, visibility=args.visibility)
    paths.append(convergence_figure(runs, out))
    visibility_comparison_figure(model, yaws=(0, 30, 50, 70), path=out / "visibility_yaw.png")
    paths.append(out / "visibility_yaw.png")
    for p in paths:
        _log(f"wrote {p}")
    return 0


def _workers(text: str) -> int | None:
    """``--workers``: a whole number of processes, at least 1, or ``auto``."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more) or auto, got {text!r}")
    return int(text)


def cmd_flatten(args) -> int:
    from .flatten import Flattener, check_options, flatten_paths
    from .model.store import load_model

    check_options(args.size, args.res, args.max_faces, flags=True)     # before any work
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be a positive number of pixels, got {args.max_pixels}")
    inputs = list(args.inputs)
    if args.samples:
        from .photos.samples import copy_samples

        inputs += [str(p) for p in copy_samples(Path(args.out) / "samples")]
    if not inputs:
        raise ValueError("no photos given: name photos or folders, or pass --samples")
    try:
        model = load_model(args.model, log=_log)
        fl = Flattener(model, size=args.size, res=args.res, visibility=args.visibility, mapping=args.landmarks,
                       method=args.method)
        rep = flatten_paths(inputs, args.out, fl, overwrite=args.overwrite, max_faces=args.max_faces,
                            mesh=not args.no_mesh, progress=not args.quiet, log=_log,
                            read_options={"max_pixels": args.max_pixels}, workers=args.workers)
    except KeyboardInterrupt:
        _log("stn3dmm flatten: interrupted before any photo was flattened")
        return 130
    _log(rep.summary())
    _log(f"results in {Path(args.out).resolve()}")
    return rep.exit_code


def cmd_average(args) -> int:
    from .flatten.average import FOLDER_PATTERN, TREE_PATTERN, average_folder, average_tree

    if args.by_folder:
        res = average_tree(args.folder, args.out, pattern=args.pattern or TREE_PATTERN, overwrite=args.overwrite,
                           log=_log)
        _log(f"means in {Path(args.out).resolve()}")
        return 0 if res.written or res.kept else 1
    paths = average_folder(args.folder, args.out, pattern=args.pattern or FOLDER_PATTERN, overwrite=args.overwrite,
                           log=_log)
    for p in paths:
        _log(f"wrote {p}")
    return 0


def cmd_train(args) -> int:
    from .training.loop import train
    from .training.config import load_config

    cfg = load_config(args.config, args.set)
    last = train(cfg, resume=args.resume, log=_log, progress=not args.quiet, force=args.force)
    if int(os.environ.get("RANK", "0")) == 0:
        _log("last: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
        _log(f"checkpoints and logs in {Path(cfg['train']['out']).resolve()}")
    return 0


def cmd_evaluate(args) -> int:
    methods = [m.strip() for m in (args.method or ("localiser" if args.checkpoint else "flatten")).split(",")]
    unknown = [m for m in methods if m not in EVAL_METHODS]
    if unknown or not methods:
        raise ValueError(f"--method: unknown {', '.join(unknown)} (choose from {', '.join(EVAL_METHODS)}, "
                         "comma-separated)")
    if args.data == "lfw-consistency":
        return _evaluate_consistency(args, methods)
    if args.checkpoint is None and args.data not in (None, "aflw2000-3d"):
        raise ValueError(f"--data {args.data}: only a --checkpoint is scored on a training-style data set")
    if args.data == "aflw2000-3d" or args.checkpoint is None:
        return _evaluate_aflw2000(args, methods)
    from .evaluation.checkpoint import evaluate_checkpoint, format_table
    from .training.config import data_overrides

    spec = data_overrides(args.data, args.path, args.set)
    res = evaluate_checkpoint(args.checkpoint, spec, out=args.out, batch=args.batch, device=args.device, log=_log,
                              progress=not args.quiet)
    print(format_table(res))
    if args.out:
        _log(f"wrote {args.out}")
    return 0


#: stn3dmm evaluate --method on AFLW2000-3D: the landmark pipeline; flatten's auto method (the
#: landmark fit, or the localiser on turned faces); the localiser (the shipped one, or --checkpoint)
#: from the benchmark's boxes; the same from our face detector's boxes.
EVAL_METHODS = ("flatten", "flatten-auto", "localiser", "localiser-detect")


def _localiser_fitter(args, model):
    """The localiser to score: --checkpoint's, else the shipped one; --refiner's pass after its cascade."""
    from .evaluation.checkpoint import checkpoint_fitter, refiner_option
    from .fitting.localiser import SHIFT, load_localiser

    device = "cpu" if args.device == "auto" else args.device
    refiner = refiner_option(args.refiner, device)
    shift = SHIFT if args.shift is None else args.shift
    if not args.checkpoint:
        return load_localiser(device, passes=args.passes, mirror=not args.no_mirror, shift=shift, model=model,
                              refiner=refiner)
    return checkpoint_fitter(args.checkpoint, model, device, args.passes, mirror=not args.no_mirror, shift=shift,
                             refiner=refiner)


def _evaluate_consistency(args, methods: list) -> int:
    import json

    from .core.paths import write_bytes_atomically
    from .evaluation.consistency import consistency_people, format_consistency, texture_consistency
    from .flatten.pipeline import Flattener
    from .model.store import load_model

    if not args.path:
        raise ValueError("--data lfw-consistency needs --path: a folder with one sub-folder of photos per person")
    model = load_model(args.model, log=_log)
    people = consistency_people(args.path)
    fitter = _localiser_fitter(args, model) if any(m != "flatten" for m in methods) else None   # loaded once
    results = {}
    for m in dict.fromkeys("localiser" if m.startswith("localiser") else m for m in methods):
        how = {"flatten": "landmarks", "flatten-auto": "auto"}.get(m, m)
        fl = Flattener(model) if how == "landmarks" else Flattener(model, method=how, localiser=fitter)
        results[f"stn3dmm flatten --method {how}"] = texture_consistency(fl, people, progress=not args.quiet)
    print(format_consistency(results))
    if args.out:
        write_bytes_atomically(Path(args.out), json.dumps(results, indent=1).encode())
        _log(f"wrote {args.out}")
    return 0


def _evaluate_aflw2000(args, methods: list) -> int:
    from .evaluation.aflw2000 import PUBLISHED, default_aflw2000, format_table
    from .evaluation.methods import FlattenMethod, LocaliserMethod, evaluate_aflw2000
    from .flatten.pipeline import Flattener
    from .model.store import load_model
    from .viz import nme_by_yaw_figure

    if args.per_bucket is not None and args.per_bucket < 1:
        raise ValueError(f"--per-bucket must be at least 1, got {args.per_bucket}")
    model = load_model(args.model, log=_log)
    fitter = _localiser_fitter(args, model) if any(m != "flatten" for m in methods) else None
    scorers = [FlattenMethod(model) if m == "flatten" else
               FlattenMethod(model, Flattener(model, method="auto", localiser=fitter)) if m == "flatten-auto" else
               LocaliserMethod(fitter, "detect" if m == "localiser-detect" else "box") for m in methods]
    res = evaluate_aflw2000(args.path or default_aflw2000(), model, args.per_bucket, out=args.out,
                            progress=not args.quiet, method=scorers)
    print(format_table(res["methods"]))
    figure = args.figure or (Path(args.out).with_suffix(".png") if args.out else None)
    if figure:
        _log(f"wrote {nme_by_yaw_figure(res, PUBLISHED, [s.name for s in scorers], figure)}")
    if args.out:
        _log(f"wrote {args.out}")
    return 0


def cmd_synthetic(args) -> int:
    from .training.data.synthetic_export import export_synthetic
    from .model.store import load_model

    options = {}
    if args.textures:
        options["textures"] = args.textures
    if args.photo_fraction is not None:
        if not 0 <= args.photo_fraction <= 1:
            raise ValueError(f"--photo-fraction must be in [0, 1], got {args.photo_fraction}")
        options["photo_fraction"] = args.photo_fraction
    model = load_model(args.model, log=_log)
    export_synthetic(args.out, model, args.identities, views=args.views, size=args.size, seed=args.seed,
                     landmark_set=args.landmarks, identity_offset=args.identity_offset, overwrite=args.overwrite,
                     progress=not args.quiet, log=_log, **options)
    _log(f"wrote {args.identities * args.views} images to {Path(args.out).resolve()}")
    return 0


def _add_prepare_model(sub) -> None:
    q = sub.add_parser("prepare-model", help="build the R x R grid model file from a morphable model")
    q.add_argument("--source", choices=["default", "bfm2009", "bfm2017"], default="default")
    q.add_argument("inputs", nargs="*", help="the source's files (none for the default model)")
    q.add_argument("--res", type=int, default=GRID_RES, help=f"grid resolution R (default {GRID_RES}, at least 16)")
    q.add_argument("--out", help="output .npz (default: the cache location other commands use)")
    q.add_argument("--n-id", type=int, default=10, help="identity components to keep (default 10)")
    q.add_argument("--n-exp", type=int, default=10, help="expression components to keep (default 10)")
    q.add_argument("--landmarks", help='JSON {"aflw21": [...], "ibug68": [...]} of source vertex indices '
                                       "(required for bfm2017; bfm2009 maps the default model's)")
    q.set_defaults(func=cmd_prepare_model)


def _add_show_model(sub) -> None:
    q = sub.add_parser("show-model", help="write pictures of a grid model")
    q.add_argument("file", nargs="?", help="grid model .npz, or the name of a prepared model such as "
                                           "bfm2017_r64 (default: the prepared default model)")
    q.add_argument("--out", required=True, help="directory for the PNGs")
    q.add_argument("--n-random", type=int, default=6, help="random faces to draw (default 6)")
    q.set_defaults(func=cmd_show_model)


def _add_demo(sub) -> None:
    q = sub.add_parser("demo", help="the original demo: fit six photos from landmarks and flatten them")
    q.add_argument("--data", help="demodata.mat (default: $STN3DMM_SHARED/data or ../shared/data)")
    q.add_argument("--model", help="grid model .npz, or the name of a prepared model such as default_r64 or bfm2017 "
                   "(default: the prepared default model)")
    q.add_argument("--visibility", choices=["depth", "backface", "backface-original"], default="depth",
                   help="mask of the figures: depth test (default), back-face test, or the original's back-face test")
    q.add_argument("--out", required=True, help="directory for the figures")
    q.set_defaults(func=cmd_demo)


def _add_flatten(sub) -> None:
    q = sub.add_parser("flatten", help="flatten the faces of photos into the model's UV space")
    q.add_argument("inputs", nargs="*", help="photos and/or folders of photos (sub-folders included; the outputs "
                                           "mirror the folder tree)")
    q.add_argument("--samples", action="store_true",
                   help="also flatten the built-in sample photos (from installed packages)")
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--method", choices=["landmarks", "localiser", "auto"], default="auto",
                   help="how theta is found: auto (the default: the trained localiser where it finds the face "
                        "turned 30 degrees or more, or the face mesh finds none; elsewhere the landmark fit, to the face "
                        "mesh's points blended with the localiser's; faces upside down or on their side turned "
                        "upright for the localiser), "
                        "landmarks (face mesh, dense landmark map, Levenberg-Marquardt fit, on every face) or "
                        "localiser (the face detector's box, then the trained localiser that ships in the "
                        "package: no face mesh, no fit)")
    q.add_argument("--res", type=int, default=None,
                   help="output texture side, 16 to 1024 (default: the model's R, 112); the OBJ keeps the "
                        "model's mesh, textured with the completed PNG of this side")
    q.add_argument("--size", type=int, default=IMAGE_SIZE,
                   help=f"STN input (face crop) side in px, 32 to 2048 (default {IMAGE_SIZE})")
    q.add_argument("--visibility", choices=["depth", "backface"], default="depth")
    q.add_argument("--landmarks", choices=["dense", "ibug68"], default="dense",
                   help="detector points used for fitting (default: dense, about 400)")
    q.add_argument("--max-faces", type=int, default=None,
                   help="at most this many faces per photo, main face first, at least 1 (default: all)")
    q.add_argument("--max-pixels", type=int, default=None,
                   help="refuse photos that would decode to more pixels than this (decompression-bomb guard; "
                        "default: Pillow's limit, 89.5 M); JPEGs are decoded reduced first, so the limit "
                        "applies to the reduced size, and a JPEG may declare up to twice it (a progressive one: "
                        "the limit itself)")
    q.add_argument("--no-mesh", action="store_true", help="skip the OBJ/MTL/PNG textured mesh")
    q.add_argument("--workers", type=_workers, default=None, metavar="N",
                   help="processes that share the photos, this one included, each with its own model and "
                        "detector (default: auto, one more per 200 photos not done yet, up to one per core, "
                        "one per 2 GB of available memory and 8 in all; 1 on a GPU)")
    q.add_argument("--overwrite", action="store_true",
                   help="redo every photo (without it, a rerun skips the photos already done and finishes the rest)")
    q.add_argument("--model", help="grid model .npz, or the name of a prepared model such as default_r64 or bfm2017 "
                   "(default: the prepared default model)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_flatten)


def cmd_compare(args) -> int:
    from .viz import flatten_comparison_figure

    if len(args.folders) < 2:
        raise ValueError("give at least two stn3dmm flatten output folders to compare")
    labels = args.labels.split(",") if args.labels else [str(f) for f in args.folders]
    if len(labels) != len(args.folders):
        raise ValueError(f"--labels names {len(labels)} runs, but {len(args.folders)} folders are given")
    for f in args.folders:
        if not Path(f).is_dir():
            raise ValueError(f"{f}: no such folder of stn3dmm flatten outputs")
    _log(f"wrote {flatten_comparison_figure(dict(zip(labels, args.folders)), args.out)}")
    return 0


def _add_compare(sub) -> None:
    q = sub.add_parser("compare", help="overlays of the same faces from several stn3dmm flatten runs, one figure")
    q.add_argument("folders", nargs="+", help="stn3dmm flatten output folders")
    q.add_argument("--labels", help="comma-separated names of the runs (default: the folders)")
    q.add_argument("--out", required=True, help="the figure (.png)")
    q.set_defaults(func=cmd_compare)


def _add_average(sub) -> None:
    q = sub.add_parser("average", help="visibility-weighted mean of flattened textures (one person, or one per "
                                       "folder of a tree)")
    q.add_argument("folder", help="folder of *_texture.png files written by flatten (with --by-folder: a tree of "
                                  "them, one folder per person)")
    q.add_argument("--out", required=True, help="output PNG, a coverage map written beside it (with --by-folder: "
                                                "a folder, receiving <folder>_mean.png and _mean_coverage.png for "
                                                "each folder holding textures)")
    q.add_argument("--by-folder", action="store_true",
                   help="one mean per folder of the tree (for example one per person of stn3dmm flatten people/)")
    q.add_argument("--pattern", help="file pattern (default *_texture.png; with --by-folder *_face0_texture.png, "
                                      "the main face of each photo, which is the folder's person)")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_average)


def _add_train(sub) -> None:
    q = sub.add_parser("train", help="train a localiser through the 3DMM-STN (TOML config)")
    q.add_argument("--config", help="TOML file (sections: model, localiser, stn, data, loss, optim, train)")
    q.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    q.add_argument("--resume", nargs="?", const="auto", help="continue from a checkpoint (default: the run's last)")
    q.add_argument("--force", action="store_true", help="with --resume: continue even though the configuration "
                                                        "differs from the checkpoint's (a warning lists the settings)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    q = sub.add_parser("evaluate", help="score a method: the landmark pipeline on AFLW2000-3D, or a trained "
                                        "localiser (NME by yaw, pose error, consistency)")
    q.add_argument("--method", help="comma-separated, scored in one run on AFLW2000-3D: flatten (the landmark "
                                    "pipeline of stn3dmm flatten), flatten-auto (flatten --method auto), localiser (the "
                                    "shipped localiser, or --checkpoint, "
                                    "from the benchmark's face boxes), localiser-detect (the same from our face "
                                    "detector's boxes). Default: localiser with --checkpoint, else flatten. A "
                                    "--checkpoint without --data aflw2000-3d is scored on a training-style data set "
                                    "(--data, default: its run's)")
    q.add_argument("--checkpoint", help="a training checkpoint to score instead of the shipped localiser")
    q.add_argument("--passes", type=int, default=2, help="localiser: forward passes per face, each re-cropping "
                                                         "from the last one's landmarks (default 2)")
    q.add_argument("--refiner", help="localiser: the network of one more pass after the localiser's cascade: a "
                                     "training checkpoint, or none (the localiser alone; default: the package's refiner "
                                     "for the shipped localiser, none for a --checkpoint)")
    q.add_argument("--no-mirror", action="store_true", help="localiser: do not average the final pass's theta with "
                                                            "the mirrored crop's")
    q.add_argument("--shift", type=int, help="localiser: also average the last pass's theta (the refiner's) over "
                                             "its crop shifted by this many pixels, for faces turned 30 degrees or "
                                             "more (default 3, chosen on held-out LFW people; 0: off; five times "
                                             "that pass's work)")
    q.add_argument("--data", help="data kind (default: aflw2000-3d for flatten, the training run's for a "
                                  "checkpoint): synthetic, umdfaces, 300w-lp, aflw2000-3d, folder, photos, fitted; "
                                  "or lfw-consistency (--path: one folder of photos per person; flattened "
                                  "textures within / between held-out people, for each --method)")
    q.add_argument("--path", help="the data's file or folder (AFLW2000-3D: default $STN3DMM_SHARED/data/"
                                  "aflw2000-3d, else ../shared/data/aflw2000-3d)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [data] setting")
    q.add_argument("--out", help="write the metrics as JSON here (flatten: and the figure beside it, .png)")
    q.add_argument("--figure", help="flatten: write the NME-by-yaw figure here")
    q.add_argument("--per-bucket", type=int, help="flatten: only N images of each |yaw| bucket, spread through "
                                                  "the file order (a quick run; default: all 2,000)")
    q.add_argument("--model", help="grid model .npz or prepared-model name (flatten; default: the default model)")
    q.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when available)")
    q.add_argument("--batch", type=int, default=32, help="images per forward pass (default 32)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_evaluate)


def _add_synthetic(sub) -> None:
    q = sub.add_parser("synthetic", help="render a synthetic multi-view data set to a landmark folder")
    q.add_argument("--out", required=True)
    q.add_argument("--identities", type=int, default=100)
    q.add_argument("--views", type=int, default=4)
    q.add_argument("--size", type=int, default=LOCALISER_SIZE)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--identity-offset", type=int, default=0, help="first identity number (held-out splits)")
    q.add_argument("--landmarks", choices=["aflw21", "ibug68"], default="aflw21")
    q.add_argument("--model", help="grid model .npz, or the name of a prepared model such as default_r64 or bfm2017 "
                   "(default: the prepared default model)")
    q.add_argument("--textures", metavar="DIR",
                   help="photo textures from this folder instead of the sample photos: photos (flattened here) "
                        "and/or stn3dmm flatten outputs (*_completed.png, *_texture.png; any resolution)")
    q.add_argument("--photo-fraction", type=float, default=None,
                   help="share of identities with a photo texture, 0-1 (default 0.3)")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_synthetic)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stn3dmm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    _add_prepare_model(sub)
    _add_show_model(sub)
    _add_demo(sub)
    _add_flatten(sub)
    _add_average(sub)
    _add_compare(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_synthetic(sub)
    return p


def main(argv=None) -> int:
    from .model.sources import SourceUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, SourceUnavailable, OSError) as e:
        print(f"stn3dmm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
