"""The up-direction network's check of the localiser's results, its thresholds scored on held-out sets.

    python benchmarks/upright_check.py [--out /tmp/stn3dmm_large_pose] [--sets renders,heads1_roll0_0,...]
        [--photos 200] [--acts 0.5,0.7,0.9,0.97] [--takes 0.5,0.3,0.1] [--records R.json]

The sets are held out (never AFLW2000-3D): the renders of ``benchmarks/large_pose.py`` (the
synthetic renders, ``renders``; the held-out people's head renders upright, ``heads1_roll0_0``,
and at any roll, ``heads1_roll-180_180``), and ``--photos`` of the held-out people's real photos,
upright, as taken and made harder as ``benchmarks/localiser_roll.py`` makes them (blurred,
shrunk, half hidden, dark). Every face our detector finds is localised as ``flatten --method
auto`` localises it (from the detector's face, then auto's upright step) with the check off; the
network then reads each result (``LocaliserFitter.upright_tries``), and every face it reads as off
with probability above the smallest ``--acts`` is localised again as the check would. The rules
``(act, take)`` are then replayed on these records: the check replaces a result where its ``p`` is
above ``act`` and the new result's below ``take``.

Printed per set and rule: faces fitted upside down (the direction from the eyes to the mouth more
than 90 degrees from the truth's), fitted wrongly (NME above 20 % of the true box's sqrt(w h)),
and the faces the rule changes; for the real photos, which have no truth, faces turned more than
60 degrees from upright. The replay runs the check after auto's upright step; the fitter runs it
inside every localisation, before that step, so a chosen rule is confirmed by
``benchmarks/upside_down.py`` run with it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

from stn3dmm.photos.crop import landmark_turn  # noqa: E402


def truth_reading(folder: Path, net) -> str:
    """The network alone on each render's crop framed and turned upright by its true 68 points:
    the median and 90th percentile of its angle error, and how many it reads as off (p above 0.5
    and 0.9)."""
    import torch

    from large_pose import SyntheticSet

    from stn3dmm.nets.upright import CONTEXT, SIZE, p_upside_down, up_angle
    from stn3dmm.photos import read_photo
    from stn3dmm.photos.crop import crop_square, landmark_square

    data, crops = SyntheticSet(folder), []
    for i in range(len(data.names)):
        truth = data.reannotated[i]
        c, s = landmark_square(truth, "ibug68")
        crop, _ = crop_square(read_photo(data.image_path(i)).image, c, s * CONTEXT, SIZE,
                              angle=landmark_turn(truth))
        crops.append(torch.from_numpy(crop).permute(2, 0, 1))
    with torch.no_grad():
        logits = torch.cat([net(torch.stack(crops[k:k + 256])) for k in range(0, len(crops), 256)])
    err, p = up_angle(logits).abs().rad2deg(), p_upside_down(logits)
    return (f"the network on the true upright crops of {len(crops)}: angle error median {float(err.median()):.1f}, "
            f"90th percentile {float(err.quantile(0.9)):.1f} degrees; read as off: {int((p > 0.5).sum())} "
            f"(p > 0.5), {int((p > 0.9).sum())} (p > 0.9)")


def localise(flattener, items: list, act: float) -> list[dict]:
    """For each ``(image, face)``: the result with the check off, the network's p, and the try
    where p is above ``act`` (its face turn and p)."""
    import torch

    from stn3dmm.fitting.localiser import face_turn

    fitter, net = flattener.localiser, flattener.localiser.upright
    fitter.upright = None
    found = flattener._upright(items, fitter.from_faces([im for im, _ in items], [f for _, f in items]))
    fitter.upright = net
    p, redo, again, q = fitter.upright_tries([im for im, _ in items], found, act)
    turn = lambda r: face_turn(torch.as_tensor(r.theta[None]), [r.angle])[0]      # noqa: E731
    rows = [dict(p=float(p[k]), fit=r.points68, turn=turn(r), gap=float(r.mirror_gap)) for k, r in enumerate(found)]
    for k, r, qk in zip(redo, again, q):
        rows[k].update(q=float(qk), again=r.points68, again_turn=turn(r), again_gap=float(r.mirror_gap))
    return rows


def render_set(folder: Path, flattener, act: float, localise_faces=None) -> list[dict]:
    """One record per render whose face our detector finds, by ``localise_faces`` (default
    :func:`localise`), with the truth's turn, the fits' turns and NMEs."""
    from large_pose import SyntheticSet
    from localiser_roll import nme

    from stn3dmm.evaluation.methods import LocaliserMethod
    from stn3dmm.photos import read_photo

    data, rows = SyntheticSet(folder), []
    finder = LocaliserMethod(flattener.localiser, "detect", detector=flattener.detector)
    for i in range(len(data.names)):
        image = read_photo(data.image_path(i)).image
        face = finder._detected_face(image, data.face_square(i))
        if face is None:
            continue
        row = (localise_faces or localise)(flattener, [(image, face)], act)[0]
        truth = data.reannotated[i]
        row.update(name=data.names[i], truth=landmark_turn(truth), down=landmark_turn(row["fit"]),
                   nme=float(nme(data, [i], row["fit"][None])[0]))
        if "again" in row:
            row.update(again_down=landmark_turn(row["again"]), again_nme=float(nme(data, [i], row["again"][None])[0]))
        rows.append(row)
    return rows


def held_out_faces(flattener, lfw: Path, n: int) -> list:
    """``(image, main face)`` of the first ``n`` held-out people's photos (every third) where our
    detector finds one."""
    from stn3dmm.photos import detect_faces, read_photo
    from stn3dmm.training.data.fitted import held_out

    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    photos = [f for p, v in zip(people, held_out(people)) if v for f in sorted((lfw / p).glob("*.jpg"))][1::3][:n]
    faces = []
    for f in photos:
        image = read_photo(f).image
        found = [x for x in detect_faces(image, flattener.detector) if not x.tiny]
        faces += [(image, found[0])] if found else []
    return faces


def real_sets(flattener, lfw: Path, n: int, act: float, localise_faces=None) -> dict:
    """Records of the held-out real faces (:func:`held_out_faces`) as taken and made harder as
    ``localiser_roll.py`` makes them, by ``localise_faces`` (default :func:`localise`), 16 at a time."""
    from localiser_roll import DEGRADED, degrade

    faces, out, localise_with = held_out_faces(flattener, lfw, n), {}, localise_faces or localise
    for how in DEGRADED:
        items = [(degrade(image, how, face.bbox), face) for image, face in faces]
        out[f"real, {how}"] = [r for k in range(0, len(items), 16) for r in localise_with(flattener, items[k:k + 16], act)]
    return out


def counts(rows: list[dict], rule) -> dict:
    """What a rule ``(act, take, gap)`` leaves (:func:`tally`)."""
    act, take, gap = rule
    return tally(rows, lambda r: (act is not None and r["p"] > act and "again" in r and r["q"] < take
                                  and (gap is None or r["again_gap"] < gap * r["gap"])))


def tally(rows: list[dict], taken) -> dict:
    """Upside-down and wrong fits (renders: NME above 20 %) or faces turned more than 60 degrees
    (real photos) where each record keeps its first result or, where ``taken(record)``, its new
    one; and how many results are changed."""
    from stn3dmm.photos.detect import turn_apart

    out = dict.fromkeys(("turned",) if "truth" not in rows[0] else ("upside down", "wrong"), 0)
    out["changed"] = 0
    for r in rows:
        new = bool(taken(r))
        out["changed"] += new
        if "turned" in out:
            out["turned"] += abs(math.degrees(r["again_turn" if new else "turn"])) > 60
        else:
            out["upside down"] += turn_apart(r["again_down" if new else "down"], r["truth"]) > math.pi / 2
            out["wrong"] += r["again_nme" if new else "nme"] > 20
    return out


def title(rule) -> str:
    act, take, gap = rule
    return "off" if act is None else f"act {act:g}, take {take:g}" + ("" if gap is None else f", gap {gap:g}")


def report(name: str, rows: list[dict], rules: list, score=None, name_of=None, tried: str = "tried again",
           width: int = 36) -> None:
    """Each rule's :func:`counts` (or ``score(rows, rule)``) on one set, a line each, named by
    :func:`title` (or ``name_of(rule)``)."""
    score, name_of = score or counts, name_of or title
    print(f"\n== {name}: {len(rows)} faces, {sum('again' in r for r in rows)} {tried}")
    head = list(score(rows, rules[0]))
    print(f"{'rule':<{width}}" + "".join(f"{h:>14}" for h in head))
    for rule in rules:
        print(f"{name_of(rule):<{width}}" + "".join(f"{v:>14}" for v in score(rows, rule).values()))


def choose(every: dict, rules: list, rolled: str = "heads1_roll-180_180", score=None, name_of=None,
           width: int = 36) -> None:
    """The rules (``rules[0]`` off, each with its act first and its gap bar last) that leave no
    held-out set worse than off (no more faces turned on any real set; no more upside-down or wrong
    fits on any upright render set), best first: fewest upside-down fits at any roll, then fewest
    wrong there, then the highest act, then the loosest gap bar. ``score``, ``name_of``: as for
    :func:`report`."""
    score, name_of = score or counts, name_of or title
    off = {name: score(rows, rules[0]) for name, rows in every.items()}
    fine = []
    for rule in rules[1:]:
        c = {name: score(rows, rule) for name, rows in every.items()}
        worse = any(c[n][k] > off[n][k] for n in c if n != rolled for k in c[n] if k != "changed")
        if not worse:
            at_roll = c.get(rolled, {"upside down": 0, "wrong": 0})
            fine.append((at_roll["upside down"], at_roll["wrong"], -rule[0], -(rule[-1] or 1e9), rule))
    print(f"\n== rules that leave no other set worse ({len(fine)} of {len(rules) - 1}), best first; "
          f"off: {off.get(rolled)} at any roll")
    for down, wrong, *_, rule in sorted(fine)[:12]:
        print(f"{name_of(rule):<{width}}{down:>14}{wrong:>14}")


def set_options(ap, gaps: str) -> None:
    """The options :func:`record_sets` reads, the rules' ``--acts`` and ``--gaps`` (default ``gaps``),
    ``--replay`` and ``--records``."""
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose", help="where large_pose.py wrote its renders")
    ap.add_argument("--sets", default="renders,heads1_roll0_0,heads1_roll-180_180")
    ap.add_argument("--photos", type=int, default=200, help="held-out real photos (0: none)")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--acts", default="0.5,0.7,0.9,0.97")
    ap.add_argument("--gaps", default=gaps, help="the new result's mirror gap must also be below this times the "
                                                 "first's (none: no such bar)")
    ap.add_argument("--replay", help="score the rules on these records (--records of an earlier run) instead")
    ap.add_argument("--records", help="also write the records to this JSON")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    set_options(ap, gaps="none,2,1.5,1")
    ap.add_argument("--takes", default="0.5,0.3,0.1")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    acts, takes = [float(v) for v in args.acts.split(",")], [float(v) for v in args.takes.split(",")]
    gaps = [None if v == "none" else float(v) for v in args.gaps.split(",")]
    rules = [(None, None, None)] + [(a, t, g) for a in acts for t in takes for g in gaps]
    replay_or_record(args, min(acts), render_set, real_sets, lambda name, rows: report(name, rows, rules),
                     lambda every: choose(every, rules), truth_reading)


def replay_or_record(args, act: float, render, real, show, best, read_truth=None) -> None:
    """The records of ``--replay``, each set shown by ``show(name, rows)``, or new ones
    (:func:`record_sets`); then ``best(every)``."""
    if args.replay:
        every = json.loads(Path(args.replay).read_text())
        for name, rows in every.items():
            show(name, rows)
    else:
        every = record_sets(args, act, render, real, show, read_truth)
    best(every)


def record_sets(args, act: float, render, real, show, read_truth=None) -> dict:
    """The records of every set ``args`` names (``--sets`` renders under ``--out``, ``--photos``
    real photos of ``--lfw``) by ``render(folder, flattener, act)`` and ``real(flattener, lfw, n,
    act)``, each set shown by ``show(name, rows)`` as it is done, and written to ``--records`` after
    every set (a run stopped later keeps what it did); ``read_truth(folder, net)``: a line printed
    before each render set."""
    from stn3dmm.flatten import Flattener
    from stn3dmm.model import load_model

    flattener = Flattener(load_model(), method="auto")
    if flattener.localiser.upright is None:
        sys.exit("the package holds no up-direction network (src/stn3dmm/nets/weights/upright.pt)")
    every = {}

    def keep(name: str, rows: list) -> None:
        every[name] = rows
        show(name, rows)
        if args.records:
            clean = {k: [{a: (b.tolist() if isinstance(b, np.ndarray) else b) for a, b in r.items()} for r in v]
                     for k, v in every.items()}
            Path(args.records).write_text(json.dumps(clean))

    for name in [s for s in args.sets.split(",") if s]:
        folder = Path(args.out) / name
        if not (folder / "done").exists():
            sys.exit(f"{folder}: not made yet (python benchmarks/large_pose.py, see its docstring)")
        if read_truth is not None:
            print(f"\n{name}: " + read_truth(folder, flattener.localiser.upright), flush=True)
        keep(name, render(folder, flattener, act))
    if args.photos:
        for name, rows in real(flattener, Path(args.lfw), args.photos, act).items():
            keep(name, rows)
    return every


if __name__ == "__main__":
    main()
