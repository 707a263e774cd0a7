"""300W-LP / AFLW2000-3D .mat reader on tiny fixtures written by scipy.io.savemat (and h5py for v7.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from testkit.reader_fixtures import (AFLW21, IBUG68, assert_on_dots, dot_image, face_points, write_mat73,
                                     write_pose_mat)

from stn3dmm.training.data.pose import euler_to_rotation, pose_from_pose_para
from stn3dmm.training.data.readers import Mat68, ReaderError, identity_key, read_pose_mat
from stn3dmm.training.batches import IdentityGroups, batch_indices, dataset_pair_groups

# 300W-LP-like items: relative path, image size, centre, scale, Pose_Para (pitch, yaw, roll radians, tx, ty, tz, s)
LP_ITEMS = [
    ("AFW/AFW_134212_1_0.jpg", (380, 340), (190, 160), 115, (0.1, -0.2, 0.05, 160, 150, 0, 0.001)),
    ("AFW/AFW_134212_1_3.jpg", (380, 340), (200, 165), 112, (0.0, 0.6, -0.1, 160, 150, 0, 0.001)),
    ("AFW_Flip/AFW_134212_1_0.jpg", (380, 340), (180, 160), 115, (0.1, 0.2, -0.05, 160, 150, 0, 0.001)),
    ("HELEN/HELEN_232194_1_2.png", (360, 360), (180, 160), 120, (-0.3, 1.0, 0.2, 150, 150, 0, 0.001)),
]


def _write_lp(root):
    truth = []
    for n, (rel, (w, h), c, s, pose) in enumerate(LP_ITEMS):
        pts = face_points(IBUG68, c, s)
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(dot_image(w, h, pts, seed=n)).save(p, **({"quality": 95} if p.suffix == ".jpg" else {}))
        one_based = (pts + 1.0).T  # MATLAB 1-based, 2 x 68
        pt3d = np.vstack([one_based + 0.25, np.linspace(-40, 40, 68)[None]])  # a slightly different 68-point set
        write_pose_mat(p.with_suffix(".mat"), pt2d=one_based, pt3d_68=pt3d, pose_para=pose,
                       Shape_Para=np.zeros((199, 1)), roi=np.array([[1, 1, w, h]]))
        truth.append(pts)
    lm = root / "landmarks" / "AFW"
    lm.mkdir(parents=True)
    write_pose_mat(lm / "AFW_134212_1_0_pts.mat", pts_2d=np.zeros((68, 2)), pts_3d=np.zeros((68, 2)))
    return truth


@pytest.fixture(scope="module")
def lp(tmp_path_factory):
    root = tmp_path_factory.mktemp("300W_LP")
    return root, _write_lp(root)


@pytest.fixture(scope="module")
def aflw(tmp_path_factory):
    root = tmp_path_factory.mktemp("AFLW2000")
    pts21 = face_points(AFLW21, (170, 165), 100)
    pts68 = face_points(IBUG68, (170, 165), 115)
    invalid = [0, 12, 16]  # not labelled in the original AFLW: -1 in pt2d
    drawn = pts68  # the image carries the 68-point dots (pt3d_68); the 21 points are checked numerically
    Image.fromarray(dot_image(340, 340, drawn)).save(root / "image00002.jpg", quality=95)
    pt2d = (pts21 + 1.0).T.copy()
    pt2d[:, invalid] = -1.0
    pt3d = np.vstack([(pts68 + 1.0).T, np.zeros((1, 68))])
    write_pose_mat(root / "image00002.mat", pt2d=pt2d, pt3d_68=pt3d, pose_para=(0.2, -0.7, 0.1, 0, 0, 0, 1))
    return root, pts21, pts68, invalid


def test_300w_lp(lp):
    root, truth = lp
    ds = Mat68(root, size=224)
    assert len(ds) == 4 and ds.landmark_set == "ibug68" and ds.excluded == []
    names = [p.replace(str(root) + "/", "") for p in ds.paths]
    assert names == [r for r, *_ in sorted(LP_ITEMS, key=lambda t: t[0])]
    # the three views of AFW_134212_1 (plain and _Flip folders) share an identity; HELEN's face is another
    assert ds.identity_names == ["AFW_134212_1", "HELEN_232194_1"]
    assert ds.identities.tolist() == [0, 0, 0, 1]
    for i, rel in enumerate(names):
        n = [r for r, *_ in LP_ITEMS].index(rel)
        pose = LP_ITEMS[n][4]
        s, tr = ds.item(i)
        assert s["image"].shape == (3, 224, 224) and s["landmarks"].shape == (68, 2)
        assert np.allclose(s["pose"].numpy(), pose_from_pose_para(*pose[:3]).numpy(), atol=1e-4)
        assert float(s["visibility"].sum()) == 68
        assert assert_on_dots(s) >= 60
        # round trip to the file's own 1-based coordinates
        back = tr.to_source(s["landmarks"].numpy().astype(np.float64)) + 1.0
        assert np.allclose(back, truth[n] + 1.0, atol=2e-3)


def test_pt3d_68_and_identity_off(lp):
    root, truth = lp
    ds = Mat68([root / "AFW", root / "HELEN"], points="pt3d_68", identity_from=None, size=112, check="header")
    assert len(ds) == 3 and ds.identities is None
    s, tr = ds.item(0)
    assert s["image"].shape == (3, 112, 112) and int(s["identity"]) == -1
    assert np.allclose(tr.to_source(s["landmarks"].numpy().astype(np.float64)), truth[0] + 0.25, atol=2e-3)


def test_aflw2000(aflw):
    root, pts21, pts68, invalid = aflw
    ds = Mat68(root, points="pt2d")
    assert ds.landmark_set == "aflw21" and ds.identities is None and len(ds) == 1
    s, tr = ds.item(0)
    lm, vis = s["landmarks"].numpy(), s["visibility"].numpy()
    assert np.isnan(lm[invalid]).all() and (vis[invalid] == 0).all()
    ok = [k for k in range(21) if k not in invalid]
    assert (vis[ok] == 1).all()
    assert np.allclose(tr.to_source(lm[ok].astype(np.float64)), pts21[ok], atol=2e-3)
    assert np.allclose(s["pose"].numpy(), pose_from_pose_para(0.2, -0.7, 0.1).numpy(), atol=1e-4)
    s68 = Mat68(root, points="pt3d_68")[0]
    assert s68["landmarks"].shape == (68, 2) and assert_on_dots(s68) >= 60
    with pytest.warns(UserWarning, match="21 points in pt2d, the data set has 68"):
        assert len(Mat68(root, points="pt2d", landmark_set="ibug68", check="header")) == 0
    assert "aflw21" in repr(ds) and "identities=unknown" in repr(ds)


def test_bad_files(lp, tmp_path):
    root, _ = lp
    import shutil

    shutil.copytree(root, tmp_path / "lp")
    d = tmp_path / "lp"
    (d / "HELEN" / "HELEN_232194_1_2.png").unlink()                 # annotation without its image
    Image.new("RGB", (20, 20)).save(d / "AFW" / "AFW_999_1_0.jpg")   # image without annotation
    (d / "AFW" / "AFW_134212_1_3.mat").write_bytes(b"garbage, not a MATLAB file" * 20)
    with pytest.warns(UserWarning) as rec:
        ds = Mat68(d, check="header")
    msg = str(rec[0].message)
    assert len(ds) == 2
    for name in ("HELEN_232194_1_2.mat", "AFW_999_1_0.jpg", "AFW_134212_1_3.mat"):
        assert name in msg
    assert "_pts.mat" not in msg  # 300W-LP's landmarks/ folder is not an image annotation
    with pytest.raises(ReaderError, match="AFW_134212_1_3.mat") as e:
        Mat68(d, check="header", skip_bad=False)
    assert len(e.value.bad) == 3
    # under the cheap check the broken .mat is only found when read: an error naming it
    with pytest.warns(UserWarning):
        ds = Mat68(d, check="exists")
    i = [k for k, p in enumerate(ds.mat_paths) if p.endswith("AFW_134212_1_3.mat")][0]
    with pytest.raises(ReaderError, match="AFW_134212_1_3.mat"):
        ds[i]


def test_mat73_and_names(tmp_path):
    pts = face_points(IBUG68, (170, 160), 115)
    Image.fromarray(dot_image(340, 340, pts)).save(tmp_path / "LFPW_image_test_0001_0.png")
    write_mat73(tmp_path / "LFPW_image_test_0001_0.mat", pt2d=(pts + 1).T, Pose_Para=np.array([[0.0, 0.5, 0, 0, 0, 0,
                                                                                                   1]]))
    d = read_pose_mat(tmp_path / "LFPW_image_test_0001_0.mat")
    assert np.allclose(d["landmarks"], pts) and np.allclose(d["pose"], [-math.degrees(0.5), 0, 0])
    assert assert_on_dots(Mat68(tmp_path)[0]) >= 60
    assert identity_key("AFW_134212_1_0.jpg") == "AFW_134212_1"
    assert identity_key("LFPW_image_test_0001_0.jpg") == "LFPW_image_test_0001"
    assert identity_key("image00002.jpg") is None


def _rotation_3ddfa(phi, gamma, theta):
    """3DDFA's RotationMatrix.m written out: R = R_x R_y R_z with its own (transposed) factors."""
    c, s = math.cos, math.sin
    rx = np.array([[1, 0, 0], [0, c(phi), s(phi)], [0, -s(phi), c(phi)]])
    ry = np.array([[c(gamma), 0, -s(gamma)], [0, 1, 0], [s(gamma), 0, c(gamma)]])
    rz = np.array([[c(theta), s(theta), 0], [-s(theta), c(theta), 0], [0, 0, 1]])
    return rx @ ry @ rz


def test_pose_para_in_our_convention():
    # single angles: ours is minus theirs, in degrees, reordered to (yaw, pitch, roll)
    assert np.allclose(pose_from_pose_para(0.0, 0.5, 0.0).numpy(), [-math.degrees(0.5), 0, 0], atol=1e-9)
    assert np.allclose(pose_from_pose_para(0.3, 0.0, 0.0).numpy(), [0, -math.degrees(0.3), 0], atol=1e-9)
    assert np.allclose(pose_from_pose_para(0.0, 0.0, -0.2).numpy(), [0, 0, math.degrees(0.2)], atol=1e-9)
    # combined angles: our Euler angles rebuild 3DDFA's own rotation matrix exactly
    for pp in [(0.2, -0.7, 0.1), (-0.4, 1.2, 0.3), (0.6, 0.9, -0.5)]:
        ours = pose_from_pose_para(*pp)
        r = euler_to_rotation(*ours).numpy()
        assert np.allclose(r, _rotation_3ddfa(*pp), atol=1e-12), pp
    # meaning: 3DDFA projects f R X + t and flips y (height + 1 - y); with their yaw 0.5 the nose
    # tip (model +z) lands left of the face centre, i.e. our yaw < 0 ("yaw > 0: nose to image +x")
    nose = _rotation_3ddfa(0.0, 0.5, 0.0) @ np.array([0.0, 0.0, 100.0])
    assert nose[0] < -40 and float(pose_from_pose_para(0.0, 0.5, 0.0)[0]) < 0
    # their pitch 0.3: nose goes up in their y-up frame -> image up -> our pitch < 0 ("> 0: nose down")
    assert (_rotation_3ddfa(0.3, 0.0, 0.0) @ np.array([0.0, 0.0, 100.0]))[1] > 20


def test_flipped_copies_are_never_paired_with_unflipped_images(tmp_path):
    # one source face in three views, plain and flipped (300W-LP's AFW and AFW_Flip folders)
    pts = face_points(IBUG68, (170, 160), 115)
    for folder in ("AFW", "AFW_Flip"):
        for v in range(3):
            p = tmp_path / folder / f"AFW_1_1_{v}.jpg"
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(dot_image(340, 340, pts, seed=v)).save(p)
            write_pose_mat(p.with_suffix(".mat"), pt2d=(pts + 1).T, pose_para=(0, 0.3 * v, 0, 0, 0, 0, 1))
    ds = Mat68(tmp_path)
    assert ds.identities.tolist() == [0] * 6                    # one person ...
    assert ds.mirrored.tolist() == [False] * 3 + [True] * 3      # ... half of the images mirrored
    groups = dataset_pair_groups(ds)
    assert len(set(groups[:3])) == 1 and len(set(groups[3:])) == 1 and groups[0] != groups[3]
    g = IdentityGroups(groups)
    for step in range(50):
        b = batch_indices(len(ds), 8, step, seed=0, identities=g)
        for k in range(0, 8, 2):
            assert b[k] != b[k + 1] and ds.mirrored[b[k]] == ds.mirrored[b[k + 1]], (step, b)
