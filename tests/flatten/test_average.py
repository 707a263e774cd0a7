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


def test_average_by_folder_writes_one_mean_per_person(corpus, default_grid, tmp_path, capsys):
    """A tree of people (as flatten writes it for people/Name/photo.jpg): one mean per folder,
    named after it, side by side; a rerun keeps them; the flat mode points at --by-folder."""
    d, _ = corpus
    people = tmp_path / "people"
    for name, photos in (("Ann", ("plain.jpg", "grey.png")), ("Bob", ("cmyk.jpg",))):
        (people / name).mkdir(parents=True)
        for p in photos:
            (people / name / p).write_bytes((d / p).read_bytes())
    flat = tmp_path / "flat"
    assert main(["flatten", str(people), "--out", str(flat), "--model", str(default_grid[2]), "--quiet",
                 "--no-mesh"]) == 0
    # a second face in one of Ann's photos (someone behind her) stays out of her mean
    (flat / "Ann" / "plain_face1_texture.png").write_bytes((flat / "Bob" / "cmyk_face0_texture.png").read_bytes())
    means = tmp_path / "means"
    assert main(["average", str(flat), "--by-folder", "--out", str(means)]) == 0
    err = capsys.readouterr().err
    assert "wrote 2 mean(s) of 3 textures, one per folder" in err
    assert sorted(p.name for p in means.iterdir()) == ["Ann_mean.png", "Ann_mean_coverage.png", "Bob_mean.png",
                                                       "Bob_mean_coverage.png"]
    assert np.asarray(Image.open(means / "Ann_mean.png")).shape[2] == 4
    assert main(["average", str(flat), "--by-folder", "--out", str(means)]) == 0
    assert "kept 2 that exist" in capsys.readouterr().err
    assert main(["average", str(flat), "--out", str(tmp_path / "m.png")]) == 2
    assert "use --by-folder" in capsys.readouterr().err
    assert main(["average", str(tmp_path / "means"), "--by-folder", "--out", str(tmp_path / "x")]) == 2
