"""Folder reader (.json / .pts) and the writer the synthetic exporter uses: round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from testkit.reader_fixtures import AFLW21, IBUG68, assert_on_dots, dot_image, face_points

from stn3dmm.training.data import collate
from stn3dmm.training.data.readers import LandmarkFolder, ReaderError, read_pts, write_folder_item, write_pts


def _theta(t=(100.0, 120.0), logs=0.1, d=4):
    return np.concatenate([[0.1, -0.2, 0.05], t, [logs], np.linspace(-1, 1, d)])


def test_cropped_items_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    img_f = rng.uniform(0, 1, (224, 224, 3)).astype(np.float32)
    img_u8 = (rng.uniform(0, 255, (224, 224, 3))).astype(np.uint8)
    lm = rng.uniform(10, 210, (21, 2))
    lm[3] = np.nan
    vis = np.ones(21)
    vis[5] = 0.25
    th = _theta()
    write_folder_item(tmp_path, "person_b/v0", img_f, lm, vis, identity="person_b", pose=(20, -5, 3), theta=th)
    write_folder_item(tmp_path, "person_a/v0", torch.from_numpy(img_u8).permute(2, 0, 1), lm, identity="person_a",
                      pose=None, theta=th)
    assert not list(tmp_path.rglob(".*"))  # no temporary files left
    doc = json.loads((tmp_path / "person_b" / "v0.json").read_text())
    assert doc["landmarks"][3] is None and doc["landmark_set"] == "aflw21" and doc["cropped"] is True
    ds = LandmarkFolder(tmp_path, size=224)
    assert len(ds) == 2 and ds.landmark_set == "aflw21"
    assert ds.identity_names == ["person_a", "person_b"] and ds.identities.tolist() == [0, 1]
    a, b = ds[0], ds[1]
    assert torch.allclose(a["image"], torch.from_numpy(img_u8).permute(2, 0, 1).float() / 255, atol=1e-6)
    assert torch.allclose(b["image"], torch.from_numpy(img_f).permute(2, 0, 1), atol=0.5 / 255 + 1e-6)
    for s in (a, b):
        assert np.allclose(s["landmarks"].numpy(), lm, atol=1e-4, equal_nan=True)
        assert np.allclose(s["theta"].numpy(), th, atol=1e-5)
    assert b["visibility"][3] == 0 and math.isclose(float(b["visibility"][5]), 0.25)
    assert np.allclose(b["pose"].numpy(), [20, -5, 3]) and torch.isnan(a["pose"]).all()
    # read at another size: the image is resized, landmarks and theta follow it
    s, tr = LandmarkFolder(tmp_path, size=112).item(1)
    assert s["image"].shape == (3, 112, 112)
    assert np.allclose(s["landmarks"].numpy(), tr.apply(lm), atol=1e-4, equal_nan=True)
    assert np.allclose(s["theta"][3:5].numpy(), tr.apply(th[3:5]), atol=1e-4)
    assert math.isclose(float(s["theta"][5]), th[5] + math.log(0.5), abs_tol=1e-6)
    assert np.allclose(s["theta"][6:].numpy(), th[6:]) and np.allclose(s["theta"][:3].numpy(), th[:3])


def test_uncropped_items_are_framed_and_theta_follows(tmp_path):
    pts = face_points(IBUG68, (200, 180), 115)
    img = dot_image(400, 380, pts)
    th = _theta(t=(200.0, 180.0), logs=0.3)
    write_folder_item(tmp_path, "x", img, pts, identity=5, theta=th, cropped=False)
    write_folder_item(tmp_path, "y", img, pts, identity=9)
    ds = LandmarkFolder(tmp_path)
    assert ds.landmark_set == "ibug68" and ds.identities.tolist() == [5, 9] and ds.identity_names is None
    for i in range(2):
        s, tr = ds.item(i)
        assert assert_on_dots(s) >= 60
    s, tr = ds.item(0)
    assert np.allclose(s["theta"][3:5].numpy(), tr.apply(th[3:5]), atol=1e-3)
    assert math.isclose(float(s["theta"][5]), 0.3 + math.log(tr.scale), abs_tol=1e-5)
    assert "theta" not in ds[1]
    batch = collate([ds[0], ds[1]])  # samples with and without theta batch on their common keys
    assert batch["image"].shape == (2, 3, 224, 224) and "theta" not in batch
    assert batch["identity"].tolist() == [5, 9]
    # crop="whole" takes the full (non-square) image, padded to a square
    s, tr = LandmarkFolder(tmp_path, crop="whole").item(1)
    assert np.allclose(tr.apply([199.5, 189.5]), [111.5, 111.5]) and math.isclose(tr.scale, 224 / 400)


def test_pts_files_are_one_based(tmp_path):
    pts = face_points(IBUG68, (190, 170), 115)
    (tmp_path / "subj1").mkdir()
    (tmp_path / "subj2").mkdir()
    for sub in ("subj1", "subj2"):
        Image.fromarray(dot_image(380, 360, pts)).save(tmp_path / sub / "img.jpg", quality=95)
        write_pts(tmp_path / sub / "img.pts", pts)  # written 1-based
    text = (tmp_path / "subj1" / "img.pts").read_text()
    assert text.startswith("version: 1\nn_points: 68\n{\n") and text.rstrip().endswith("}")
    first = text.splitlines()[3].split()
    assert np.allclose([float(first[0]), float(first[1])], pts[0] + 1, atol=1e-5)
    assert np.allclose(read_pts(tmp_path / "subj1" / "img.pts"), pts, atol=1e-5)
    ds = LandmarkFolder(tmp_path)
    assert ds.identities is None and ds.landmark_set == "ibug68"
    s, tr = ds.item(0)
    assert assert_on_dots(s) >= 60
    assert np.allclose(tr.to_source(s["landmarks"].numpy().astype(np.float64)), pts, atol=2e-3)
    ds = LandmarkFolder(tmp_path, identity_from="folder")
    assert ds.identity_names == ["subj1", "subj2"] and ds.identities.tolist() == [0, 1]


def test_bad_and_foreign_files(tmp_path):
    pts = face_points(AFLW21, (150, 150), 80)
    img = dot_image(300, 300, pts)
    for n in range(3):
        write_folder_item(tmp_path, f"ok{n}", img, pts, identity=n)
    write_folder_item(tmp_path, "other_set", img, face_points(IBUG68, (150, 150), 60))    # 68 points: wrong set
    write_folder_item(tmp_path, "custom", img, pts[:10])                                 # 10 points, no set
    Image.fromarray(img).save(tmp_path / "unlabelled.png")                               # no landmark file
    (tmp_path / "orphan.json").write_text(json.dumps({"landmarks": pts.tolist()}))       # no image
    (tmp_path / "manifest.json").write_text(json.dumps({"count": 3}))                    # not an item: ignored
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "broken.json").write_text(json.dumps({"landmarks": pts.tolist()}))
    (tmp_path / "badjson.png").write_bytes((tmp_path / "ok0.png").read_bytes())
    (tmp_path / "badjson.json").write_text("{not json")
    with pytest.warns(UserWarning) as rec:
        ds = LandmarkFolder(tmp_path, check="header")
    msg = str(rec[0].message)
    assert len(ds) == 3 and ds.landmark_set == "aflw21"
    for name in ("other_set.json", "custom.json", "unlabelled.png", "orphan.json", "broken.png", "badjson.json"):
        assert name in msg
    assert "manifest" not in msg
    with pytest.raises(ReaderError, match="unlabelled.png"):
        LandmarkFolder(tmp_path, skip_bad=False)
    # a custom landmark set (vertex indices) given to the reader
    d2 = tmp_path / "custom_only"
    write_folder_item(d2, "a", img, pts[:10], landmark_set=np.arange(100, 110))
    write_folder_item(d2, "b", img, pts[:10])
    ds = LandmarkFolder(d2)
    assert np.array_equal(ds.landmark_set, np.arange(100, 110)) and len(ds) == 2
    assert ds[0]["landmarks"].shape == (10, 2)


def test_pts_parse_errors(tmp_path):
    p = tmp_path / "a.pts"
    p.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ReaderError, match="n_points is 3"):
        read_pts(p)
    p.write_text("version: 1\nn_points: 1\n{\n1 2\n")
    with pytest.raises(ReaderError, match="not a .pts"):
        read_pts(p)
    p.write_text("version: 1\nn_points: 1\n{\n1 x\n}\n")
    with pytest.raises(ReaderError, match="bad point"):
        read_pts(p)
    with pytest.raises(ValueError, match="missing"):
        write_pts(p, [[1, 2], [np.nan, np.nan]])
    with pytest.raises(ValueError):
        write_folder_item(tmp_path, "../escape", np.zeros((4, 4, 3)), np.zeros((21, 2)))
