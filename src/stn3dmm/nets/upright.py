"""The up-direction network: which way is up in a face crop, over the whole circle.

The localiser learned faces rolled within 25 degrees, and its mirror gap cannot always tell a face
from the same face upside down (docs/benchmarks.md, "Upright faces fitted upside down"). This
small network answers that question alone: from a crop around a face, turned any way, it gives a
distribution over the face's up direction in :data:`BINS` bins of the circle (0: the top of the
head at the top of the crop; positive: turned clockwise). Rotation prediction is a task small
convolutional networks learn well (Gidaris et al. 2018, "Unsupervised representation learning by
predicting image rotations").

* :class:`UprightNet` -- crops ``(B, 3, S, S)`` in [0, 1] -> logits ``(B, BINS)``; it sees only
  the disc inscribed in the crop, so a crop's corners, which fall outside the photo at some turns,
  tell it nothing about the turn.
* :func:`bin_centres`, :func:`soft_targets` -- the bins and the training target of an angle.
* :func:`p_upside_down`, :func:`up_angle` -- what the logits say: the probability that the face's
  top lies more than a quarter turn from the crop's, and the mean direction.
* :func:`load_upright` -- the trained network shipped in ``weights/upright.pt``.

May import: :mod:`stn3dmm.core` only.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .shipped import WEIGHTS_DIR

#: Bins of the up direction over the circle (10 degrees each).
BINS = 36
#: The crop side the network takes, px.
SIZE = 64
#: The crop's side in sides of the 68 points' square (wider than the localiser's 1: hair, ears,
#: neck and shoulders show which way is up).
CONTEXT = 1.5
#: The soft target's spread, radians.
SIGMA = math.radians(10.0)

WEIGHTS = WEIGHTS_DIR / "upright.pt"


def bin_centres(bins: int = BINS, device=None) -> torch.Tensor:
    """``(bins,)`` angles in (-pi, pi], the first at -pi + one bin.

    >>> bin_centres(4)
    tensor([-1.5708,  0.0000,  1.5708,  3.1416])
    """
    return (torch.arange(1, bins + 1, dtype=torch.float32, device=device) * (2 * math.pi / bins)) - math.pi


def soft_targets(angles: torch.Tensor, bins: int = BINS, sigma: float = SIGMA) -> torch.Tensor:
    """``(B,)`` angles (radians) -> ``(B, bins)`` target distributions: a wrapped Gaussian on the bins.

    >>> t = soft_targets(torch.tensor([0.0, math.pi]), 4, 0.3)
    >>> t.argmax(1).tolist(), round(float(t.sum(1)[0]), 4)
    ([1, 3], 1.0)
    """
    d = torch.remainder(angles[:, None] - bin_centres(bins, angles.device)[None] + math.pi, 2 * math.pi) - math.pi
    w = torch.exp(-0.5 * (d / sigma) ** 2)
    return w / w.sum(1, keepdim=True)


def p_upside_down(logits: torch.Tensor) -> torch.Tensor:
    """``(B, bins)`` logits -> ``(B,)`` the probability that the up direction is more than a
    quarter turn from the crop's (a bin on the boundary counts half).

    >>> p_upside_down(torch.tensor([[0.0, 9.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0], [9.0, 0.0, 0.0, 0.0]]))
    tensor([2.4673e-04, 9.9975e-01, 5.0000e-01])
    """
    c = bin_centres(logits.shape[1], logits.device).abs()
    w = torch.where((c - math.pi / 2).abs() < 1e-4, torch.full_like(c, 0.5), (c > math.pi / 2).float())
    return (logits.softmax(1) * w).sum(1)


def up_angle(logits: torch.Tensor) -> torch.Tensor:
    """``(B, bins)`` logits -> ``(B,)`` the circular mean of the up direction, radians.

    >>> up_angle(torch.tensor([[0.0, 9.0, 0.0, 0.0]])).abs() < 1e-3
    tensor([True])
    """
    p, c = logits.softmax(1), bin_centres(logits.shape[1], logits.device)
    return torch.atan2((p * c.sin()).sum(1), (p * c.cos()).sum(1))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class UprightNet(nn.Module):
    """Crops ``(B, 3, S, S)`` in [0, 1] -> up-direction logits ``(B, bins)``: four 3 x 3
    convolution blocks, each halving the side, then one linear layer on the 4 x 4 map (its
    layout, which pooling would lose, is what tells up from down).

    >>> UprightNet()(torch.rand(2, 3, SIZE, SIZE)).shape
    torch.Size([2, 36])
    """

    def __init__(self, size: int = SIZE, bins: int = BINS, widths=(16, 32, 64, 128)):
        super().__init__()
        chans = (3, *widths)
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        side = size // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(widths[-1] * side * side, bins))
        r = (torch.arange(size, dtype=torch.float32) + 0.5 - size / 2) / (size / 2)
        self.register_buffer("disc", ((r[:, None] ** 2 + r[None] ** 2) <= 1.0).float()[None, None], persistent=False)
        self.size = size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"UprightNet takes {self.size} x {self.size} crops, got {tuple(images.shape[-2:])}")
        x = (images - 0.5) / 0.25 * self.disc
        return self.head(self.features(x))


def load_upright(path=None, device="cpu") -> UprightNet | None:
    """The shipped up-direction network in eval mode (``weights/upright.pt``; ``path``: another
    state dict), or None where the package has none. Loaded with ``weights_only=True``."""
    path = Path(path) if path is not None else WEIGHTS
    if not path.exists():
        return None
    net = UprightNet()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:      # a clear message naming the file, whatever torch raised
        raise ValueError(f"{path}: not the up-direction network's weights ({e})") from e
    return net.eval().to(device)
