"""stn3dmm demo: the original's six photos (when ../shared/data is present) and bad input."""

import numpy as np
import torch
import pytest
import scipy.io

from stn3dmm.cli import main


def test_demo_writes_every_figure(default_grid, shared_dir, tmp_path, capsys):
    data = shared_dir / "data" / "demodata.mat"
    if not data.exists():
        pytest.skip(f"{data} not present (the shared data folder is not shipped with stn3dmm)")
    assert main(["demo", "--data", str(data), "--model", str(default_grid[2]), "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["convergence.png"] + [f"demo_{k}.png" for k in range(1, 7)] + ["visibility_yaw.png"]
    assert "Levenberg-Marquardt, 5+5" in err and "gradient descent (original)" in err


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("text", "not a readable MATLAB file"),
    ({"Images": np.zeros((224, 224, 3, 2))}, "no variable 'Labels'"),
    ({"Images": np.zeros((224, 224, 3, 2)), "Labels": np.zeros((1, 2, 21, 3))}, "expected"),
])
def test_demo_bad_data_file(tmp_path, capsys, content, message):
    f = tmp_path / "demodata.mat"
    if isinstance(content, dict):
        scipy.io.savemat(f, content)
    elif content:
        f.write_text(content)
    assert main(["demo", "--data", str(f), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_demo_photos_as_an_evaluation_set(shared_dir):
    data = shared_dir / "data" / "demodata.mat"
    if not data.exists():
        pytest.skip(f"{data} not present (the shared data folder is not shipped with stn3dmm)")
    from stn3dmm.demo import DemoPhotos, read_demodata

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
