"""stn3dmm flatten / average end to end: a corpus of good and bad files the tests make from
matplotlib's sample photo, the outputs, and the consistency of the flattened textures under
rotation, scale, shift and mirroring of the photo."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from stn3dmm.cli import main
from stn3dmm.export import read_obj


@pytest.fixture(scope="module")
def source():
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


@pytest.fixture(scope="module")
def flattener(default_grid):
    from stn3dmm.flatten import Flattener

    return Flattener(default_grid[0])


@pytest.fixture(scope="module")
def corpus(source, tmp_path_factory):
    """Good photos in many encodings, and bad files; name -> expected ('ok' or a reason word)."""
    d = tmp_path_factory.mktemp("flatten-corpus")
    src = np.asarray(source)
    exp = {}
    source.save(d / "plain.jpg", quality=92)
    exp["plain"] = "ok"
    source.convert("L").save(d / "grey.png")
    exp["grey"] = "ok"
    source.convert("CMYK").save(d / "cmyk.jpg", quality=92)
    exp["cmyk"] = "ok"
    Image.fromarray(np.concatenate([src, np.full(src.shape[:2] + (1,), 255, np.uint8)], -1)).save(d / "rgba.png")
    exp["rgba"] = "ok"
    Image.fromarray((src[..., 0].astype(np.uint16) * 257)).save(d / "grey16.png")
    exp["grey16"] = "ok"
    ex = Image.Exif()
    ex[0x0112] = 6                                   # stored turned; the tag says rotate 90 degrees
    source.transpose(Image.Transpose.ROTATE_90).save(d / "exif_rotated.jpg", exif=ex, quality=92)
    exp["exif_rotated"] = "ok"
    source.resize((source.width * 8, source.height * 8), Image.Resampling.BILINEAR).save(d / "huge.jpg", quality=70)
    exp["huge"] = "ok"
    source.resize((52, 61)).save(d / "tiny.png")
    exp["tiny"] = "tiny"
    Image.fromarray((np.indices((300, 400)).sum(0) % 50 * 5).astype(np.uint8)).save(d / "noface.png")
    exp["noface"] = "no face"
    data = (d / "plain.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    exp["truncated"] = "unreadable"
    (d / "notes.jpg").write_text("not a photo")
    exp["notes"] = "unreadable"
    return d, exp


def test_flatten_a_batch_of_good_and_bad_files(corpus, default_grid, tmp_path, capsys):
    d, expected = corpus
    out = tmp_path / "out"
    rc = main(["flatten", str(d), "--out", str(out), "--model", str(default_grid[2]), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    ok = {k for k, v in expected.items() if v == "ok"}
    for stem in ok:
        for suffix in ("_texture.png", "_completed.png", "_overlay.png", ".json", ".obj", ".mtl", ".png"):
            assert (out / f"{stem}_face0{suffix}").exists(), (stem, suffix, err)
    for stem, why in expected.items():
        if why != "ok":
            assert not list(out.glob(f"{stem}_*")), stem
            line = next((ln for ln in err.splitlines() if f"{stem}." in ln and ":" in ln), "")
            assert why in line, (stem, line)
    assert f"{len(ok)} of {len(expected)} photos flattened" in err
    assert not list(out.glob("*.tmp*"))
    # the outputs: RGBA texture with alpha = visibility, JSON, a mesh that parses
    tex = np.asarray(Image.open(out / "plain_face0_texture.png"))
    R = default_grid[0].res
    assert tex.shape == (R, R, 4) and set(np.unique(tex[..., 3])) <= {0, 255} and 0.5 < (tex[..., 3] > 0).mean() < 1
    info = json.loads((out / "plain_face0.json").read_text())
    assert len(info["theta"]) == 26 and info["fit_error_px"] < 3.0
    obj = read_obj(out / "plain_face0.obj")
    assert obj["v"].shape == (R * R, 3) and obj["f_v"].shape == (2 * (R - 1) ** 2, 3)
    assert 0 <= obj["vt"].min() and obj["vt"].max() <= 1 and obj["mtllib"] == "plain_face0.mtl"
    # the EXIF-rotated copy was turned upright: its texture matches the plain one
    a = np.asarray(Image.open(out / "plain_face0_texture.png")).astype(float)
    b = np.asarray(Image.open(out / "exif_rotated_face0_texture.png")).astype(float)
    both = (a[..., 3] > 0) & (b[..., 3] > 0)
    assert np.abs(a[both, :3] - b[both, :3]).mean() < 12


def test_existing_outputs_are_kept_without_overwrite(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    one = tmp_path / "one"
    one.mkdir()
    (one / "plain.jpg").write_bytes((d / "plain.jpg").read_bytes())
    out = tmp_path / "out"
    args = ["flatten", str(one), "--out", str(out), "--model", str(default_grid[2]), "--quiet", "--no-mesh"]
    assert main(args) == 0
    f = out / "plain_face0_texture.png"
    os.utime(f, (1, 1))
    assert main(args) == 1                        # nothing new succeeded
    assert "use --overwrite" in capsys.readouterr().err and f.stat().st_mtime == 1
    assert main(args + ["--overwrite"]) == 0 and f.stat().st_mtime > 1


def test_nothing_usable_exits_non_zero(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    rc = main(["flatten", str(d / "noface.png"), str(d / "notes.jpg"), "--out", str(tmp_path / "o"),
               "--model", str(default_grid[2]), "--quiet"])
    assert rc == 1 and "0 of 2 photos flattened" in capsys.readouterr().err


def test_several_faces_largest_first(source, default_grid, tmp_path):
    big = source
    small = source.resize((source.width * 2 // 3, source.height * 2 // 3))
    canvas = Image.new("RGB", (big.width + small.width + 40, big.height), (128, 128, 128))
    canvas.paste(small, (0, 60))
    canvas.paste(big, (small.width + 40, 0))
    canvas.save(tmp_path / "two.png")
    out = tmp_path / "out"
    assert main(["flatten", str(tmp_path / "two.png"), "--out", str(out), "--model", str(default_grid[2]),
                 "--quiet", "--no-mesh"]) == 0
    f0, f1 = (json.loads((out / f"two_face{k}.json").read_text()) for k in (0, 1))
    w = lambda f: f["detection"]["bbox"][2] - f["detection"]["bbox"][0]  # noqa: E731
    assert w(f0) > w(f1) and f0["detection"]["bbox"][0] > f1["detection"]["bbox"][0]


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


def _reencode(im, q=90):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


CONSISTENCY = {   # transform -> (make, compare mirrored, MAD limit on the 0-255 scale)
    "re-encoded JPEG q90 (reference)": (lambda s: _reencode(s), False, 6),
    "rotated 30 degrees": (lambda s: s.rotate(30, resample=Image.Resampling.BICUBIC, expand=True), False, 16),
    "rotated -15 degrees": (lambda s: s.rotate(-15, resample=Image.Resampling.BICUBIC, expand=True), False, 16),
    "scaled 0.5x": (lambda s: s.resize((s.width // 2, s.height // 2), Image.Resampling.LANCZOS), False, 12),
    "scaled 2x": (lambda s: s.resize((s.width * 2, s.height * 2), Image.Resampling.LANCZOS), False, 8),
    "shifted": (lambda s: Image.fromarray(np.pad(np.asarray(s), ((60, 0), (0, 80), (0, 0)))), False, 10),
    "mirrored": (lambda s: s.transpose(Image.Transpose.FLIP_LEFT_RIGHT), True, 16),
}


@pytest.mark.parametrize("name", list(CONSISTENCY))
def test_flattened_texture_is_consistent_under_photo_transforms(name, source, flattener):
    from stn3dmm.flatten import flatten_largest, texture_difference

    f = lambda im: np.asarray(im, dtype=np.float32) / 255  # noqa: E731
    base = flatten_largest(flattener, f(source))
    make, mirrored, limit = CONSISTENCY[name]
    other = flatten_largest(flattener, f(make(source)))
    mad, both = texture_difference(base, other, mirror=mirrored)
    print(f"\nconsistency, {name}: mean |difference| {mad:.2f} / 255 over {100 * both:.0f}% of the grid")
    assert both > 0.6 and mad < limit
