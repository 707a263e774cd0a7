"""Tests of the flip augmentation: permutations, landmark mirroring, and the STN's flip equivariance."""

import math

import numpy as np
import pytest
import torch

from stn3dmm.stn.flip import (AFLW21_FLIP, IBUG68_FLIP, flip_images, flip_landmarks, flip_permutation, flip_theta,
                             mirror_augment)
from stn3dmm.stn import MorphableSTN
from testkit import synthetic_models as syn


nan = float("nan")


def test_aflw21_permutation_is_the_specs_order():
    one_based = [6, 5, 4, 3, 2, 1, 12, 11, 10, 9, 8, 7, 17, 16, 15, 14, 13, 20, 19, 18, 21]
    assert list(AFLW21_FLIP) == [i - 1 for i in one_based]


@pytest.mark.parametrize("name,template", [("aflw21", syn.AFLW21_TEMPLATE), ("ibug68", syn.ibug68_template())])
def test_permutations_are_involutions_and_mirror_the_layout(name, template):
    perm = flip_permutation(name).numpy()
    assert sorted(perm.tolist()) == list(range(len(perm)))
    assert (perm[perm] == np.arange(len(perm))).all()
    # a frontal face's template, mirrored (x -> -x) and re-ordered, is the template again
    mirrored = template * np.array([-1.0, 1.0])
    assert np.abs(mirrored[perm] - template).max() < 1e-9


def test_ibug68_known_pairs():
    one = {a + 1: b + 1 for a, b in enumerate(IBUG68_FLIP)}
    assert one[1] == 17 and one[9] == 9 and one[18] == 27 and one[31] == 31 and one[37] == 46
    assert one[40] == 43 and one[49] == 55 and one[52] == 52 and one[58] == 58 and one[61] == 65 and one[67] == 67
    assert sum(one[i] == i for i in one) == 10  # chin, 4 nose bridge, nose tip bottom, 2 + 2 lip centres


def test_permutations_match_the_synthetic_models_mirror():
    m = syn.make_face_model(33)  # odd R: the midline is a grid column, so the mirror is exact
    for name in ("aflw21", "ibug68"):
        idx = m.landmarks[name]
        perm = flip_permutation(name).numpy()
        assert (m.mirror[idx] == idx[perm]).all()


def test_flip_landmarks_by_hand():
    W = 10
    lm = torch.zeros(1, 21, 2)
    lm[0, :, 0] = torch.arange(21, dtype=torch.float32)
    lm[0, :, 1] = 100 + torch.arange(21, dtype=torch.float32)
    lm[0, 2] = nan
    vis = torch.ones(1, 21)
    vis[0, 2] = 0
    out, v = flip_landmarks(lm, W, vis)
    # new point 1 (index 0) is old point 6 (index 5) mirrored: x' = W - 1 - 5 = 4
    assert out[0, 0].tolist() == [4.0, 105.0]
    assert out[0, 20].tolist() == [9 - 20.0, 120.0]
    # old point 3 (missing) becomes new point 4 and stays missing
    assert torch.isnan(out[0, 3]).all() and v[0, 3] == 0 and v.sum() == 20
    back, vb = flip_landmarks(out, W, v)
    assert torch.allclose(back, lm, equal_nan=True) and torch.equal(vb, vis)
    with pytest.raises(ValueError):
        flip_landmarks(torch.zeros(1, 5, 2), W)


def test_pixel_flip_convention_matches_image_flip():
    img = torch.zeros(1, 1, 5, 7)
    img[0, 0, 2, 1] = 1.0  # pixel centre (x=1, y=2)
    f = flip_images(img)
    y, x = torch.nonzero(f[0, 0])[0].tolist()
    pt = flip_landmarks(torch.tensor([[[1.0, 2.0]] * 21]), 7)[0, 0]
    assert (x, y) == (5, 2) and pt.tolist() == [5.0, 2.0]


def test_mirror_augment_doubles_the_batch():
    imgs = torch.rand(2, 3, 8, 8)
    lm = torch.rand(2, 68, 2) * 7
    i2, l2, v2 = mirror_augment(imgs, lm)
    assert i2.shape == (4, 3, 8, 8) and l2.shape == (4, 68, 2) and v2.shape == (4, 68)
    assert torch.equal(i2[2:], imgs.flip(-1)) and torch.equal(l2[3], flip_landmarks(lm, 8)[1])


def test_flip_theta_known_answer():
    th = torch.tensor([[0.1, 0.2, 0.3, 40.0, 50.0, 0.5, 1.0, -1.0]], dtype=torch.float64)
    out = flip_theta(th, 224)
    assert out.tolist() == [[0.1, -0.2, -0.3, 183.0, 50.0, 0.5, 1.0, -1.0]]


@pytest.mark.parametrize("visibility", ["backface", "depth"])
def test_flipped_image_gives_the_mirrored_flattened_output(visibility):
    """Symmetric model: STN(flip(image), flip(theta)) == flip_lr(STN(image, theta)), up to rounding;
    projected landmarks map to the flipped, re-ordered landmarks."""
    m = syn.make_face_model(33)  # odd R: midline landmarks are their own mirror
    stn = MorphableSTN(m, visibility=visibility, landmarks="aflw21").double()
    g = torch.Generator().manual_seed(0)
    H, W = 200, 224
    imgs = torch.rand(3, 3, H, W, generator=g, dtype=torch.float64)
    th = torch.zeros(3, stn.n_params, dtype=torch.float64)
    th[:, :3] = syn.euler_to_axis_angle(np.radians([25.0, -50.0, 65.0]), np.radians([10.0, -5.0, 0.0]),
                                        np.radians([5.0, 0.0, -8.0]))
    th[:, 3:5] = torch.tensor([[100.0, 95.0], [120.5, 101.0], [111.0, 99.5]], dtype=torch.float64)
    th[:, 5] = math.log(0.95)
    th[:, 6:] = torch.randn(3, stn.n_params - 6, generator=g, dtype=torch.float64)
    a = stn(imgs, th)
    b = stn(flip_images(imgs), flip_theta(th, W))
    assert (b["flattened"] - a["flattened"].flip(-1)).abs().max() < 1e-9
    agree = (b["mask"] == a["mask"].flip(-1)).double().mean()
    assert agree >= (1.0 if visibility == "backface" else 0.98)
    assert (a["mask"] == 0).any()  # the poses do hide something
    assert torch.allclose(b["landmarks"], flip_landmarks(a["landmarks"], W), atol=1e-9)
