"""stn3dmm demo: the original's six photos (when ../shared/data is present) and bad input."""

import numpy as np
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
