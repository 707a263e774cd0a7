"""stn3dmm average end to end: the visibility-weighted mean of textures stn3dmm flatten wrote."""

import numpy as np
from PIL import Image

from stn3dmm.cli import main


def test_average_of_flattened_textures(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    out = tmp_path / "out"
    main(["flatten", str(d / "plain.jpg"), str(d / "grey.png"), str(d / "cmyk.jpg"), "--out", str(out),
          "--model", str(default_grid[2]), "--quiet", "--no-mesh"])
    (out / "junk_texture.png").write_text("not a png")
    assert main(["average", str(out), "--out", str(tmp_path / "mean.png")]) == 0
    err = capsys.readouterr().err
    assert "averaged 3 textures (1 skipped)" in err and "junk_texture.png" in err
    mean = np.asarray(Image.open(tmp_path / "mean.png"))
    cov = np.asarray(Image.open(tmp_path / "mean_coverage.png"))
    assert mean.shape[2] == 4 and cov.shape[:2] == mean.shape[:2]
    assert main(["average", str(out), "--out", str(tmp_path / "mean.png")]) == 2      # exists
    assert main(["average", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.png")]) == 2
