"""Photos with landmarks detected on the fly, on matplotlib's grace_hopper.jpg and a rotated copy;
and the labelled readers' framing against the photo pipeline's face-mesh framing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from stn3dmm.training.data.crop import landmark_square
from stn3dmm.training.data.readers import DetectedPhotos, ReaderError
from stn3dmm.photos import crop_face, detect_faces, read_photo
from stn3dmm.photos.crop import face_square
from stn3dmm.photos.landmark_map import MEDIAPIPE_TO_IBUG68, get_map

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def grace_path():
    from matplotlib import cbook

    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="module")
def people(tmp_path_factory, grace_path):
    """a/grace.jpg, b/grace_turned.png (turned 12 degrees), c/blank.png (no face), c/broken.jpg, c/notes.txt."""
    root = tmp_path_factory.mktemp("people")
    for d in "abc":
        (root / d).mkdir()
    shutil.copy(grace_path, root / "a" / "grace.jpg")
    Image.open(grace_path).convert("RGB").rotate(12, resample=Image.Resampling.BILINEAR, expand=True,
                                                 fillcolor=(128, 128, 128)).save(root / "b" / "grace_turned.png")
    Image.new("RGB", (200, 200), (120, 130, 140)).save(root / "c" / "blank.png")
    (root / "c" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (root / "c" / "notes.txt").write_text("not a photo")
    return root


def test_detected_photos(people, default_grid, grace_path):
    model = default_grid[0]
    with pytest.warns(UserWarning) as rec:
        ds = DetectedPhotos(people, model, size=224, progress=False)
    msg = str(rec[0].message)
    assert "blank.png" in msg and "no face" in msg and "broken.jpg" in msg
    assert len(ds) == 2 and len(ds.excluded) == 2 and [p.name for p, _ in ds.ignored] == ["notes.txt"]
    assert ds.identity_names == ["a", "b"] and ds.identities.tolist() == [0, 1]
    dense = get_map(model, "dense")
    assert np.array_equal(ds.landmark_set, dense.vertices)
    # item 0 is exactly what the photo pipeline makes of the photo
    photo = read_photo(grace_path)
    face = detect_faces(photo)[0]
    crop, tr = crop_face(photo, face, size=224)
    targets = dense.targets(face.points, face.visibility)
    s, tr0 = ds.item(0)
    assert s["image"].shape == (3, 224, 224) and s["landmarks"].shape == (len(dense), 2)
    assert torch.allclose(s["image"], torch.from_numpy(crop).permute(2, 0, 1), atol=1e-6)
    assert np.allclose(s["landmarks"].numpy(), tr.apply(targets.points), atol=1e-3)
    assert np.allclose(s["visibility"].numpy(), targets.weights, atol=1e-6)
    assert int(s["identity"]) == 0 and torch.isnan(s["pose"]).all()
    assert np.allclose(tr0.matrix, tr.matrix)  # grace is below max_side: photo pixels are file pixels
    s1 = ds[1]
    assert int(s1["identity"]) == 1 and float(s1["visibility"].sum()) > 100
    # the iBUG table map, small crops
    ds68 = DetectedPhotos(people / "a", model, size=112, mapping="ibug68", progress=False)
    assert np.array_equal(ds68.landmark_set, model.landmarks["ibug68"])
    s = ds68[0]
    assert s["image"].shape == (3, 112, 112) and s["landmarks"].shape == (68, 2)
    assert (s["visibility"][:17] == 0).all() and (s["visibility"][17:] > 0).any()  # jaw contour weight 0
    with pytest.raises(ReaderError, match="blank.png"):
        DetectedPhotos(people / "c" / "blank.png", model, progress=False, skip_bad=False)


def test_landmark_framing_matches_the_face_mesh_framing(grace_path):
    """iBUG points taken from the face mesh, framed by landmark_square, give (nearly) the photo
    pipeline's square around the full mesh: the labelled readers frame faces as photos are."""
    photo = read_photo(grace_path)
    face = detect_faces(photo)[0]
    c_mesh, side_mesh, _ = face_square(face)
    ibug = np.array([face.points[list(s)].mean(0) for s in MEDIAPIPE_TO_IBUG68])
    c, side = landmark_square(ibug, "ibug68")
    assert abs(side / side_mesh - 1) < 0.05
    assert np.abs(c - c_mesh).max() < 0.03 * side_mesh
    c_plain, side_plain = landmark_square(ibug, "ibug68", framing="landmarks")
    assert abs(side_plain / side_mesh - 1) > abs(side / side_mesh - 1)  # the correction helps
