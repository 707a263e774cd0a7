"""Tests of the four losses against hand computations on small tensors."""

import math

import pytest
import torch

from stn3dmm.stn.losses import ORIGINAL_WEIGHTS, landmark_loss, prior_loss, siamese_loss, symmetry_loss, total_loss

nan = float("nan")


def test_landmark_loss_by_hand():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]],
                         [[2.0, 0.0], [0.0, 0.0], [1.0, 2.0]]])
    tgt = torch.tensor([[[3.0, 4.0], [1.0, 2.0], [nan, nan]],
                        [[2.0, 1.0], [0.0, 0.0], [4.0, 6.0]]])
    vis = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 2.0]])
    # image 0: 1*25 + 0.5*1 (third missing); image 1: 1*1 + 1*0 + 2*25
    assert landmark_loss(pred, tgt, vis).item() == pytest.approx(25 + 0.5 + 1 + 50)
    assert landmark_loss(pred, tgt, vis, "mean").item() == pytest.approx(76.5 / 5.5)
    # default visibility: 1 where the target is finite
    assert landmark_loss(pred, tgt).item() == pytest.approx(25 + 1 + 1 + 0 + 25)


def test_landmark_loss_gradient_ignores_missing_nan_targets():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]], requires_grad=True)
    tgt = torch.tensor([[[3.0, 4.0], [nan, nan]]])
    landmark_loss(pred, tgt, torch.tensor([[1.0, 0.0]])).backward()
    assert torch.equal(pred.grad, torch.tensor([[[-6.0, -8.0], [0.0, 0.0]]]))
    with pytest.raises(ValueError, match="NaN"):
        landmark_loss(pred, tgt, torch.ones(1, 2))
    with pytest.raises(ValueError):
        landmark_loss(pred, tgt[:, :1])
    with pytest.raises(ValueError, match="reduction"):
        landmark_loss(pred, tgt, reduction="none")


def test_prior_loss_by_hand():
    a = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    assert prior_loss(a).item() == pytest.approx(1 + 4 + 0.25 + 9 + 1)
    assert prior_loss(a, "mean").item() == pytest.approx(15.25 / 6)


def _img(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_symmetry_loss_by_hand():
    # one image, 2 channels, 2 x 3 pixels; zero pixels (all channels 0) are excluded
    c0 = _img([[1.0, 2.0, 0.0], [4.0, 5.0, 6.0]])
    c1 = _img([[1.0, 0.0, 0.0], [1.0, 1.0, 3.0]])
    x = torch.stack([c0, c1])[None]  # (1, 2, 2, 3)
    # flipped: c0' = [[0,2,1],[6,5,4]], c1' = [[0,0,1],[3,1,1]]
    # pixel (0,0): x non-zero, flip (0,0) = 0 in both channels -> excluded; (0,2) excluded the same way
    # pixel (0,1): x (2,0) non-zero, flip (2,0) non-zero -> diff 0
    # row 1 all non-zero in both: (1,0): (4-6)^2 + (1-3)^2 = 8; (1,1): 0; (1,2): (6-4)^2 + (3-1)^2 = 8
    # count = 4 pixels
    assert symmetry_loss(x).item() == pytest.approx(16 / 4)
    assert symmetry_loss(x, "mean").item() == pytest.approx(16 / 4 / 2)
    # a symmetric image has zero loss; a batch sums per-image values
    sym = torch.stack([c0 + c0.flip(-1), c1 + c1.flip(-1)])[None]
    assert symmetry_loss(sym).item() == 0.0
    both = torch.cat([x, sym, x])
    assert symmetry_loss(both).item() == pytest.approx(8.0)
    assert symmetry_loss(both, "mean").item() == pytest.approx(8.0 / 3 / 2)


def test_siamese_loss_by_hand_and_empty_overlap():
    a = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    b = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    a[0, 0] = _img([[1.0, 2.0], [3.0, 0.0]])
    b[0, 0] = _img([[2.0, 0.0], [1.0, 5.0]])
    # overlap: (0,0) diff 1, (1,0) diff 2 -> (1 + 4) / 2; image 1 has no overlap -> 0
    a[1, 0] = _img([[1.0, 0.0], [0.0, 0.0]])
    b[1, 0] = _img([[0.0, 7.0], [0.0, 0.0]])
    assert siamese_loss(a, b).item() == pytest.approx(2.5)
    assert siamese_loss(a, b, "mean").item() == pytest.approx(2.5 / 2)
    with pytest.raises(ValueError):
        siamese_loss(a, b[:1])


def test_original_reduction_by_hand():
    """The original's normalisation: the batch's squared differences over entries non-zero in both
    (per channel), divided by the non-zero entries of the whole batch."""
    # one image, channels [1, 0, 3] and [2, 5, 0]; flipped [3, 0, 1] and [0, 5, 2]
    # channel 0: entries 0 and 2 non-zero in both, d = -2, 2 -> 8; channel 1: only entry 1, d = 0
    # non-zero entries of x: 2 + 2 = 4 -> 8 / 4
    x = _img([[[[1.0, 0.0, 3.0]], [[2.0, 5.0, 0.0]]]])
    assert symmetry_loss(x, "original").item() == pytest.approx(2.0)
    assert symmetry_loss(x).item() == pytest.approx(16 / 3)     # ours: a pixel counts if any channel is non-zero
    # two images: [1, 3] (d = -2, 2 -> 8) and [2, 0] (nothing in both): 8 over 3 non-zero entries;
    # ours: 8 / 2 + 0
    xb = _img([[[[1.0, 3.0]]], [[[2.0, 0.0]]]])
    assert symmetry_loss(xb, "original").item() == pytest.approx(8 / 3)
    assert symmetry_loss(xb).item() == pytest.approx(4.0)
    # siamese: a = [1, 0], b = [2, 5]: d = -1 on the first entry; 1 / (1 + 2 non-zero entries)
    a, b = _img([[[[1.0, 0.0]]]]), _img([[[[2.0, 5.0]]]])
    assert siamese_loss(a, b, "original").item() == pytest.approx(1 / 3)
    # landmark and prior: the original's are the sums
    pred, tgt = torch.zeros(2, 3, 2), torch.ones(2, 3, 2)
    assert landmark_loss(pred, tgt, reduction="original").item() == 12.0
    assert prior_loss(torch.ones(2, 3), "original").item() == 6.0
    terms = total_loss(predicted=pred, target=tgt, alpha=torch.ones(2, 3), flattened=xb, flattened_pair=xb,
                       reduction="original")
    assert terms["symmetry"].item() == pytest.approx(1e-4 * 8 / 3) and terms["siamese"].item() == 0.0
    assert terms["landmark"].item() == pytest.approx(0.8998 * 12) and terms["prior"].item() == pytest.approx(0.6)
    # an all-zero batch gives 0, not NaN
    assert symmetry_loss(torch.zeros(1, 1, 2, 2), "original").item() == 0.0


def test_original_reduction_has_the_true_gradient_not_the_originals_backward():
    """Autograd's gradient of the original's value, worked out by hand. With N = 4 non-zero entries,
    L = [(x0 - x2)^2 + (x2 - x0)^2] / N on channel 0, so dL/dx0 = 4 (x0 - x2) / N = -2 and dL/dx2 = 2.
    The original's backward, 2 d m = (-4, 0, 4), is N / 2 = 2 times that; its siamese backward
    gives b the gradient of a (2 d m for both) where the true one is -2 d m / N."""
    x = _img([[[[1.0, 0.0, 3.0]], [[2.0, 5.0, 0.0]]]]).requires_grad_(True)
    symmetry_loss(x, "original").backward()
    assert x.grad.tolist() == [[[[-2.0, 0.0, 2.0]], [[0.0, 0.0, 0.0]]]]
    a = _img([[[[1.0, 0.0]]]]).requires_grad_(True)
    b = _img([[[[2.0, 5.0]]]]).requires_grad_(True)
    siamese_loss(a, b, "original").backward()
    assert torch.allclose(a.grad, _img([[[[-2 / 3, 0.0]]]])) and torch.allclose(b.grad, -a.grad)


def test_paired_losses_gradient_flows_through_both_and_not_the_mask():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    siamese_loss(x, y).backward()
    assert torch.allclose(x.grad, 2 * (x - y).detach() / 16) and torch.allclose(y.grad, -x.grad)
    assert torch.autograd.gradcheck(lambda t: symmetry_loss(t), (x,))


def test_total_loss_uses_original_weights():
    pred = torch.zeros(1, 2, 2)
    tgt = torch.ones(1, 2, 2)
    alpha = torch.ones(1, 3)
    flat = torch.rand(2, 3, 4, 4)
    terms = total_loss(predicted=pred, target=tgt, alpha=alpha, flattened=flat, flattened_pair=flat.flip(0))
    assert terms["landmark"].item() == pytest.approx(0.8998 * 4)
    assert terms["prior"].item() == pytest.approx(0.1 * 3)
    assert terms["total"].item() == pytest.approx(sum(v.item() for k, v in terms.items() if k != "total"))
    assert ORIGINAL_WEIGHTS == {"landmark": 0.8998, "prior": 0.1, "siamese": 0.0001, "symmetry": 0.0001}
    assert math.isclose(total_loss(alpha=alpha, weights={"prior": 1.0})["total"].item(), 3.0)
    with pytest.raises(ValueError):
        total_loss()
