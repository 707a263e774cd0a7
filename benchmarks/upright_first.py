"""The up-direction network on the first crop: the cascade started from the turn it reads as up.

    python benchmarks/upright_first.py [--out /tmp/stn3dmm_large_pose] [--sets renders,...]
        [--photos 200] [--acts 0.5,0.7,0.9,0.97] [--gaps none,1,0.8] [--records R.json | --replay R.json]

``LocaliserFitter(upright_first=act)``: from a face box, where the up-direction network reads the
first crop (the box's square turned as the detector's eye keypoints have it) as more than a quarter
turn off with probability above ``act``, the cascade starts from the turn the network reads as up.
Scored on the held-out sets of ``benchmarks/upright_check.py`` (never AFLW2000-3D): the renders of
``benchmarks/large_pose.py`` (synthetic upright, heads upright, heads at any roll) and ``--photos``
held-out LFW photos as taken and made harder (blurred, shrunk, half hidden, dark). Each face is
localised as ``flatten --method auto`` localises it (the shipped fitter, its check included, then
auto's upright step), once with the first turn as given and, where the network's probability is
above the smallest ``--acts``, once from the network's turn; the rules ``(act, gap)`` are then
replayed: the second result is taken where p is above ``act`` and (unless ``gap`` is none) its
mirror gap is below ``gap`` times the first's.

Printed per set and rule: upside-down fits (eyes-to-mouth direction more than 90 degrees from the
truth's) and wrong fits (NME above 20 %) on the renders, faces turned more than 60 degrees on the
real photos, and the faces the rule changes; then the rules that leave no upright set worse, best
first (fewest upside-down fits at any roll, then fewest wrong there, then the highest act, then
the loosest gap bar).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

ROLLED = "heads1_roll-180_180"


def localise(flattener, items: list, act: float) -> list[dict]:
    """For each ``(image, face)``: the result with the first turn as given, the network's p on the
    first crop, and (where p is above ``act``) the result from the network's turn."""
    import torch

    from stn3dmm.fitting.localiser import face_turn

    fitter = flattener.localiser
    images, faces = [im for im, _ in items], [f for _, f in items]

    def run(sel: list, first) -> list:
        shipped, fitter.upright_first = fitter.upright_first, first
        sub = [items[k] for k in sel]
        try:
            return flattener._upright(sub, fitter.from_faces([im for im, _ in sub], [f for _, f in sub]))
        finally:
            fitter.upright_first = shipped

    turn = lambda r: face_turn(torch.as_tensor(r.theta[None]), [r.angle])[0]      # noqa: E731
    given = [f.upright_turn(fitter.turns, fitter.turn_within) for f in faces]
    p, _ = fitter.first_reading(images, [f.bbox for f in faces], given)
    rows = [dict(p=float(p[k]), fit=r.points68, turn=turn(r), gap=float(r.mirror_gap))
            for k, r in enumerate(run(list(range(len(items))), None))]
    redo = [k for k in range(len(items)) if p[k] > act]
    for k, r in zip(redo, run(redo, -1.0) if redo else []):
        rows[k].update(again=r.points68, again_turn=turn(r), again_gap=float(r.mirror_gap))
    return rows


def render_set(folder: Path, flattener, act: float) -> list[dict]:
    from upright_check import render_set as records

    return records(folder, flattener, act, localise)


def real_sets(flattener, lfw: Path, n: int, act: float) -> dict:
    from upright_check import real_sets as records

    return records(flattener, lfw, n, act, localise)


def counts(rows: list[dict], rule) -> dict:
    """What the rule ``(act, gap)`` leaves (``upright_check.tally``): the result from the network's
    turn where p is above ``act`` (None: never) and its mirror gap below ``gap`` times the first's
    (None: always)."""
    from upright_check import tally

    act, gap = rule
    return tally(rows, lambda r: (act is not None and r["p"] > act and "again" in r
                                  and (gap is None or r["again_gap"] < gap * r["gap"])))


def title(rule) -> str:
    act, gap = rule
    return "off" if act is None else f"act {act:g}" + ("" if gap is None else f", gap {gap:g}")


def report(name: str, rows: list[dict], rules: list) -> None:
    from upright_check import report as show

    show(name, rows, rules, counts, title, "started again from the network's turn", 24)


def choose(every: dict, rules: list) -> None:
    """``upright_check.choose`` of these rules."""
    from upright_check import choose as best

    best(every, rules, ROLLED, counts, title, 24)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from upright_check import set_options

    set_options(ap, gaps="none,1,0.8")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    acts = [float(v) for v in args.acts.split(",")]
    rules = [(None, None)] + [(a, None if g == "none" else float(g)) for a in acts for g in args.gaps.split(",")]
    from upright_check import replay_or_record

    replay_or_record(args, min(acts), render_set, real_sets, lambda name, rows: report(name, rows, rules),
                     lambda every: choose(every, rules))


if __name__ == "__main__":
    main()
