"""The fitted-photos data: a flatten output tree read back, the split by person, real crops whose
labels land on the photo's own surface points, and profiled renders whose labels are exact.

The "photos" are renders of the default model at a known theta with a texture whose colour
encodes its own UV position (red = column, green = row), and their "flatten outputs" are
written by the test with that theta, so every label has a known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from stn3dmm.photos.crop import landmark_square, transform_theta
from stn3dmm.training.data.fitted import FittedPhotos, held_out, read_fits
from stn3dmm.training.data.render import GridRenderer

#: photo px -> the fit's 224 crop (scale and shift, as flatten's crops are)
MATRIX = np.array([[1.2, 0.0, -20.0], [0.0, 1.2, -30.0]])
PEOPLE = ("Ann_A", "Bob_B", "Cid_C")


def uv_texture(res: int) -> torch.Tensor:
    t = torch.linspace(0, 1, res)
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    return torch.stack((cols, rows, torch.full((res, res), 0.5)))


@pytest.fixture(scope="module")
def model(default_grid):
    return default_grid[0]


@pytest.fixture(scope="module")
def tree(model, tmp_path_factory):
    """(flatten output root, photos root): 3 people x 2 photos, thetas in the 224 crop."""
    root, photos = tmp_path_factory.mktemp("flat"), tmp_path_factory.mktemp("photos")
    rend = GridRenderer(model, 320, n_id=10, n_exp=10)
    tex = uv_texture(int(model.res))
    rng = np.random.default_rng(0)
    inv = np.linalg.inv(np.vstack([MATRIX, [0, 0, 1]]))[:2]
    for i, person in enumerate(PEOPLE):
        (root / person).mkdir()
        (photos / person).mkdir()
        for j in range(2):
            theta = np.concatenate([[0.0, rng.uniform(-0.3, 0.3), 0.0], [111.5, 111.5, 0.0],
                                    rng.normal(0, 0.5, 20)])
            img = rend(torch.as_tensor(transform_theta(theta, inv), dtype=torch.float32)[None], tex[None])["image"]
            name = f"{person}_{j + 1:04d}"
            Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(
                photos / person / f"{name}.png")
            rgba = np.concatenate([tex.permute(1, 2, 0).numpy(), np.ones((*tex.shape[1:], 1))], -1)
            Image.fromarray((rgba * 255 + 0.5).astype(np.uint8)).save(root / person / f"{name}_face0_completed.png")
            info = {"photo": f"/elsewhere/{name}.png", "theta": theta.tolist(), "fit_error_px": 9.0 if i == j == 0 else 1.0,
                    "crop": {"matrix_photo_to_crop": MATRIX.tolist()}, "detection": {"bbox": [60, 60, 190, 190]}}
            (root / person / f"{name}_face0.json").write_text(json.dumps(info))
    return root, photos


def test_read_fits_leaves_out_bad_fits_and_missing_photos(tree):
    root, photos = tree
    fits, problems = read_fits(root, photos, max_error=4.0)
    assert len(fits) == 5 and {f.person for f in fits} == set(PEOPLE)
    assert len(problems) == 1 and "fit error 9.00 px is over 4.0" in problems[0][1]
    fits, problems = read_fits(root, None)         # the JSON's own photo path does not exist
    assert not fits and sum("is missing" in why for _, why in problems) == 5
    with pytest.raises(ValueError, match="no such folder"):
        read_fits(root / "nope")
    js = next(root.glob("Bob_B/*_face0.json"))
    keep = js.read_text()
    js.write_text(json.dumps(dict(json.loads(keep), method="localiser")))
    try:
        fits, problems = read_fits(root, photos, max_error=4.0)
        assert len(fits) == 4 and any("not a landmark fit" in why for _, why in problems)
    finally:
        js.write_text(keep)


def test_held_out_is_every_tenth_name_whatever_the_order():
    names = [f"p{k:02d}" for k in range(25)]
    want = {"p00", "p10", "p20"}
    assert {n for n, v in zip(names, held_out(names)) if v} == want
    shuffled = names[::-1] + names[:3]
    assert {n for n, v in zip(shuffled, held_out(shuffled)) if v} == want


def plain(tree, model, **kw):
    root, photos = tree
    opts = dict(split="all", shift=0.0, scale_jitter=0.0, roll_range=0.0, augment=False, tiles=4, progress=False)
    opts.update(kw)
    return FittedPhotos(root, model, 112, photos=photos, max_error=10.0, **opts)


def test_real_crop_labels_sit_on_their_surface_points(tree, model):
    """A real crop frames its 68 points as training expects, and the crop's colour at each label
    is the UV colour of the label's own vertex (the photo shows the fitted surface)."""
    ds = plain(tree, model, real_views=1, profiled_views=0)
    r = int(model.res)
    rows, cols = np.divmod(ds.landmark_set, r)
    for k in range(len(ds)):
        s = ds[k]
        lm = s["landmarks"].numpy()
        c, side = landmark_square(lm[:68], "ibug68")
        np.testing.assert_allclose(c, [55.5, 55.5], atol=1e-4)
        assert side == pytest.approx(112, abs=1e-4)
        inside = (lm[68:] > 2).all(1) & (lm[68:] < 109).all(1)
        x, y = np.round(lm[68:][inside]).astype(int).T
        red, green = s["image"][0].numpy()[y, x], s["image"][1].numpy()[y, x]
        hit = (np.abs(red - cols[68:][inside] / (r - 1)) < 0.06) & (np.abs(green - rows[68:][inside] / (r - 1)) < 0.06)
        assert hit.mean() > 0.8, f"item {k}: {hit.mean():.2f} of the labels show their own vertex"
        assert s["visibility"].sum() == pytest.approx(68, rel=1e-5)


def assert_exact_and_framed(ds, s):
    """A render's labels are its theta's projections, and its 68 points fill the crop as training frames them."""
    want = ds.renderer.stn.geometry(s["theta"][None]).points[0, torch.as_tensor(ds.landmark_set)]
    torch.testing.assert_close(s["landmarks"], want, atol=1e-3, rtol=0)
    c, side = landmark_square(s["landmarks"][:68].numpy().astype(np.float64), "ibug68")
    np.testing.assert_allclose(c, [55.5, 55.5], atol=1e-3)
    assert side == pytest.approx(112, abs=1e-3)


def test_renders_are_exactly_labelled_framed_and_deterministic(tree, model):
    ds = plain(tree, model, real_views=1, profiled_views=2, yaw_range=90.0)
    assert len(ds) == 6 * 3
    yaws = []
    for k in range(len(ds)):
        if k % 3 == 0:
            assert "theta" not in ds[k]
            continue
        s = ds[k]
        assert_exact_and_framed(ds, s)
        yaws.append(float(s["pose"][0]))
    assert max(map(abs, yaws)) <= 90 and max(map(abs, yaws)) > 30
    again = plain(tree, model, real_views=1, profiled_views=2, yaw_range=90.0)
    for k in (1, 4, 5):
        torch.testing.assert_close(ds[k]["image"], again[k]["image"], atol=0, rtol=0)
    batch = ds.__getitems__([4, 0, 4])
    torch.testing.assert_close(batch[0]["image"], batch[2]["image"], atol=0, rtol=0)
    assert [int(b["identity"]) for b in batch] == [int(ds.identities[4]), int(ds.identities[0])] * 1 + [
        int(ds.identities[4])]


def test_split_by_person_and_identities(tree, model):
    root, photos = tree
    val = FittedPhotos(root, model, 112, photos=photos, split="val", progress=False, tiles=2)
    train = FittedPhotos(root, model, 112, photos=photos, split="train", progress=False, tiles=2)
    assert {f.person for f in val.fits} == {"Ann_A"} and "Ann_A" not in {f.person for f in train.fits}
    assert len(train.identities) == len(train) and set(train.identities) == {0, 1}
    assert train.tiles and all(0 <= float(t.min()) and float(t.max()) <= 1 for t in train.tiles)   # not 0-255
    assert all(im.dtype == np.uint8 for im in train.images)
    with pytest.raises(ValueError, match="split must be"):
        FittedPhotos(root, model, 112, photos=photos, split="test")


def test_head_renders_are_exactly_labelled_turned_the_way_the_face_looks_and_deterministic(tree, model):
    """head_share 1: every profiled view is a head render (the photo itself, turned): labelled
    exactly by its theta, framed like the others, turned at most 85 degrees from the photo's own
    yaw and showing each visible label's own UV colour."""
    from stn3dmm.training.data.pose import pose_from_theta

    ds = plain(tree, model, real_views=1, profiled_views=2, yaw_range=90.0, head_share=1.0)
    r = int(model.res)
    rows, cols = np.divmod(ds.landmark_set, r)
    hits = []
    for k in range(len(ds)):
        photo, view = ds.identity_of(k)
        assert ds.is_head(photo, view) == (view > 0)
        if view == 0:
            continue
        s = ds[k]
        assert_exact_and_framed(ds, s)
        src = float(pose_from_theta(torch.as_tensor(ds.fits[photo].theta)[None])[0, 0])
        assert abs(float(s["pose"][0]) - src) <= 85 + 1e-6
        vis = ds.renderer.visibility(ds.renderer(s["theta"][None].float(), torch.zeros(1, 3, r, r)),
                                     ds.landmark_set)[0].numpy()
        lm = s["landmarks"].numpy()[vis]
        x, y = np.round(lm).astype(int).T
        inside = (x > 1) & (x < 110) & (y > 1) & (y < 110)
        shown = s["image"][:2].numpy()[:, y[inside], x[inside]]
        err = np.maximum(np.abs(shown[0] - cols[vis][inside] / (r - 1)), np.abs(shown[1] - rows[vis][inside] / (r - 1)))
        hits.append((err < 0.06).mean())
    # measured 0.77 (the 96-node lattice's depth is smoothed; 0.82 with 128 nodes); a wrong turn gives ~0
    assert np.median(hits) > 0.7, hits
    again = plain(tree, model, real_views=1, profiled_views=2, yaw_range=90.0, head_share=1.0)
    torch.testing.assert_close(ds[4]["image"], again[4]["image"], atol=0, rtol=0)
    with pytest.raises(ValueError, match="head_share"):
        plain(tree, model, head_share=1.5)


def test_head_yaw_min_draws_profiles_only(tree, model):
    """``head_yaw_min`` 60: every head render's |yaw| lies in [60, yaw_range] (the test photos are near
    frontal, so the limit of 85 degrees from the photo's own does not bind); pitch and roll are drawn
    as with no minimum."""
    kw = dict(real_views=0, profiled_views=2, yaw_range=90.0, head_share=1.0)
    far, near = plain(tree, model, head_yaw_min=60.0, **kw), plain(tree, model, **kw)
    poses = np.array([far[k]["pose"] for k in range(len(far))], np.float64)
    assert (np.abs(poses[:, 0]) >= 60 - 1e-6).all() and (np.abs(poses[:, 0]) <= 90 + 1e-6).all()
    assert np.allclose(poses[:, 1:], [near[k]["pose"][1:] for k in range(len(near))])


def test_data_roll_range_reaches_the_renders(tree, model):
    """``data.roll_range`` (the config's; default 25) sets the largest roll of the renders drawn."""
    from stn3dmm.training.batches import _build
    from stn3dmm.training.config import DEFAULTS

    root, photos = tree
    spec = dict(DEFAULTS["data"], kind="fitted", path=str(root), photos=str(photos), split="all", roll_range=45.0)
    assert _build(spec, model, 112, "ibug68", False, False).ranges[2] == 45.0
    assert _build(dict(spec, roll_range=-1.0), model, 112, "ibug68", False, False).ranges[2] == 25.0
    ds = plain(tree, model, real_views=0, profiled_views=3, roll_range=45.0)
    rolls = [abs(float(ds[k]["pose"][2])) for k in range(len(ds))]
    assert 25 < max(rolls) <= 45


def test_data_framing_jitter_reaches_the_crops(tree, model):
    """``data.shift`` and ``data.scale_jitter`` (negative: 0.06 and 0.12) set the crops' framing jitter."""
    from stn3dmm.training.batches import _build
    from stn3dmm.training.config import DEFAULTS

    root, photos = tree
    spec = dict(DEFAULTS["data"], kind="fitted", path=str(root), photos=str(photos), split="all")
    ds = _build(dict(spec, shift=0.02, scale_jitter=0.04), model, 112, "ibug68", False, False)
    assert (ds.shift, ds.scale_jitter) == (0.02, 0.04)
    ds = _build(spec, model, 112, "ibug68", False, False)
    assert (ds.shift, ds.scale_jitter) == (0.06, 0.12)


def test_data_degrade_changes_pixels_not_labels_and_zero_changes_nothing(tree, model):
    """``data.degrade``: the share of items made harder (their labels unchanged); drawn apart
    from every other draw, so that 0 gives exactly the items of before, and deterministic."""
    from stn3dmm.training.batches import _build
    from stn3dmm.training.config import DEFAULTS

    root, photos = tree
    spec = dict(DEFAULTS["data"], kind="fitted", path=str(root), photos=str(photos), split="all",
                real_views=1, profiled_views=2)
    before, hard = (_build(dict(spec, degrade=d), model, 112, "ibug68", False, False) for d in (0.0, 1.0))
    assert (before.degrade, hard.degrade) == (0.0, 1.0)
    items = range(len(before))
    for k in items:
        a, b = before[k], hard[k]
        torch.testing.assert_close(a["landmarks"], b["landmarks"], atol=0, rtol=0)
        assert (a["image"] - b["image"]).abs().max() > 0.02
        assert 0 <= float(b["image"].min()) and float(b["image"].max()) <= 1
    again = _build(dict(spec, degrade=1.0), model, 112, "ibug68", False, False)
    torch.testing.assert_close(hard[4]["image"], again[4]["image"], atol=0, rtol=0)
    old = _build({k: v for k, v in spec.items() if k != "degrade"}, model, 112, "ibug68", False, False)
    torch.testing.assert_close(before[4]["image"], old[4]["image"], atol=0, rtol=0)
    with pytest.raises(ValueError, match="degrade must be"):
        _build(dict(spec, degrade=1.5), model, 112, "ibug68", False, False)


def test_data_ibug_share_weights_the_68_points_and_leaves_the_rest_as_before(tree, model):
    """``data.ibug_share``: that share of the landmark weight (68 in all) on the 68 iBUG points;
    unset, every landmark weighs 68 / L as before; the pixels and positions do not change."""
    from stn3dmm.training.batches import _build
    from stn3dmm.training.config import DEFAULTS
    from stn3dmm.training.data.fitted import landmark_weights

    root, photos = tree
    spec = dict(DEFAULTS["data"], kind="fitted", path=str(root), photos=str(photos), split="all",
                real_views=1, profiled_views=1, grid_step=8)
    plain_ds, half = (_build(dict(spec, ibug_share=s), model, 112, "ibug68", False, False) for s in (-1.0, 0.5))
    n = len(plain_ds.landmark_set)
    assert n > 68
    for k in range(len(plain_ds)):
        a, b = plain_ds[k], half[k]
        torch.testing.assert_close(a["image"], b["image"], atol=0, rtol=0)
        torch.testing.assert_close(a["landmarks"], b["landmarks"], atol=0, rtol=0)
        assert np.allclose(a["visibility"].numpy(), 68.0 / n)
        assert float(b["visibility"][:68].sum()) == pytest.approx(34.0)
        assert float(b["visibility"][68:].sum()) == pytest.approx(34.0, rel=1e-5)
    assert np.allclose(landmark_weights(68, 0.3), 1.0)          # the 68 alone: all of it, whatever the share
    with pytest.raises(ValueError, match="ibug_share"):
        landmark_weights(100, 1.5)
