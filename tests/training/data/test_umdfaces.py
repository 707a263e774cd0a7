"""UMDFaces CSV reader on a tiny fixture in the real format (see testkit.reader_fixtures)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from testkit.reader_fixtures import AFLW21, dot_image, face_points, write_umd_csv, assert_on_dots

from stn3dmm.training.data.crop import FRAMING, landmark_square
from stn3dmm.training.data.readers import ReaderError, UMDFaces
from stn3dmm.photos import PhotoError
from stn3dmm.photos.crop import DEFAULT_MARGIN

# (subject, file, image size, face centre, scale, pose)
ITEMS = [
    (7, "Alice/alice_1.png", (400, 360), (190, 170), 80, (10.5, -3.0, 2.0)),
    (7, "Alice/alice_2.jpg", (320, 420), (170, 230), 70, (-35.0, 5.5, -8.0)),
    (12, "Bob/bob_1.png", (500, 300), (300, 140), 60, (60.0, 0.0, 1.0)),
    (30, "Carol/carol_1.png", (360, 360), (180, 180), 100, (0.0, 0.0, 0.0)),
]
MISSING = {2: (12, 16, 20)}   # item -> 0-based points written as missing (0 / negative / empty)
HIDDEN = {2: (4,)}            # item -> points labelled with VIS 0 (coordinates kept)


def _rows(root, jpeg_quality=95):
    rows = []
    for n, (subj, file, (w, h), c, s, pose) in enumerate(ITEMS):
        pts = face_points(AFLW21, c, s)
        drawn = pts.copy()
        for k in MISSING.get(n, ()):
            drawn[k] = np.nan
        img = dot_image(w, h, drawn, seed=n)
        p = root / file
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p, **({"quality": jpeg_quality} if p.suffix == ".jpg" else {}))
        written = [(round(x, 3), round(y, 3)) for x, y in pts]
        for j, k in enumerate(MISSING.get(n, ())):
            written[k] = [(0, 0), (-1, -1), (None, None)][j % 3]
        vis = [1] * 21
        for k in HIDDEN.get(n, ()):
            vis[k] = 0
        lo, hi = pts.min(0), pts.max(0)
        rows.append({"subject": subj, "file": file, "box": (lo[0], lo[1] + 10, hi[0] - lo[0], hi[1] - lo[1] - 10),
                     "pose": pose, "points": written, "vis": vis})
    return rows


@pytest.fixture(scope="module")
def umd(tmp_path_factory):
    root = tmp_path_factory.mktemp("umdfaces_batch1")
    rows = _rows(root)
    csv_path = write_umd_csv(root / "umdfaces_batch1_ultraface.csv", rows)
    novis = write_umd_csv(root / "no_vis.csv", rows, vis=False, shuffle_seed=5, bom=False)
    return root, csv_path, novis, rows


def test_reads_by_header_name(umd):
    root, csv_path, _, rows = umd
    ds = UMDFaces(csv_path, size=224)
    assert len(ds) == 4 and ds.landmark_set == "aflw21" and ds.excluded == []
    assert ds.identities.tolist() == [7, 7, 12, 30]
    for i, r in enumerate(rows):
        s = ds[i]
        assert s["image"].shape == (3, 224, 224) and s["image"].dtype == torch.float32
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        assert s["landmarks"].shape == (21, 2) and s["landmarks"].dtype == torch.float32
        assert s["visibility"].shape == (21,)
        assert int(s["identity"]) == r["subject"] and int(s["index"]) == i
        assert np.allclose(s["pose"].numpy(), r["pose"])


def test_crops_land_on_the_dots(umd):
    _, csv_path, _, _ = umd
    ds = UMDFaces(csv_path, size=224)
    for i in range(len(ds)):
        assert assert_on_dots(ds[i]) >= 15


def test_missing_and_hidden_points(umd):
    _, csv_path, novis, _ = umd
    s = UMDFaces(csv_path)[2]
    lm, vis = s["landmarks"].numpy(), s["visibility"].numpy()
    for k in MISSING[2]:                       # 0, negative and empty coordinates are missing
        assert np.isnan(lm[k]).all() and vis[k] == 0
    assert np.isfinite(lm[4]).all() and vis[4] == 0     # VIS 0 keeps the point, invisible
    others = [k for k in range(21) if k not in MISSING[2] and k != 4]
    assert (vis[others] == 1).all() and np.isfinite(lm[others]).all()
    # without VIS columns: visible exactly where the coordinates are valid
    s2 = UMDFaces(novis)[2]
    v2 = s2["visibility"].numpy()
    assert (v2[list(MISSING[2])] == 0).all() and v2[4] == 1 and (v2[others] == 1).all()
    assert torch.equal(torch.isnan(s2["landmarks"]), torch.isnan(s["landmarks"]))


def test_round_trip_and_framing(umd):
    _, csv_path, _, rows = umd
    ds = UMDFaces(csv_path, size=224)
    for i, r in enumerate(rows):
        s, tr = ds.item(i)
        want = np.array([[np.nan, np.nan] if x in (None, 0, -1) else [x, y] for x, y in r["points"]], float)
        back = tr.to_source(s["landmarks"].numpy().astype(np.float64))
        ok = np.isfinite(want).all(1)
        assert np.allclose(back[ok], want[ok], atol=2e-3)
        # the square is the mesh-equivalent box of the labelled points, with the photo pipeline's margin
        center, side = landmark_square(want, "aflw21", DEFAULT_MARGIN)
        assert np.allclose(tr.apply(center), [111.5, 111.5], atol=1e-6)
        assert math.isclose(tr.scale, 224 / side, rel_tol=1e-9)
    k, _, fy = FRAMING["aflw21"]
    lo, hi = want[ok].min(0), want[ok].max(0)
    assert math.isclose(side, max(hi - lo) * k * (1 + 2 * DEFAULT_MARGIN))
    assert center[1] < (lo[1] + hi[1]) / 2  # shifted up, towards the forehead the face mesh covers


def test_size_112_and_box_framing(umd):
    _, csv_path, _, rows = umd
    ds = UMDFaces(csv_path, size=112, framing="box")
    s, tr = ds.item(0)
    assert s["image"].shape == (3, 112, 112)
    x, y, w, h = rows[0]["box"]
    assert np.allclose(tr.apply([x + w / 2, y + h / 2]), [55.5, 55.5], atol=1e-6)
    assert math.isclose(tr.scale, 112 / (max(w, h) * (1 + 2 * DEFAULT_MARGIN)), rel_tol=1e-6)
    assert assert_on_dots(s) >= 10


def test_bad_images(umd, tmp_path):
    root, _, _, rows = umd
    good = [dict(r, file=str(root / r["file"])) for r in rows]  # absolute FILE paths
    (tmp_path / "broken.png").write_bytes((root / rows[0]["file"]).read_bytes()[:300])
    bad_rows = good + [dict(good[0], file="missing/nope.png"), dict(good[0], file="broken.png")]
    csv_path = write_umd_csv(tmp_path / "mixed.csv", bad_rows)
    # default check="exists": the missing file is left out with a warning naming it
    with pytest.warns(UserWarning, match="nope.png"):
        ds = UMDFaces(csv_path)
    assert len(ds) == 5 and any("nope.png" in str(p) for p, _ in ds.excluded)
    with pytest.raises(PhotoError, match="broken.png"):  # corrupt: refused when read, never garbage
        ds[4]
    # a full check leaves out both
    with pytest.warns(UserWarning) as rec:
        ds = UMDFaces(csv_path, check="decode")
    assert len(ds) == 4 and "broken.png" in str(rec[0].message) and "nope.png" in str(rec[0].message)
    with pytest.raises(ReaderError, match="nope.png") as e:
        UMDFaces(csv_path, check="decode", skip_bad=False)
    assert "broken.png" in str(e.value) and len(e.value.bad) == 2
    # "header" catches files that are not images at all, not truncated ones
    (tmp_path / "broken.png").write_text("not a png")
    with pytest.warns(UserWarning, match="not an image"):
        assert len(UMDFaces(csv_path, check="header")) == 4


def test_missing_column_and_multiple_csvs(umd, tmp_path):
    root, csv_path, _, rows = umd
    text = csv_path.read_text(encoding="utf-8-sig").replace("P3Y", "P3_Y", 1)
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ReaderError, match="P3Y"):
        UMDFaces(tmp_path / "bad.csv", image_root=root)
    second = write_umd_csv(tmp_path / "batch2.csv", rows[:2])
    ds = UMDFaces([csv_path, second], image_root=["", root])
    assert len(ds) == 6
    assert ds.identities.tolist() == [7, 7, 12, 30, 31 + 7, 31 + 7]  # batch 2 ids shifted past batch 1's


def test_exif_orientation_labels_follow_the_stored_pixels(tmp_path):
    """Labels on the stored pixel grid land on their dots for every EXIF orientation (read_photo
    turns the image upright); read as if made on the upright image they do not."""
    pts = face_points(AFLW21, (150, 130), 60)
    img = dot_image(300, 260, pts)
    rows = []
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        Image.fromarray(img).save(tmp_path / f"rot{o}.png", exif=exif)
        rows.append({"subject": o, "file": f"rot{o}.png", "box": (0, 0, 10, 10), "pose": (0, 0, 0),
                     "points": [tuple(p) for p in pts.round(3)]})
    csv_path = write_umd_csv(tmp_path / "exif.csv", rows)
    ds = UMDFaces(csv_path)
    for i in range(8):
        s, tr = ds.item(i)
        assert assert_on_dots(s) == 21
        assert np.allclose(tr.to_source(s["landmarks"].numpy().astype(np.float64)), pts.round(3), atol=2e-3)
    with pytest.raises(AssertionError):
        assert_on_dots(UMDFaces(csv_path, labels_on="upright")[5])  # orientation 6
