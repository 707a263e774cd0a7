"""Fitting by regression: a trained localiser's theta for faces in photos, batched, in one or two passes.

Owns :class:`LocaliserFitter` and :class:`LocalisedFace`, and :func:`load_localiser` (the
localiser that ships in the package, with its card: :mod:`stn3dmm.nets.shipped`).

The localiser saw its training faces framed by :func:`~stn3dmm.photos.crop.landmark_square` of
their 68 iBUG points (plus jitter). A first pass crops from what the caller knows: a square
(:meth:`LocaliserFitter.from_squares`) or a face box (:meth:`LocaliserFitter.from_boxes`, turned
into the square its 68 points would have with the detector's calibration on the card). Each
further pass (``passes``, default 2) re-crops from the 68 points the previous pass predicted, as
3DDFA's cascade does, so the final crop is framed as in training whatever the box was, and turned
by the roll that pass predicted (``deroll``, :func:`face_turn`), so that it stands upright as in
training whatever the face's roll in the photo. The final
pass also predicts theta for the crop's mirror image and averages the two (``mirror``, default on;
:func:`mirror_average`): on the held-out LFW people this lowered the selection score from 2.07 to
1.89 (face renders) and from 2.17 to 1.99 (head renders), for one more image per face in the
final pass's batch (docs/training.md, "Test-time mirror averaging"). How far the two predictions
lie apart, the mirror gap (:meth:`LocaliserFitter.mirror_gap`), comes with each face: a measure of
how sure the network is of the crop, which ``flatten --method auto`` uses to check the face
mesh's reading of a face's turn, and the fitter itself to find a face lying beyond the rolls the
network learned: where the gap is large, the cascade runs again from the first crop turned by
each eighth of a turn, and the surest result is taken if the network is sure of it (``sweep``,
:meth:`LocaliserFitter._sweep`).
Where the package holds a refiner (a second network trained on crops framed as a cascade's result
frames them, ``refiner``, :meth:`LocaliserFitter._refine`), each result gets one more pass, the
refiner's, on the crop re-framed from it; the mirror gap stays the localiser's.
Last, a second small network that reads which way is up in a face crop
(:mod:`stn3dmm.nets.upright`, ``upright``) checks every result: a face it reads as upside down is
localised again turned its way, and the new result taken where it reads that as upright and the
localiser is surer of it (:meth:`LocaliserFitter.check_upright`). Most photos are taken upright, so
a result that stands its face upside down in the photo, and that the network doubts at all, is
tried the other way up, and the try taken where it stands the face upright
(:meth:`LocaliserFitter.lean_upright`).
Averaging also over the last
pass's crop (the refiner's where there is one) shifted by a few pixels (``shift``,
:func:`shifted_crops`) lowers the error a little more, for five times that pass: the shipped
localiser does it for faces turned 30 degrees or more (``shift_yaw``), so frontal faces pay nothing.

A face turned in the photo (upside down, or on its side) is cropped turned upright when the caller
gives its turn (``angles``, e.g. :meth:`~stn3dmm.photos.detect.Face.upright_turn`; off by default
for detected faces, see :data:`TURNS`): every square is framed in the face's own upright frame, so
theta is in a crop where the face stands as in training.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from ..nets.inference import fold_batch_norm
from ..nets.runtime import OnnxNetwork
from ..photos.crop import CropTransform, crop_square, landmark_square, landmark_square_of_box
from ..photos.detect import box_iou, turn_apart
from ..stn.flip import flip_images, flip_theta
from ..stn.layers import grid_generator
from ..stn.pose import pose_from_theta


#: Crops of detected faces can be turned upright by a multiple of ``2 pi / TURNS`` where the
#: detector's eye line is within TURN_WITHIN of it (:meth:`LocaliserFitter.from_faces`). Off by
#: default (1: never turned). Half turns within 30 degrees were chosen on the held-out LFW head
#: renders (upside-down renders 68.6 -> 34.8 % NME, upright ones unchanged), but on AFLW2000-3D
#: they turned four real profiles (|yaw| 80-86) whose detector eye line points upside down, and
#: fixed neither upside-down photo; that test result, not a tuning set, turned them off
#: (docs/benchmarks.md, "Faces turned in the photo"). ``turns=2`` turns them on.
TURNS = 1
TURN_WITHIN = math.radians(30.0)
#: The shift of test-time shift averaging: :func:`load_localiser`'s default, for the faces turned
#: :data:`SHIFT_YAW` or more (a bare :class:`LocaliserFitter` has it off: ``shift=0``). Chosen on
#: the held-out LFW people among 3 px shifts, 0.93/1.07 zooms and both with 4 px, then 2 and 3 px
#: on the refiner's pass (docs/training.md, "Test-time shift averaging").
SHIFT = 3
#: Shift averaging (``shift``) applies to a face only where the pass before reads it turned at least
#: this many degrees of |yaw| (``shift_yaw``; 0: every face). Its gain on the held-out head renders
#: was the same at every yaw (docs/training.md, "Shift averaging where the face is turned"), so a
#: switch costs in proportion to the faces it spares; 30 is ``flatten --method auto``'s own switch,
#: below which auto keeps the landmark fit.
SHIFT_YAW = 30.0
#: A face whose final mirror gap is above SWEEP_GAP is localised again from its first square
#: turned by each other multiple of ``2 pi / SWEEP_TURNS`` (each try SWEEP_PASSES passes), and the
#: surest try (smallest gap) taken where its gap is below SWEEP_SURE and another try ends within
#: SWEEP_AGREE degrees of its turn with a gap below SWEEP_SURE too (:meth:`LocaliserFitter._sweep`):
#: faces lying on their side or upside down. Tries started from neighbouring turns of such a face
#: converge on one upright crop; on a blurred, dark or half-hidden upright face the network is
#: unsure at every turn, and where one try is sure by chance, no other agrees. The third pass lets
#: a try started roughly upright be derolled and re-framed. Chosen on the held-out LFW people (head
#: renders at any roll from our detector's box and from the true square; their photos as taken
#: and degraded; ``benchmarks/localiser_roll.py``; docs/benchmarks.md, "The localiser at any roll"
#: and "From our detector's box at any roll").
SWEEP_TURNS = 8
SWEEP_GAP = 0.02
SWEEP_SURE = 0.02
SWEEP_AGREE = 20.0
SWEEP_PASSES = 3
#: ... and, with ``sweep_far``, a try that turns the face more than a quarter turn from where the
#: cascade left it is taken only where its gap is also below that share of the cascade's: the
#: sweep's false turns of upright faces are nearly all half turns. 0.75 was chosen on the held-out
#: people: it lost no rolled face there and spared some upright ones (docs/training.md, "A bar for
#: far turns"); None turns the bar off.
SWEEP_FAR = 0.75
#: The refiner learned crops framed within these of the 68 points' square: centre (fraction of
#: the side), side (log) and turn (degrees): ``data.shift``, ``data.scale_jitter`` and
#: ``data.roll_range`` of ``configs/lfw_localiser_refine.toml``. Where re-framing a cascade's result
#: for the refiner's pass moves a face's square further than that (the centre by its distance), the
#: cascade had not yet framed the face within them, and the localiser takes one more pass first.
REFINER_FRAMING = (0.03, 0.05, 10.0)
#: The up-direction network's check of each result (``upright``, :meth:`LocaliserFitter.check_upright`):
#: where it reads a result's face as more than a quarter turn from how the result stands it, with
#: probability above UPRIGHT_ACT, the face is localised again from its square turned the way the
#: network reads as up, and the new result is taken where the network reads it as off with
#: probability below UPRIGHT_TAKE and the localiser is surer of it: its mirror gap below UPRIGHT_GAP
#: times the first's. Chosen on the held-out sets by ``benchmarks/upright_check.py`` (the fewest
#: upside-down fits at any roll, 59 -> 30 of 915, of the rules that turned no upright render or real
#: photo wrongly; docs/benchmarks.md, "The up-direction network").
UPRIGHT_ACT = 0.5
UPRIGHT_TAKE = 0.1
UPRIGHT_GAP = 1.0
#: The same network on the first crop (``upright_first``, :meth:`LocaliserFitter.first_turns`): from a
#: face box, where it reads the box's crop as more than a quarter turn off with probability above
#: UPRIGHT_FIRST, the cascade starts from the turn it reads as up. Chosen on the held-out sets by
#: ``benchmarks/upright_first.py``: the only bar of 0.5, 0.7, 0.9 and 0.97 that turned no upright
#: render or real photo wrongly; upside-down fits at any roll 30 -> 28 of 915 (docs/benchmarks.md,
#: "The up-direction network on the first crop").
UPRIGHT_FIRST = 0.97
#: The lean towards the photo's up (:meth:`LocaliserFitter.lean_upright`): a result that stands its
#: face more than LEAN_BEYOND degrees from the photo's up, and that the up-direction network reads as
#: off with probability LEAN_LEAST or more, is localised again from its square turned by a half turn,
#: and the try is taken where it stands the face within a quarter turn of the photo's up. The
#: mirror gap is not asked: on upright profiles the localiser can be surer of the upside-down fit.
#: Chosen on the held-out sets by ``benchmarks/upright_photo.py``: upside-down fits of upright
#: renders 3 -> 0 of 4,276, at any roll 27 -> 26 of 915 (docs/benchmarks.md, "A lean towards the
#: photo's up").
LEAN_BEYOND = 120.0
LEAN_LEAST = 0.2
#: What can run the package's networks (:func:`load_localiser`'s ``engine``).
ENGINES = ("auto", "onnx", "torch")


@dataclass
class LocalisedFace:
    """One face's result: theta in the final crop, and where that crop lies in the photo."""

    theta: np.ndarray           #: (P,) theta in the crop (crop px, ``exp`` scale)
    transform: CropTransform    #: photo px -> the crop's px
    points68: np.ndarray        #: (68, 2) the model's iBUG-68 vertices projected, photo px
    square: tuple               #: (centre (2,), side) of the crop in photo px
    angle: float = 0.0          #: the crop's turn in the photo, radians (``crop_square(angle=)``)
    #: the network's disagreement with itself (:meth:`LocaliserFitter.mirror_gap`; NaN without mirror)
    mirror_gap: float = float("nan")


class LocaliserFitter:
    """A trained localiser with the model it predicts for: photos and face squares in, theta out.

    Args:
        net: a :class:`~stn3dmm.nets.localiser.Localiser` (its ``image_size`` is the crop side), or
            its ONNX graph (:class:`~stn3dmm.nets.runtime.OnnxNetwork`, on the CPU).
        model: the grid morphable model of its theta.
        n_id, n_exp: coefficients in its theta.
        passes: forward passes per face (1: the given square only).
        mirror: on the final pass, average theta with the mirrored crop's, mirrored back.
        shift: on the last pass (the refiner's where there is one), also average over the crop
            shifted by this many of its pixels left, right, up and down (:func:`shifted_crops`; 0:
            off, the default). Five times that pass's work for a lower error; :data:`SHIFT` is the
            chosen shift.
        shift_yaw: shift averaging only for faces the pass before reads at this |yaw| or more
            (degrees; 0: every face; :data:`SHIFT_YAW`).
        turns, turn_within: :meth:`from_faces` crops a face turned upright by a multiple of
            ``2 pi / turns`` where its eye line is within ``turn_within`` of it
            (:meth:`~stn3dmm.photos.detect.Face.upright_turn`; ``turns`` 1: never turned).
        box_framing: ``(k, fx, fy)``: a face box of longer side d and centre c gives the 68
            points' box of side ``k d`` centred on ``c + (fx, fy) d`` (:meth:`from_boxes`).
        deroll: each pass after the first crops the face turned by the roll the pass before
            predicted (:func:`face_turn`), so that the final crop shows it unrolled, as far as
            the network can tell.
        sweep, sweep_gap, sweep_sure, sweep_agree: where the final mirror gap is above
            ``sweep_gap``, try the first crop turned by each multiple of ``2 pi / sweep``, and take
            the surest where its gap is below ``sweep_sure`` and another try as sure ends within
            ``sweep_agree`` degrees of it (None: the surest alone; ``sweep`` 1: never;
            :meth:`_sweep`), each try taking ``sweep_passes`` passes.
        sweep_far: a try turning the face more than a quarter turn from the cascade's result must
            also have a gap below this share of the result's (None: no such bar; :data:`SWEEP_FAR`).
        redetect: from a face box (:meth:`from_boxes`), a try at a quarter turn starts from the
            face detector's box of the face in the photo so turned (a detector of its own, made
            on first use: the fitter is not for several threads).
        refiner: a second network (torch or ONNX) of the same input size for one more pass after each cascade of
            two or more passes, on the crop re-framed from its result (:meth:`_refine`), trained on
            crops framed as such a pass sees them (``configs/lfw_localiser_refine.toml``); None:
            ``net`` alone. The mirror gap stays ``net``'s.
        refiner_framing: (centre, side, turn degrees) the refiner learned; a face whose square
            moves further before its pass takes one more pass of ``net`` (:data:`REFINER_FRAMING`).
        upright: the up-direction network (:class:`~stn3dmm.nets.upright.UprightNet`) that checks
            each result (:meth:`check_upright`); None: no check.
        upright_act, upright_take, upright_gap: its bars (:data:`UPRIGHT_ACT`, :data:`UPRIGHT_TAKE`,
            :data:`UPRIGHT_GAP`; None: no mirror-gap bar).
        upright_first: from a face box (:meth:`from_boxes`), where the up-direction network reads the
            face of the first crop as more than a quarter turn off with probability above this,
            the cascade starts from the box turned the way it reads as up (:meth:`first_turns`;
            :data:`UPRIGHT_FIRST`); None: the first crop as the caller turns it.
        lean_beyond, lean_least: the lean towards the photo's up (:meth:`lean_upright`;
            :data:`LEAN_BEYOND` degrees, :data:`LEAN_LEAST`); ``lean_beyond`` None: no lean.
        device: where the network runs; ``batch``: faces per forward pass.
        card: the shipped model's card, when it is one.
    """

    def __init__(self, net, model, n_id: int, n_exp: int, *, passes: int = 2, mirror: bool = True, shift: int = 0,
                 shift_yaw: float = SHIFT_YAW,
                 turns: int = TURNS, turn_within: float = TURN_WITHIN, box_framing=(1.0, 0.0, 0.0),
                 deroll: bool = True, sweep: int = SWEEP_TURNS, sweep_gap: float = SWEEP_GAP,
                 sweep_sure: float = SWEEP_SURE, sweep_agree: float | None = SWEEP_AGREE,
                 sweep_passes: int = SWEEP_PASSES, sweep_far: float | None = SWEEP_FAR, redetect: bool = True,
                 refiner=None,
                 refiner_framing=REFINER_FRAMING, upright=None, upright_act: float = UPRIGHT_ACT,
                 upright_take: float = UPRIGHT_TAKE, upright_gap: float | None = UPRIGHT_GAP,
                 upright_first: float | None = UPRIGHT_FIRST, lean_beyond: float | None = LEAN_BEYOND,
                 lean_least: float = LEAN_LEAST, device="cpu",
                 batch: int = 64, card: dict | None = None):
        from ..stn import MorphableSTN

        if min(passes, sweep_passes) < 1:
            raise ValueError(f"passes and sweep_passes must be at least 1, got {passes} and {sweep_passes}")
        self.device = torch.device(device)
        self.net = self._ready(net)
        self.size = int(net.image_size[0])
        if refiner is not None and int(refiner.image_size[0]) != self.size:
            raise ValueError(f"the refiner's input is {int(refiner.image_size[0])} px, the localiser's {self.size} px")
        self.refiner = None if refiner is None else self._ready(refiner)
        self.refiner_framing = tuple(float(v) for v in refiner_framing)
        self.stn = MorphableSTN(model, landmarks="ibug68", n_id=n_id, n_exp=n_exp, max_outside=None).to(self.device)
        idx = self.stn.landmark_index       # the 68 vertices' rows: the fitter projects nothing else
        self._rows = (self.stn.mean[idx], self.stn.basis_id[:, idx], self.stn.basis_exp[:, idx])
        self.passes, self.mirror, self.batch, self.card = int(passes), bool(mirror), int(batch), card
        if shift < 0:
            raise ValueError(f"shift must be 0 or more pixels, got {shift}")
        self.shift, self.shift_yaw = int(shift), float(shift_yaw)
        self.turns, self.turn_within = int(turns), float(turn_within)
        self.box_framing = tuple(float(v) for v in box_framing)
        if sweep < 1:
            raise ValueError(f"sweep must be at least 1 turn, got {sweep}")
        self.deroll, self.sweep = bool(deroll), int(sweep)
        self.sweep_gap, self.sweep_sure, self.sweep_passes = float(sweep_gap), float(sweep_sure), int(sweep_passes)
        self.sweep_agree = None if sweep_agree is None else float(sweep_agree)
        self.sweep_far = None if sweep_far is None else float(sweep_far)
        self.redetect, self._detector = bool(redetect), None      # the sweep's own detector, made on first use
        self.upright = None if upright is None else fold_batch_norm(upright).eval().to(self.device)
        self.upright_act, self.upright_take = float(upright_act), float(upright_take)
        self.upright_gap = None if upright_gap is None else float(upright_gap)
        self.upright_first = None if upright_first is None else float(upright_first)
        self.lean_beyond = None if lean_beyond is None else float(lean_beyond)
        self.lean_least = float(lean_least)

    def _ready(self, net):
        """The fitter's own copy of a torch network: batch norm folded in, on the device
        (channels_last on the CPU: 2-3x faster depthwise convolutions). An ONNX graph
        (:class:`~stn3dmm.nets.runtime.OnnxNetwork`) runs as it is, on the CPU only."""
        if isinstance(net, OnnxNetwork):
            if self.device.type != "cpu":
                raise ValueError(f"{net.name}: an ONNX graph runs on the CPU only, not on {self.device} "
                                 "(load_localiser(engine='torch') for the torch network)")
            return net
        net = fold_batch_norm(net).to(self.device)
        return net.to(memory_format=torch.channels_last) if self.device.type == "cpu" else net

    @torch.no_grad()
    def predict_crops(self, crops: torch.Tensor, mirror: bool = False, shift: int = 0, gaps: list | None = None,
                      refine: bool = False) -> torch.Tensor:
        """theta ``(B, P)`` for crops ``(B, 3, S, S)`` RGB in [0, 1], in batches of ``batch``;
        ``mirror``: averaged with the mirrored crops' (:func:`mirror_average`); ``shift``: and
        over the crops shifted by that many pixels (:func:`shifted_crops`). With ``mirror``, a
        list ``gaps`` receives the (B,) :meth:`mirror_gap` of the crops as given. ``refine``: by
        the refiner where there is one."""
        if shift:
            n, (copies, offsets) = len(crops), shifted_crops(crops, shift)
            inner = [] if gaps is not None else None
            theta = self.predict_crops(copies, mirror=mirror, gaps=inner, refine=refine).reshape(len(offsets), n, -1)
            if inner:
                gaps.append(inner[0][:n])      # copy 0 is the crop itself
            return unshift_theta(theta, offsets).mean(0)
        if mirror:     # the crops and their mirrors in one batch: at batch 1, cheaper than two passes
            n = len(crops)
            both = self.predict_crops(torch.cat([crops, flip_images(crops)]), refine=refine)
            if gaps is not None:
                gaps.append(self.mirror_gap(both[:n], both[n:]))
            return mirror_average(both[:n], both[n:], crops.shape[-1])
        out, net = [], self.refiner if refine and self.refiner is not None else self.net
        for lo in range(0, len(crops), self.batch):
            x = crops[lo:lo + self.batch].to(self.device, torch.float32)
            if self.device.type == "cpu" and isinstance(net, torch.nn.Module):
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(net(x).float())
        return torch.cat(out) if out else torch.zeros(0, self.stn.n_params)

    def _predict_some_shifted(self, crops: torch.Tensor, mirror: bool, shift: int, which: np.ndarray,
                              gaps: list | None, refine: bool) -> torch.Tensor:
        """:meth:`predict_crops` with shift averaging for the crops ``which`` (B,) marks only."""
        if not shift or which.all() or not which.any():
            return self.predict_crops(crops, mirror=mirror, shift=shift if which.any() else 0, gaps=gaps,
                                      refine=refine)
        theta, gap = None, torch.full((len(crops),), float("nan"))
        for sel, s in ((~which, 0), (which, shift)):
            idx, inner = torch.from_numpy(np.flatnonzero(sel)), [] if gaps is not None else None
            part = self.predict_crops(crops[idx], mirror=mirror, shift=s, gaps=inner, refine=refine)
            if theta is None:
                theta = part.new_empty((len(crops), part.shape[1]))
            theta[idx.to(part.device)] = part
            if inner:
                gap[idx] = inner[0]
        if gaps is not None:
            gaps.append(gap)
        return theta

    def mirror_gap(self, theta: torch.Tensor, theta_of_mirror: torch.Tensor) -> torch.Tensor:
        """(B,) how far the network disagrees with itself on a crop: the mean distance between the
        68 points of ``theta`` and of its mirrored crop's ``theta_of_mirror`` mapped back
        (:func:`~stn3dmm.stn.flip.flip_theta`), as a share of the crop side. About 0.01 on faces
        framed as in training; several times that on a crop where the face stands turned or
        upside down (docs/benchmarks.md, "Faces turned in the photo")."""
        back = flip_theta(theta_of_mirror, self.size)
        return (self.landmarks(theta) - self.landmarks(back)).norm(dim=-1).mean(-1).cpu() / self.size

    def landmarks(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) the iBUG-68 vertices projected by theta (crop px; NaN where theta is not finite)."""
        theta = theta.to(self.device, self._rows[0].dtype)
        return grid_generator(theta, *self._rows, self.stn.n_id, self.stn.n_exp, self.stn.scale_map).points.float()

    def from_squares(self, images: list, squares: list, angles: list | None = None, reframe=None
                     ) -> list[LocalisedFace]:
        """Localise one face per ``(image, (centre, side))``: images (H, W, 3) uint8 or float
        in [0, 1] (the same image may appear many times); ``angles``: each first crop's turn
        (radians, default 0), the face's own in the photo as far as the caller knows it;
        ``reframe(k, angle)``: the first square of face k for the sweep's try at crop turn
        ``angle``, or None to keep its square (default: always keep)."""
        angles = [0.0] * len(squares) if angles is None else [float(a) for a in angles]
        if not len(images) == len(squares) == len(angles):
            raise ValueError(f"{len(images)} images but {len(squares)} squares and {len(angles)} angles")
        squares = [(np.asarray(c, np.float64), float(s)) for c, s in squares]
        found = self._cascade(images, squares, angles, self.passes)
        found = self._sweep(images, squares, angles, found, reframe) if self.sweep > 1 and self.mirror else found
        return self.lean_upright(images, self.check_upright(images, found))

    def up_direction(self, images: list, found: list) -> tuple[np.ndarray, np.ndarray]:
        """What the up-direction network reads in each result's crop (framed by its 68 points,
        :data:`~stn3dmm.nets.upright.CONTEXT` times wider, turned as the result stands the face):
        ``(p, turn)``, the probability that the face stands more than a quarter turn from how the
        result has it, and the crop turn (radians, as ``crop_square``'s ``angle``) that would show
        it upright by the network's reading."""
        turns = result_turns(found)
        return self._read_up(images, [_square_or_keep(r.points68, r.square, t) for r, t in zip(found, turns)], turns)

    @torch.no_grad()
    def _read_up(self, images: list, squares: list, turns) -> tuple[np.ndarray, np.ndarray]:
        """The up-direction network on each ``(centre, side)`` square, :data:`~stn3dmm.nets.upright.CONTEXT`
        times wider, turned by ``turns``: ``(p, turn)`` as :meth:`up_direction` returns them."""
        from ..nets.upright import CONTEXT, SIZE, p_upside_down, up_angle

        crops = []
        for image, (c, s), t in zip(images, squares, turns):
            crop, _ = crop_square(image, c, s * CONTEXT, SIZE, angle=t)
            crops.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1))
        logits = self.upright(torch.stack(crops).to(self.device, torch.float32))
        return p_upside_down(logits).cpu().numpy(), np.asarray(turns, np.float64) + up_angle(logits).cpu().numpy()

    def check_upright(self, images: list, found: list) -> list[LocalisedFace]:
        """``found``, with each face the up-direction network reads as more than a quarter turn off
        (probability above ``upright_act``) localised again from its square turned the way the
        network reads as up (:meth:`upright_tries`), where the network then reads the new result
        as upright (probability of off below ``upright_take``) and the localiser is surer of it (its
        mirror gap below ``upright_gap`` times the first's, where both have one)."""
        if self.upright is None or not found:
            return found
        _, redo, again, q = self.upright_tries(images, found, self.upright_act)
        found = list(found)
        for k, r, qk in zip(redo, again, q):
            bar = self.upright_gap is None or math.isnan(r.mirror_gap) or math.isnan(found[k].mirror_gap)
            if qk < self.upright_take and (bar or r.mirror_gap < self.upright_gap * found[k].mirror_gap):
                found[k] = r
        return found

    def lean_upright(self, images: list, found: list) -> list[LocalisedFace]:
        """``found``, with each face of :meth:`lean_tries` (``lean_beyond``, ``lean_least``) taken
        from its try where that try stands the face within a quarter turn of the photo's up."""
        if self.upright is None or self.lean_beyond is None or not found:
            return found
        far, _, again = self.lean_tries(images, found, self.lean_beyond, self.lean_least)
        found = list(found)
        for k, r, t in zip(far, again, result_turns(again)):
            if abs(t) < math.pi / 2:
                found[k] = r
        return found

    def lean_tries(self, images: list, found: list, beyond: float, least: float
                   ) -> tuple[list, np.ndarray, list]:
        """The lean's tries: ``(far, p, again)``, ``far`` the faces a result stands more than
        ``beyond`` degrees from the photo's up that the up-direction network reads as off with
        probability ``least`` or more, ``p`` those probabilities, ``again`` each of them localised
        again (a cascade of ``sweep_passes`` passes) from its square turned by a half turn."""
        turns = result_turns(found)
        far = [k for k, t in enumerate(turns) if abs(t) > math.radians(beyond)]
        p = self.up_direction([images[k] for k in far], [found[k] for k in far])[0] if far else np.zeros(0)
        far, p = [k for k, pk in zip(far, p) if pk >= least], p[p >= least]
        if not far:
            return [], p, []
        angles = [turns[k] + math.pi for k in far]
        starts = [_square_or_keep(found[k].points68, found[k].square, a) for k, a in zip(far, angles)]
        return far, p, self._cascade([images[k] for k in far], starts, angles, self.sweep_passes)

    def upright_tries(self, images: list, found: list, act: float) -> tuple[np.ndarray, list, list, np.ndarray]:
        """The up-direction network's reading of ``found`` and its tries: ``(p, redo, again, q)``,
        ``p`` (B,) each result's probability of being more than a quarter turn off; ``redo`` the
        faces above ``act``; ``again`` each of those localised again (a cascade of ``sweep_passes``
        passes) from its square turned the way the network reads as up; ``q`` the network's ``p``
        of those."""
        p, up = self.up_direction(images, found)
        redo = [k for k in range(len(found)) if p[k] > act]
        if not redo:
            return p, [], [], np.zeros(0)
        starts = [_square_or_keep(found[k].points68, found[k].square, float(up[k])) for k in redo]
        again = self._cascade([images[k] for k in redo], starts, [float(up[k]) for k in redo], self.sweep_passes)
        return p, redo, again, self.up_direction([images[k] for k in redo], again)[0]

    def _cascade(self, images: list, squares: list, angles: list, passes: int, refine: bool = True
                 ) -> list[LocalisedFace]:
        """``passes`` passes: each after the first re-crops from the 68 points the one before predicted,
        turned by the roll it predicted (``deroll``, :func:`face_turn`); after two or more, one more
        by the ``refiner`` where there is one and ``refine`` (:meth:`_refine`)."""
        result = None
        for p in range(passes - 1):
            result = self._pass(images, squares, angles)
            squares, angles = self._reframe(result, squares, angles)
        found = self._pass(images, squares, angles, final=True, before=result)
        return self._refine(images, found) if refine and passes > 1 and self.refiner is not None else found

    def _refine(self, images: list, found: list) -> list[LocalisedFace]:
        """The refiner's pass on the crops re-framed from ``found`` (one per image), each keeping
        its mirror gap from ``found``: the localiser's own, on which the sweep's and flatten's
        thresholds were chosen (the refiner's gaps are smaller and read a face lying over less
        well). A face whose re-framing moves its square further than the refiner learned
        (:data:`REFINER_FRAMING`) first takes one more pass of the localiser: its crop was framed
        too far off for the refiner."""
        squares, angles = [r.square for r in found], [r.angle for r in found]
        new_squares, new_angles = self._reframe(found, squares, angles)
        far = [k for k in range(len(found))
               if _moved_beyond(squares, angles, new_squares, new_angles, k, self.refiner_framing)]
        if far:
            again = self._pass([images[k] for k in far], [new_squares[k] for k in far], [new_angles[k] for k in far])
            more = self._reframe(again, [new_squares[k] for k in far], [new_angles[k] for k in far])
            for i, k in enumerate(far):
                new_squares[k], new_angles[k] = more[0][i], more[1][i]
        refined = self._pass(images, new_squares, new_angles, final=True, refine=True, before=found)
        return [replace(r, mirror_gap=f.mirror_gap) for r, f in zip(refined, found)]

    def _pass(self, images: list, squares: list, angles: list, final: bool = False, refine: bool = False,
              before: list | None = None) -> list[LocalisedFace]:
        """One forward pass over the crops of ``squares`` turned by ``angles``; ``final``: with
        mirror averaging (and the mirror gap), and shift averaging where no refiner's pass follows;
        ``refine``: by the refiner, with both (no gap: a refined face keeps the localiser's,
        :meth:`_refine`). Shift averaging is for the faces ``before`` (the pass before's results)
        reads at ``shift_yaw`` or more (every face where there was none)."""
        crops, transforms = [], []
        for img, (c, s), a in zip(images, squares, angles):
            crop, tr = crop_square(img, c, s, self.size, angle=a)
            crops.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1))
            transforms.append(tr)
        gaps = []
        shift = self.shift if final and (refine or self.refiner is None) else 0
        which = abs_yaw(before) >= self.shift_yaw if shift and before is not None else np.ones(len(crops), bool)
        theta = (self._predict_some_shifted(torch.stack(crops), self.mirror and final, shift, which,
                                            None if refine else gaps, refine)
                 if crops else torch.zeros(0, self.stn.n_params))
        pts = self.landmarks(theta).double().cpu().numpy()
        gap = gaps[0].tolist() if gaps else [float("nan")] * len(crops)
        return [LocalisedFace(theta[k].cpu().numpy(), transforms[k], transforms[k].to_source(pts[k]), squares[k],
                              angles[k], gap[k]) for k in range(len(crops))]

    def _reframe(self, result: list, squares: list, angles: list) -> tuple[list, list]:
        """The next pass's squares and turns: framed by each face's predicted 68 points, turned by
        its predicted roll (``deroll``)."""
        if self.deroll:
            angles = face_turn(torch.as_tensor(np.stack([r.theta for r in result])), angles) if result else []
        return [_square_or_keep(r.points68, sq, a) for r, sq, a in zip(result, squares, angles)], list(angles)

    def _sweep(self, images: list, squares: list, angles: list, found: list, reframe=None) -> list[LocalisedFace]:
        """``found``, with each face whose mirror gap is above ``sweep_gap`` localised again from
        its first square turned by every other multiple of ``2 pi / sweep``, and the result the
        network is surest of (the smallest mirror gap) taken if its gap is below ``sweep_sure``
        and another try ends within ``sweep_agree`` degrees of its turn, as sure: a face lying on
        its side or upside down, beyond the rolls the network learned, is seen upright from the
        turns near its own. A blurred, dark or half-hidden upright face leaves the network unsure
        at nearly every turn, and stays as it was. The tries are the localiser's alone, judged by its
        own gaps (the thresholds were chosen on them); a try taken then gets the refiner's pass."""
        redo = [k for k, r in enumerate(found) if r.mirror_gap > self.sweep_gap]
        if not redo:
            return found
        tries = [(k, angles[k] + 2 * math.pi * j / self.sweep) for k in redo for j in range(1, self.sweep)]
        framed = [reframe(k, a) if reframe is not None else None for k, a in tries]
        starts = [squares[k] if f is None else f for (k, _), f in zip(tries, framed)]
        more = self._cascade([images[k] for k, _ in tries], starts, [a for _, a in tries], self.sweep_passes,
                             refine=False)
        found, n, taken = list(found), self.sweep - 1, {}
        for i, k in enumerate(redo):
            best = self._surest_agreed(more[i * n:(i + 1) * n], found[k])
            if best is not None:
                taken[k] = best
        if taken and self.refiner is not None:
            taken = dict(zip(taken, self._refine([images[k] for k in taken], list(taken.values()))))
        for k, r in taken.items():
            found[k] = r
        return found

    def _surest_agreed(self, tries: list, first: LocalisedFace | None = None) -> LocalisedFace | None:
        """The try with the smallest mirror gap if that is below ``sweep_sure`` and another try
        below it ends within ``sweep_agree`` degrees of its turn (None: no other needed), and, where
        it turns the face more than a quarter turn from ``first`` (the cascade's result), below
        ``sweep_far`` times ``first``'s gap; else None."""
        best = min(tries, key=lambda r: r.mirror_gap)
        if not best.mirror_gap < self.sweep_sure:
            return None
        if (self.sweep_far is not None and first is not None and turn_apart(best.angle, first.angle) > math.pi / 2
                and not best.mirror_gap < self.sweep_far * first.mirror_gap):
            return None
        if self.sweep_agree is None or any(r is not best and r.mirror_gap < self.sweep_sure
                                           and turn_apart(r.angle, best.angle) <= math.radians(self.sweep_agree)
                                           for r in tries):
            return best
        return None

    def box_square(self, box, angle: float = 0.0) -> tuple[np.ndarray, float]:
        """(centre, side) of the first crop for a face box ``(x0, y0, x1, y1)`` (photo px) of a
        face turned by ``angle`` (framed in the face's upright frame)."""
        b = np.asarray(box, np.float64)
        corners = np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]])
        return upright_frame(corners, angle, lambda p: self._upright_box_square(np.concatenate([p.min(0), p.max(0)])))

    def _upright_box_square(self, b: np.ndarray) -> tuple[np.ndarray, float]:
        k, fx, fy = self.box_framing
        d = float(max(b[2] - b[0], b[3] - b[1]))
        centre = (b[:2] + b[2:]) / 2 + np.array([fx, fy]) * d
        half = 0.5 * k * d
        return landmark_square_of_box(np.concatenate([centre - half, centre + half]), "ibug68")

    def from_boxes(self, images: list, boxes: list, angles: list | None = None) -> list[LocalisedFace]:
        """Localise one face per ``(image, face box)`` (see ``box_framing``); ``angles`` as for
        :meth:`from_squares`. With ``redetect``, the sweep's tries at quarter turns start from the
        face detector's box of the face in the photo so turned (:meth:`_redetected_square`)."""
        angles = [0.0] * len(boxes) if angles is None else list(angles)
        if len(angles) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(angles)} angles")
        boxes = [np.asarray(b, np.float64) for b in boxes]
        if self.upright is not None and self.upright_first is not None and boxes:
            angles = self.first_turns(images, boxes, angles)
        reframe = partial(self._redetected_square, images, boxes, {}) if self.redetect else None
        return self.from_squares(images, [self.box_square(b, a) for b, a in zip(boxes, angles)], angles, reframe)

    def from_faces(self, images: list, faces: list) -> list[LocalisedFace]:
        """Localise one detected face per image (:class:`~stn3dmm.photos.detect.Face`): its box,
        and its turn upright (``turns``)."""
        turns = [f.upright_turn(self.turns, self.turn_within) for f in faces]
        return self.from_boxes(images, [f.bbox for f in faces], turns)

    def first_turns(self, images: list, boxes: list, angles: list) -> list[float]:
        """Each first crop's turn: the way the up-direction network reads as up where its
        probability of more than a quarter turn off is above ``upright_first``, else as given
        (:meth:`first_reading`)."""
        p, up = self.first_reading(images, boxes, angles)
        return [float(u) if pk > self.upright_first else float(a) for a, u, pk in zip(angles, up, p)]

    def first_reading(self, images: list, boxes: list, angles: list) -> tuple[np.ndarray, np.ndarray]:
        """What the up-direction network reads on the crop of each face box turned by ``angles``
        (framed as :meth:`up_direction` frames a result, from the box's square): ``(p, turn)``,
        the probability that the face stands more than a quarter turn from that crop's up, and
        the crop turn that would show it upright by the network's reading."""
        return self._read_up(images, [self.box_square(b, a) for b, a in zip(boxes, angles)], angles)

    def _redetected_square(self, images: list, boxes: list, seen: dict, k: int, angle: float):
        """The first square of face ``k`` for a try at crop turn ``angle``: where that is a quarter
        turn, the detector's box of the face (the box most overlapping ``boxes[k]``) in the photo
        turned so that the try's crop would stand upright in it, framed in the face's upright
        frame; else, or where the detector finds no such face there, None. ``seen`` caches the
        detections per face and turn."""
        q = 2.0 * angle / math.pi
        if abs(q - round(q)) > 1e-6 or round(q) % 4 == 0:
            return None
        q = round(q) % 4
        if (k, q) not in seen:
            if self._detector is None:
                from ..photos import FaceDetector

                self._detector = FaceDetector(landmarks=False, upright=False)     # boxes only
            found = [(b, box_iou(b, boxes[k])) for b, _ in self._detector.boxes_turned(images[k], q)]
            seen[(k, q)] = max(found, key=lambda f: f[1], default=(None, 0.0))
        box, overlap = seen[(k, q)]
        return self.box_square(box, angle) if overlap > 0 else None


def abs_yaw(results: list) -> np.ndarray:
    """(B,) |yaw| in degrees of each :class:`LocalisedFace`'s theta (its crop's turn changes roll only)."""
    if not results:
        return np.zeros(0)
    return pose_from_theta(torch.as_tensor(np.stack([r.theta for r in results]), dtype=torch.float64)
                           ).abs()[:, 0].numpy()


def mirror_average(theta: torch.Tensor, theta_of_mirror: torch.Tensor, width: int) -> torch.Tensor:
    """Test-time mirror averaging: the mean of a crop's theta and its mirror image's theta mirrored back.

    The mirror's prediction is mapped to the crop by :func:`~stn3dmm.stn.flip.flip_theta` (exact
    for a mirror-symmetric model); the rotation vectors are averaged as vectors, which is close to
    the mean rotation for the small differences of two predictions of one face.

    Args:
        theta: (B, P) for crops of width ``width``.
        theta_of_mirror: (B, P) for the same crops mirrored left-right.
        width: crop width.

    Returns:
        (B, P).

    Examples:
        >>> th = torch.tensor([[0.0, 0.2, 0.0, 40.0, 50.0, 0.0]])
        >>> mirror_average(th, flip_theta(th, 100), 100)  # a consistent pair averages to itself
        tensor([[ 0.0000,  0.2000,  0.0000, 40.0000, 50.0000,  0.0000]])
    """
    return 0.5 * (theta + flip_theta(theta_of_mirror, width))


def shifted_crops(crops: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The crops and four copies moved by ``shift`` whole pixels, for test-time shift averaging.

    Copy k shows at pixel p what the crop shows at p + d_k (edge pixels repeated), so a theta
    predicted on it maps back to the crop by adding d_k to its translation t.

    Args:
        crops: (B, C, S, S).
        shift: pixels, less than S.

    Returns:
        (5 B, C, S, S) copies, the crops themselves first, and (5, 2) offsets d_k: (0, 0),
        (+shift, 0), (-shift, 0), (0, +shift), (0, -shift) as (x, y).

    Examples:
        >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
        >>> copies, d = shifted_crops(x, 1)
        >>> copies[1, 0, 0].tolist(), d[1].tolist()  # moved left: pixel p shows p + 1
        ([1.0, 2.0, 3.0, 3.0], [1.0, 0.0])
    """
    s = int(shift)
    if not 0 < s < crops.shape[-1]:
        raise ValueError(f"shift must be between 1 and {crops.shape[-1] - 1} pixels, got {shift}")
    offsets = torch.tensor([[0, 0], [s, 0], [-s, 0], [0, s], [0, -s]], dtype=torch.float32)
    padded = torch.nn.functional.pad(crops, (s, s, s, s), mode="replicate")
    size = crops.shape[-1]
    copies = [padded[..., s + int(dy):s + int(dy) + size, s + int(dx):s + int(dx) + size] for dx, dy in offsets]
    return torch.cat(copies), offsets


def unshift_theta(theta: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """theta predicted on shifted copies (:func:`shifted_crops`), moved back into the crop: each
    copy's translation t plus its offset.

    Args:
        theta: (K, B, P), copy k's theta for each of B crops.
        offsets: (K, 2) each copy's offset d_k (x, y), crop pixels.

    Returns:
        (K, B, P) the same theta in the crop's pixels.

    Examples:
        >>> th = torch.zeros(2, 1, 6)
        >>> unshift_theta(th, torch.tensor([[0., 0.], [3., -1.]]))[1, 0, 3:5].tolist()
        [3.0, -1.0]
    """
    out = theta.clone()
    out[..., 3:5] += offsets[:, None].to(out)
    return out


def upright_frame(points: np.ndarray, angle: float, frame) -> tuple[np.ndarray, float]:
    """``frame(points) -> (centre, side)`` applied to the points of a face turned by ``angle`` in
    the photo: computed on the points turned upright (by ``-angle`` about their mean), the centre
    turned back. A framing that shifts the centre (towards the brows, say) then shifts it along
    the face, not along the photo.

    Examples:
        >>> shift_down = lambda p: (p.mean(0) + [0.0, 1.0], 2.0)
        >>> c, s = upright_frame(np.array([[0.0, 0.0], [2.0, 0.0]]), np.pi, shift_down)
        >>> np.round(c, 6).tolist(), s  # upside down: 'down' the face is up the photo
        ([1.0, -1.0], 2.0)
    """
    p = np.asarray(points, np.float64)
    if angle == 0.0:
        return frame(p)
    c0 = np.nanmean(p, 0)
    ca, sa = np.cos(angle), np.sin(angle)
    turn = np.array([[ca, -sa], [sa, ca]])                     # upright -> photo
    centre, side = frame((p - c0) @ turn + c0)                 # p @ turn: photo -> upright (turn^-1 = turn^T)
    return (np.asarray(centre) - c0) @ turn.T + c0, side


def face_turn(theta: torch.Tensor, crop_angles) -> list[float]:
    """The turn in the photo (radians, as :func:`~stn3dmm.photos.crop.crop_square`'s ``angle``) of a
    crop that would show each face of ``theta`` (B, P), predicted in crops turned by ``crop_angles``
    (B,), unrolled: its roll in the photo (:func:`~stn3dmm.stn.pose.pose_in_photo`), the other way.
    The roll is the outermost rotation of the pose, about the camera axis, so the crop so turned
    shows the same yaw and pitch with no roll, as the network learned faces.

    Examples:
        >>> th = torch.tensor([[0.0, 0.0, math.radians(-20.0), 55.5, 55.5, 0.0]])   # rolled -20 in the crop
        >>> round(math.degrees(face_turn(th, [0.0])[0]), 4)                         # turn the crop by +20
        20.0
    """
    from ..stn.pose import pose_in_photo

    roll = pose_in_photo(theta.detach().double().cpu(), torch.as_tensor(crop_angles, dtype=torch.float64))[:, 2]
    return [math.remainder(-math.radians(float(r)), 2 * math.pi) for r in roll]


def result_turns(found: list) -> list[float]:
    """:func:`face_turn` of each :class:`LocalisedFace`: its face's turn in the photo (radians)."""
    return face_turn(torch.as_tensor(np.stack([r.theta for r in found])), [r.angle for r in found]) if found else []


def _moved_beyond(squares: list, angles: list, new_squares: list, new_angles: list, k: int, framing) -> bool:
    """Whether face ``k``'s square moved beyond ``framing`` = (centre as a fraction of the side, log
    side, turn in degrees) from ``squares[k]``, turned by ``angles[k]``, to the new one.

    Examples:
        >>> sq = [(np.array([100.0, 100.0]), 50.0)]
        >>> _moved_beyond(sq, [0.0], [(np.array([101.0, 100.0]), 51.0)], [0.05], 0, (0.03, 0.05, 10.0))
        False
        >>> _moved_beyond(sq, [0.0], [(np.array([102.0, 100.0]), 50.0)], [0.0], 0, (0.03, 0.05, 10.0))
        True
    """
    (c0, s0), (c1, s1) = squares[k], new_squares[k]
    shift, scale, turn = framing
    return bool(np.linalg.norm(np.asarray(c1) - np.asarray(c0)) > shift * s1 or abs(math.log(s1 / s0)) > scale
                or turn_apart(new_angles[k], angles[k]) > math.radians(turn))


def _square_or_keep(points68: np.ndarray, square: tuple, angle: float = 0.0) -> tuple:
    """The training framing of predicted points (in the face's upright frame), or the previous
    square if they cannot frame one (all on a point, or not finite)."""
    try:
        c, s = upright_frame(points68, angle, lambda p: landmark_square(p, "ibug68"))
    except ValueError:
        return square
    return (c, s) if np.isfinite(c).all() and np.isfinite(s) and s > 1 else square


def load_localiser(device="cpu", *, passes: int = 2, mirror: bool = True, shift: int = SHIFT, batch: int = 64,
                   model=None, refiner=True, upright=True, engine: str = "auto", **options) -> LocaliserFitter:
    """The localiser that ships in the package, ready to use (no download, no training).

    Args:
        device: ``"cpu"``, ``"cuda"``, ... (the network and the geometry run there).
        passes: forward passes per face (2: the second re-crops from the first's landmarks).
        mirror: average the final pass's theta with its mirrored crop's (:func:`mirror_average`).
        shift: also average over the last pass's crop (the refiner's) shifted by this many pixels,
            for faces turned :data:`SHIFT_YAW` or more (0: off; :func:`shifted_crops`; default
            :data:`SHIFT`; ``shift_yaw=`` among ``options`` sets the switch).
        batch: faces per forward pass.
        model: the morphable model it predicts for (default: the prepared default model, which
            must be the card's).
        refiner: True: the package's refiner, for one more pass after the localiser's cascade,
            where it holds one; False: the localiser alone; or a network to use as the refiner.
        upright: True: the package's up-direction network checks each result where it holds one
            (:meth:`LocaliserFitter.check_upright`); False: no check; or a network to use.
        engine: what runs the package's networks: ``"onnx"``, their ONNX graphs by onnxruntime (CPU
            only; :mod:`stn3dmm.nets.runtime`: the same theta, two to three times faster),
            ``"torch"``, or ``"auto"``: onnx on the CPU where the package holds the graphs and
            onnxruntime is installed, else torch.
        options: more of :class:`LocaliserFitter`'s (``deroll``, ``sweep``, ``sweep_gap``, ...).

    Raises:
        ValueError: the package holds no trained localiser, or the model is not the card's.
    """
    from ..model.store import load_model
    from ..nets.shipped import load_card, load_shipped, load_shipped_onnx, load_shipped_refiner

    card = load_card()
    onnx = _use_onnx(engine, device, card)
    net = load_shipped_onnx(card=card) if onnx else load_shipped()[0]      # the torch network only where it runs
    if refiner is True:
        refiner = load_shipped_onnx(card=card, refiner=True) if onnx else load_shipped_refiner(card=card)
    elif refiner is False:
        refiner = None
    if upright is True:
        from ..nets.upright import load_upright

        upright = load_upright(device=device)
    elif upright is False:
        upright = None
    model = model if model is not None else load_model(None)
    want = card.get("model", {}).get("source")
    if want and str(model.source) != want:
        raise ValueError(f"the shipped localiser predicts theta for the model {want!r}, not {model.source!r}")
    return LocaliserFitter(net, model, int(card["n_id"]), int(card["n_exp"]), passes=passes, mirror=mirror,
                           shift=shift, box_framing=card.get("box_framing", {}).get("mediapipe", (1.0, 0.0, 0.0)),
                           device=device, batch=batch, card=card, refiner=refiner, upright=upright, **options)


def _use_onnx(engine: str, device, card: dict) -> bool:
    """Whether :func:`load_localiser` runs the package's ONNX graphs (see its ``engine``)."""
    from ..nets.shipped import GRAPHS, WEIGHTS

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    on_cpu = torch.device(device).type == "cpu"
    has = GRAPHS[WEIGHTS] in card.get("onnx", {})
    runtime = importlib.util.find_spec("onnxruntime") is not None
    if engine == "onnx" and not (on_cpu and has and runtime):
        raise ValueError("engine='onnx' needs the CPU, the package's ONNX graphs and onnxruntime: "
                         + ("the device is " + str(device) if not on_cpu else
                            "the card names no graphs" if not has else "onnxruntime is not installed"))
    return engine == "onnx" or (engine == "auto" and on_cpu and has and runtime)


__all__ = ["ENGINES", "LEAN_BEYOND", "LEAN_LEAST", "REFINER_FRAMING", "SHIFT", "SHIFT_YAW", "SWEEP_AGREE", "UPRIGHT_ACT", "UPRIGHT_FIRST", "UPRIGHT_GAP", "UPRIGHT_TAKE", "SWEEP_GAP", "SWEEP_PASSES", "SWEEP_SURE",
           "SWEEP_TURNS", "LocalisedFace",
           "LocaliserFitter", "abs_yaw", "face_turn", "load_localiser", "mirror_average", "shifted_crops",
           "unshift_theta", "upright_frame"]
