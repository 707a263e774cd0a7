"""The original demo's six photos as an evaluation data set (when ../shared/data is present)."""

import pytest
import torch

from stn3dmm.training.data.demo_photos import DemoPhotos, read_demodata


def test_demo_photos_as_an_evaluation_set(shared_dir):
    data = shared_dir / "data" / "demodata.mat"
    if not data.exists():
        pytest.skip(f"{data} not present (the shared data folder is not shipped with stn3dmm)")
    ds = DemoPhotos(data, size=112)
    _, labels = read_demodata(data)
    assert len(ds) == 6 and ds[0]["image"].shape == (3, 112, 112)
    for k in range(6):
        lm = ds[k]["landmarks"]
        assert ((lm > 0) & (lm < 111)).all()                       # the face is inside its crop
        # a similarity of the labels: the ratio of distances is kept
        a, b = labels[k], lm.double()
        ratio = (b[0] - b[20]).norm() / (a[0] - a[20]).norm()
        assert torch.allclose((b[5] - b[12]).norm(), ratio * (a[5] - a[12]).norm(), rtol=1e-4)
