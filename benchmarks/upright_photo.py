"""A lean towards the photo's own up: fits that stand a face upside down in its photo, tried the other way up.

    python benchmarks/upright_photo.py [--out /tmp/stn3dmm_large_pose]
        [--sets renders,heads1_roll0_0,heads3_yaw60,heads1_roll-180_180] [--photos 200]
        [--beyond 90,120] [--takes 0.5,0.3,0.1,none] [--least 0,0.05,0.2] [--gaps none,2,1.5,1,0.75,0.5]
        [--records R.json | --replay R.json]

Most photos are taken upright, yet the up-direction network reads an upside-down profile less
surely than an upright frontal face, and the sweep can turn an upright profile over. The rule
scored here: where a result stands its face more than ``beyond`` degrees from the photo's up, the
face is localised again (a cascade of ``sweep_passes`` passes) from its square turned by a half
turn, and that try is taken where it stands the face within a quarter turn of the photo's up, the
up-direction network reads it as off with probability below ``take`` (none: not asked), its
reading of the first result was at least ``least``, and the localiser is surer of the try (mirror
gap below ``gap`` times the first's; none: no such bar).

Every face our detector finds on the held-out sets (never AFLW2000-3D) is localised as ``flatten
--method auto`` does it, with everything on; the faces beyond the smallest ``--beyond`` get their
try, and the rules are replayed on the records. The sets: those of ``benchmarks/upright_check.py``,
and ``heads3_yaw60``, the held-out people's head renders at |yaw| 60-90, upright (``python
benchmarks/large_pose.py --set heads --views 3 --yaw-min 60 --variants ''``). Printed per set and
rule as ``upright_check.py`` prints them, then the rules that leave no set worse than off, the
fewest upside-down fits on the upright render sets first.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from _common import ROOT
from upright_check import real_sets, render_set, replay_or_record, report, set_options, tally

sys.path.insert(0, str(ROOT / "src"))

UPRIGHT_SETS = ("renders", "heads1_roll0_0", "heads3_yaw60")


def localise(flattener, items: list, beyond: float) -> list[dict]:
    """For each ``(image, face)``: auto's result, the network's p of it, and, where it stands the
    face more than ``beyond`` degrees from the photo's up, the try from the half turn (its turn, gap
    and the network's p of it, ``q``)."""
    from stn3dmm.fitting.localiser import result_turns

    fitter, images = flattener.localiser, [im for im, _ in items]
    found = flattener._upright(items, fitter.from_faces(images, [f for _, f in items]))
    p, _ = fitter.up_direction(images, found)
    rows = [dict(p=float(p[k]), fit=r.points68, turn=t, gap=float(r.mirror_gap))
            for k, (r, t) in enumerate(zip(found, result_turns(found)))]
    far, _, again = fitter.lean_tries(images, found, beyond, least=-math.inf)    # every face beyond: the rules replay least
    q = fitter.up_direction([images[k] for k in far], again)[0] if far else []
    for k, r, t, qk in zip(far, again, result_turns(again), q):
        rows[k].update(q=float(qk), again=r.points68, again_turn=t, again_gap=float(r.mirror_gap))
    return rows


def taken(row: dict, rule) -> bool:
    beyond, take, least, gap = rule
    return (beyond is not None and "again" in row and abs(row["turn"]) > math.radians(beyond)
            and abs(row["again_turn"]) < math.pi / 2 and (take is None or row["q"] < take) and row["p"] >= least
            and (gap is None or row["again_gap"] < gap * row["gap"]))


def counts(rows: list[dict], rule) -> dict:
    return tally(rows, lambda r: taken(r, rule))


def title(rule) -> str:
    beyond, take, least, gap = rule
    return "off" if beyond is None else (f"beyond {beyond:g}, " + ("" if take is None else f"take {take:g}, ")
                                         + f"least {least:g}"
                                         + ("" if gap is None else f", gap {gap:g}"))


def choose(every: dict, rules: list) -> None:
    """The rules that leave no set worse than off (no more upside-down or wrong fits on any render
    set, no more faces turned on any real set), best first: fewest upside-down fits on the upright
    render sets, then fewest wrong there, then the most cautious (highest beyond, lowest take,
    highest least, tightest gap)."""
    off = {name: counts(rows, rules[0]) for name, rows in every.items()}
    fine = []
    for rule in rules[1:]:
        c = {name: counts(rows, rule) for name, rows in every.items()}
        if any(c[n][k] > off[n][k] for n in c for k in c[n] if k != "changed"):
            continue
        up = [c[n] for n in UPRIGHT_SETS if n in c]
        beyond, take, least, gap = rule
        fine.append((sum(x["upside down"] for x in up), sum(x["wrong"] for x in up), -beyond, take or 2, -least,
                     gap or 1e9, rule))
    up_off = [off[n] for n in UPRIGHT_SETS if n in off]
    print(f"\n== rules that leave no set worse ({len(fine)} of {len(rules) - 1}), best first; off: "
          f"{sum(x['upside down'] for x in up_off)} upside down, {sum(x['wrong'] for x in up_off)} wrong "
          f"on the upright render sets")
    for down, wrong, *_, rule in sorted(fine)[:12]:
        print(f"{title(rule):<44}{down:>14}{wrong:>14}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    set_options(ap, gaps="none,2,1.5,1,0.75,0.5")
    ap.set_defaults(sets="renders,heads1_roll0_0,heads3_yaw60,heads1_roll-180_180")
    ap.add_argument("--beyond", default="90,120", help="degrees from the photo's up")
    ap.add_argument("--takes", default="0.5,0.3,0.1,none", help="the network's p of the try below this (none: "
                                                                  "not asked)")
    ap.add_argument("--least", default="0,0.05,0.2")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    floats = lambda s: [None if v == "none" else float(v) for v in s.split(",")]     # noqa: E731
    rules = [(None, None, None, None)] + [(b, t, m, g) for b in floats(args.beyond) for t in floats(args.takes)
                                          for m in floats(args.least) for g in floats(args.gaps)]
    first = min(floats(args.beyond))
    replay_or_record(args, first,
                     lambda folder, fl, b: render_set(folder, fl, b, localise),
                     lambda fl, lfw, n, b: real_sets(fl, lfw, n, b, localise),
                     lambda name, rows: report(name, rows, rules, counts, title, width=44),
                     lambda every: choose(every, rules))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
