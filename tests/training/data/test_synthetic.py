"""Synthetic multi-view data: the renderer against the STN's conventions, depth-tested visibility,
determinism, identities, pose coverage, textures, backgrounds, the Dataset protocol and export.

Most checks render a texture whose colour encodes its own UV position (red = column, green =
row), with lighting, colour jitter, noise and blur off, so every rendered pixel says which
surface point it shows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stn3dmm.training.data.backgrounds import BACKGROUND_KINDS, background_params, make_backgrounds
from stn3dmm.training.data.pose import euler_to_rotation, pose_from_theta, rotation_to_euler
from stn3dmm.training.data.render import GridRenderer, splat_grid_surface
from stn3dmm.training.data.synthetic import SyntheticFaces
from stn3dmm.training.data.synthetic_export import export_synthetic
from stn3dmm.training.data.texture_layout import texture_layout
from stn3dmm.stn import MorphableSTN
from stn3dmm.stn.visibility import vertex_normals, visibility_depth

PLAIN = dict(lighting=False, color_jitter=False, noise=0.0, blur=0.0, backgrounds=("gradient",),
             photo_textures=False)


@pytest.fixture(scope="module")
def model(default_grid):
    return default_grid[0]


def uv_texture(res: int) -> torch.Tensor:
    """(3, R, R): red = col / (R - 1), green = row / (R - 1), blue = 0.5."""
    t = torch.linspace(0, 1, res)
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    return torch.stack((cols, rows, torch.full_like(t[None].expand(res, res), 0.5)))


def sample_at(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``images (B, C, H, W)`` at pixel positions ``(B, L, 2)`` -> (B, L, C)."""
    h, w = images.shape[-2:]
    g = torch.stack((points[..., 0] * 2 / (w - 1) - 1, points[..., 1] * 2 / (h - 1) - 1), -1)[:, :, None]
    return F.grid_sample(images, g, align_corners=True)[..., 0].permute(0, 2, 1)


def decode(colors: torch.Tensor, res: int) -> torch.Tensor:
    """UV-code colours (..., 3) -> grid position (row, col) (..., 2)."""
    return torch.stack((colors[..., 1], colors[..., 0]), -1) * (res - 1)


@pytest.fixture(scope="module")
def uv_set(model):
    """Six identities x two views at 112 px with the UV-code texture, rendered once."""
    ds = SyntheticFaces(model, 6, 2, size=112, seed=3, landmark_set="ibug68", texture=uv_texture(model.res), **PLAIN)
    return ds, ds.render_batch(range(len(ds)), extras=True)


def test_pose_convention_round_trips_and_matches_the_projection(model):
    rng = np.random.default_rng(0)
    ypr = torch.tensor(rng.uniform([-89, -80, -170], [89, 80, 170], (50, 3)))
    back = rotation_to_euler(euler_to_rotation(ypr[:, 0], ypr[:, 1], ypr[:, 2]))
    assert torch.allclose(back, ypr, atol=1e-9)
    # the nose tip relative to the image of the model origin (= t): yaw > 0 moves it to image +x,
    # pitch > 0 down (image +y), roll > 0 turns the face counter-clockwise in the image
    ds = SyntheticFaces(model, 1, 1, size=112, **PLAIN)
    stn = MorphableSTN(model, landmarks="ibug68", max_outside=None)
    ident = ds.identity_params(0)

    def nose(yaw, pitch, roll):
        theta, pose = ds.theta_of([ident], [dict(ds.view_params(0, 0), yaw=yaw, pitch=pitch, roll=roll)])
        assert torch.allclose(pose_from_theta(theta.double()), pose.double(), atol=1e-4)
        lm = stn.geometry(theta).points[0, stn.landmark_index]
        return lm[30] - theta[0, 3:5], lm

    front = nose(0, 0, 0)[0]
    assert float(nose(30, 0, 0)[0][0] - front[0]) > 15 and float(nose(-30, 0, 0)[0][0] - front[0]) < -15
    assert float(nose(0, 25, 0)[0][1] - front[1]) > 15 and float(nose(0, -25, 0)[0][1] - front[1]) < -15
    lm = nose(0, 0, 15)[1]
    assert float(lm[45, 1]) < float(lm[36, 1]) - 5  # the image-right eye corner rises


def test_landmarks_land_on_the_rendered_features(model, uv_set):
    """The colour rendered at each visible landmark decodes to a surface point that projects
    back onto the landmark (the UV texture makes the image a map of which point is where)."""
    ds, b = uv_set
    r = model.res
    lm, vis = b["landmarks"], b["visibility"] > 0
    cov = sample_at(b["alpha"], lm)[..., 0]
    rc = decode(sample_at(b["image"], lm), r)
    # bilinear reads mix the codes of two surfaces across a fold or an occluding contour: use the
    # landmarks whose +-1 px neighbourhood shows one smooth piece of surface
    jump = torch.zeros_like(cov)
    for d in ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)):
        jump = torch.maximum(jump, (decode(sample_at(b["image"], lm + torch.tensor(d)), r) - rc).norm(dim=-1))
    use = vis & (cov > 0.999) & (jump < 3)
    assert use.sum() > 0.6 * lm.shape[0] * lm.shape[1]
    # where that surface point is in the image: bilinear in the projected grid
    pts = b["points"].view(-1, r, r, 2).permute(0, 3, 1, 2)
    g = torch.stack((rc[..., 1], rc[..., 0]), -1) * (2 / (r - 1)) - 1
    back = F.grid_sample(pts, g[:, :, None], align_corners=True)[..., 0].permute(0, 2, 1)
    err = (back - lm).norm(dim=-1)[use]
    assert float(err.median()) < 0.25 and float(torch.quantile(err, 0.98)) < 1.0 and float(err.max()) < 2.0
    # and, in the texture's own terms, within about a grid cell of the landmark vertex
    idx = torch.as_tensor(ds.landmark_index)
    own = torch.stack((idx // r, idx % r), -1).float().expand_as(rc)
    assert float((rc - own).norm(dim=-1)[use].median()) < 0.5


def test_hidden_vertices_are_not_drawn(model):
    """At large yaw, where the STN's depth test hides a front-facing vertex (behind the nose or
    the cheek), the image shows a surface point nearer the camera, never the vertex itself;
    clearly visible vertices are what the image shows at their position."""
    ds = SyntheticFaces(model, 4, 2, size=112, seed=11, texture=uv_texture(model.res), yaw_range=1.0, **PLAIN)
    ip = [ds.identity_params(ds.identity_of(i)[0]) for i in range(len(ds))]
    vp = [dict(ds.view_params(*ds.identity_of(i)), yaw=(-1) ** i * (55 + 3 * i)) for i in range(len(ds))]
    theta, _ = ds.theta_of(ip, vp)
    out = ds.renderer(theta, ds.fixed_texture[None].expand(len(ds), -1, -1, -1).contiguous(), None,
                      make_backgrounds([v["background"] for v in vp], ds.size))
    r = model.res
    posed, pts = out["posed"], out["points"]
    faces = torch.as_tensor(model.faces)
    nz = vertex_normals(posed, faces)[..., 2]
    cov = sample_at(out["alpha"], pts)[..., 0]
    inside = (pts >= 1).all(-1) & (pts <= ds.size - 2).all(-1) & (cov > 0.999)
    rc = decode(sample_at(out["image"], pts), r)  # the surface point the image shows there
    n = torch.arange(r * r)
    dist = (rc - torch.stack((n // r, n % r), -1).float()).norm(dim=-1)
    g = torch.stack((rc[..., 1], rc[..., 0]), -1) * (2 / (r - 1)) - 1
    shown_z = F.grid_sample(posed[..., 2].reshape(-1, 1, r, r), g[:, :, None], align_corners=True)[:, 0, :, 0]
    # tol = 2 mesh spacings: leaves out the STN's few false alarms in concave spots (gap < 2 mm)
    occluded = ~visibility_depth(posed, faces, tol=2.0) & (nz > 0.3) & inside
    assert int(occluded.sum()) > 300  # the test has something to test
    assert float((shown_z > posed[..., 2] + 1.0)[occluded].float().mean()) > 0.99
    assert float((dist > 1.5)[occluded].float().mean()) > 0.97
    seen = visibility_depth(posed, faces) & (nz > 0.5) & inside
    assert float((dist[seen] < 1.0).float().mean()) > 0.97
    hidden = ~visibility_depth(posed, faces)
    # the renderer's own depth test of the landmarks agrees with the STN's
    lm_idx = torch.as_tensor(model.landmarks["ibug68"])
    ours = ds.renderer.visibility(out, lm_idx)
    theirs = ~hidden[:, lm_idx] & inside[:, lm_idx]
    assert float((ours == theirs)[inside[:, lm_idx]].float().mean()) > 0.9
    assert int((~ours).sum()) > 20  # self-occluded landmarks are marked invisible


def test_splatting_has_no_holes_and_the_nearest_surface_wins():
    """A grid folded over itself: its right half lies 10 mm in front of its left half. The raster
    shows the near half wherever both cover, and has no empty pixel inside (4-pixel cells at one
    sample per cell: the big cells are refined); without refinement and filling it has holes."""
    r, size, k = 16, 64, 1
    j = torch.arange(r, dtype=torch.float32)
    x = torch.where(j < r // 2, 4 * j + 2, 4 * (r - 1 - j) + 4)
    z = torch.where(j < r // 2, torch.zeros(r), torch.full((r,), 10.0))
    y = 4 * j + 2
    pts = torch.stack((x[None].expand(r, r), y[:, None].expand(r, r)), -1)[None]
    depth = z[None].expand(r, r)[None]
    ras = splat_grid_surface(pts, depth, size, size, k)
    s = ras["sample"][0]
    m = ras["lattice"]
    assert bool((s[3:62, 3:31] >= 0).all())
    overlap = s[4:60, 6:28]
    assert bool(((overlap % m) >= k * (r // 2)).all())  # the near half wins
    assert bool((ras["depth"][0][4:60, 6:28] == 10).all())
    bare = splat_grid_surface(pts, depth, size, size, k, refine=0, fill_holes=False)
    assert int((bare["sample"][0][3:62, 3:31] < 0).sum()) > 100


def test_same_seed_and_index_give_identical_items(model):
    a = SyntheticFaces(model, 3, 2, size=64, seed=5, photo_textures=False, batch_size=4)
    b = SyntheticFaces(model, 3, 2, size=64, seed=5, photo_textures=False, batch_size=4)
    c = SyntheticFaces(model, 3, 2, size=64, seed=6, photo_textures=False, batch_size=4)
    for i in (0, 5, 3):
        x, y = a[i], b[i]
        for k in ("image", "landmarks", "visibility", "theta", "pose", "identity"):
            assert torch.equal(x[k], y[k]), k
    assert not torch.equal(a[1]["image"], c[1]["image"])
    # the same item from a batch of a different make-up: the same up to float rounding
    alone = a.render_batch([5])
    assert torch.allclose(alone["image"][0], a[5]["image"], atol=1e-5)
    assert torch.equal(alone["visibility"][0], a[5]["visibility"])


def test_views_of_an_identity_share_shape_and_texture(model):
    ds = SyntheticFaces(model, 3, 3, size=64, seed=2, photo_textures=False)
    b = ds.render_batch(range(9), extras=True)
    n_id = ds.n_id
    assert b["identity"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i in range(3):
        th, tex = b["theta"][3 * i:3 * i + 3], b["texture"][3 * i:3 * i + 3]
        assert torch.equal(th[0, 6:6 + n_id], th[1, 6:6 + n_id]) and torch.equal(th[0, 6:6 + n_id], th[2, 6:6 + n_id])
        assert torch.equal(tex[0], tex[1]) and torch.equal(tex[0], tex[2])
        assert not torch.equal(th[0, :6], th[1, :6]) and not torch.equal(th[0, 6 + n_id:], th[1, 6 + n_id:])
    assert not torch.equal(b["theta"][0, 6:6 + n_id], b["theta"][3, 6:6 + n_id])
    assert (b["texture"][0] - b["texture"][3]).abs().mean() > 0.01
    # disjoint identity ranges are disjoint splits, reproducibly
    test = SyntheticFaces(model, 2, 3, size=64, seed=2, identity_offset=3, photo_textures=False)
    assert test.identity_of(0) == (3, 0)
    assert torch.equal(test.texture(3), SyntheticFaces(model, 4, 1, size=64, seed=2, photo_textures=False).texture(3))


def test_poses_cover_the_three_yaw_buckets_and_match_theta(model):
    ds = SyntheticFaces(model, 100, 4, size=112, seed=0, photo_textures=False)
    yaw = np.array([ds.view_params(*ds.identity_of(i))["yaw"] for i in range(len(ds))])
    buckets = np.histogram(np.abs(yaw), bins=[0, 30, 60, 90])[0] / len(yaw)
    assert (buckets > 0.15).all(), buckets
    assert np.abs(yaw).max() <= 75
    items = ds.render_batch(range(8))
    assert torch.allclose(pose_from_theta(items["theta"].double()).float(), items["pose"], atol=1e-3)
    a = items["theta"][:, 6:6 + ds.n_id]
    assert a.abs().max() < 6 and 0.5 < float(a.std()) < 1.6


def test_flattening_a_rendering_with_the_true_theta_gives_back_the_texture(model):
    """The renderer and the STN agree on every convention: sampling the image at the projected
    grid (MorphableSTN at the ground-truth theta) returns the texture on visible pixels."""
    ds = SyntheticFaces(model, 3, 2, size=224, seed=4, supersample=2, **PLAIN)
    b = ds.render_batch(range(6), extras=True)
    stn = MorphableSTN(model, landmarks=None)
    out = stn(b["image"], b["theta"])
    mask = (-F.max_pool2d(-out["mask"], 5, 1, 2)) > 0.5  # eroded: away from silhouettes and occlusions
    cover = (-F.max_pool2d(-F.grid_sample(b["alpha"], out["grid"], align_corners=True), 3, 1, 1)) > 0.999
    use = (mask & cover).expand_as(b["texture"])
    err = (out["flattened"] - b["texture"]).abs()[use]
    assert use.float().mean() > 0.15
    assert float(err.mean()) < 0.007 and float(torch.quantile(err, 0.99)) < 0.06
    # a one-pixel error in t is clearly worse: the test can tell
    th = b["theta"].clone()
    th[:, 3] += 1.0
    shifted = (stn(b["image"], th)["flattened"] - b["texture"]).abs()[use]
    assert float(shifted.mean()) > 1.4 * float(err.mean())


def test_procedural_textures_put_features_on_the_landmarks(model):
    lay = texture_layout(model)
    r = model.res
    ds = SyntheticFaces(model, 12, 1, size=64, seed=1, photo_textures=False)
    tex = torch.stack([ds.texture(i) for i in range(12)])
    lum = tex.mean(1)  # (B, R, R)
    ib = np.asarray(model.landmarks["ibug68"])
    at = lambda k: lum[:, ib[k] // r, ib[k] % r]  # noqa: E731
    cheek = lum[:, int(0.5 * (ib[36] // r + ib[48] // r)), ib[36] % r]
    pupils = torch.stack([lum[:, int(np.mean(ib[a:a + 6] // r)), int(np.mean(ib[a:a + 6] % r))] for a in (36, 42)])
    assert float((pupils < cheek).float().mean()) > 0.95
    mouth = lum[:, int(round(np.mean(ib[60:68] // r))), int(round(np.mean(ib[60:68] % r)))]
    assert float((mouth < cheek).float().mean()) > 0.9           # the mouth
    brows = torch.stack([at(k) for k in (18, 19, 20, 23, 24, 25)]).mean(0)
    assert float((brows < cheek).float().mean()) > 0.6           # brows (blond ones may be light)
    assert lay["eye"].sum() > 10 and lay["lips"].sum() > 20
    # a model with AFLW-21 landmarks only gets its features from those
    import dataclasses

    lay21 = texture_layout(dataclasses.replace(model, landmarks={"aflw21": model.landmarks["aflw21"]}))
    assert lay21["eye"].sum() > 10 and lay21["lips"].sum() > 20 and lay21["nostril"].max() > 0.5
    # skin tones vary widely across identities
    skin = torch.stack([t[:, 45:60, 30:40].mean((1, 2)) for t in tex]).mean(1)
    assert float(skin.max() - skin.min()) > 0.25


def test_photo_textures_and_backgrounds_from_the_sample_photos(model):
    from stn3dmm.training.data.photo_assets import sample_photo_assets

    assets = sample_photo_assets(model)
    assert len(assets["tiles"]) >= 4
    if not assets["textures"]:
        pytest.skip(f"no photo textures here: {assets['problems']}")
    r = model.res
    for t in assets["textures"]:
        assert t.shape == (3, r, r) and float(t.min()) >= 0 and float(t.max()) <= 1
        assert float((t.sum(0) == 0).float().mean()) < 0.01  # holes inpainted
    ds = SyntheticFaces(model, 40, 1, size=64, seed=0, photo_fraction=0.5)
    kinds = [ds.identity_params(i)["texture"]["photo"] for i in range(40)]
    assert sum(k >= 0 for k in kinds) >= 10 and sum(k < 0 for k in kinds) >= 10
    i = next(i for i, k in enumerate(kinds) if k >= 0)
    assert float(ds.texture(i).std()) > 0.05


def test_backgrounds_of_every_kind_are_varied(model):
    tiles = [torch.rand(3, 32, 32)]
    rng = np.random.default_rng(0)
    params = [background_params(rng, (k,), n_tiles=1) for k in BACKGROUND_KINDS for _ in range(3)]
    bg = make_backgrounds(params, 48, tiles)
    assert bg.shape == (15, 3, 48, 48) and float(bg.min()) >= 0 and float(bg.max()) <= 1
    assert [p["kind"] for p in params] == [k for k in BACKGROUND_KINDS for _ in range(3)]
    spread = bg.flatten(1).std(1)
    assert float((spread > 0.01).float().mean()) > 0.8
    assert float((bg[0] - bg[1]).abs().mean()) > 0.02


def test_dataloader_batches_render_once_and_match_render_batch(model):
    from torch.utils.data import DataLoader

    ds = SyntheticFaces(model, 4, 2, size=64, seed=9, photo_textures=False)
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (4, 3, 64, 64) and b["landmarks"].shape == (4, 21, 2)
    assert b["theta"].shape == (4, ds.n_params) and b["image"].dtype == torch.float32
    ref = ds.render_batch(b["index"].tolist())
    assert torch.allclose(ref["image"], b["image"], atol=1e-6) and torch.equal(ref["visibility"], b["visibility"])
    assert sorted(torch.cat([x["index"] for x in batches]).tolist()) == list(range(8))
    pre = SyntheticFaces(model, 4, 2, size=64, seed=9, photo_textures=False).prerender()
    assert torch.allclose(pre[3]["image"], ds[3]["image"], atol=0.5 / 255 + 1e-6)
    assert torch.equal(pre[3]["landmarks"], ds[3]["landmarks"])


def test_export_writes_the_folder_format_and_reads_back(model, tmp_path):
    out = tmp_path / "synth"
    rep = export_synthetic(out, model, 2, 2, size=64, seed=1, landmark_set="ibug68", progress=False,
                           photo_textures=False)
    assert rep["written"] == 4 and rep["skipped"] == 0
    names = sorted(p.stem for p in out.glob("*.png"))
    assert names == ["synth_000000_00", "synth_000000_01", "synth_000001_00", "synth_000001_01"]
    assert not list(out.glob(".*"))
    ds = SyntheticFaces(model, 2, 2, size=64, seed=1, landmark_set="ibug68", photo_textures=False)
    ref = ds.render_batch(range(4))
    doc = json.loads((out / "synth_000001_01.json").read_text())
    assert doc["landmark_set"] == "ibug68" and doc["identity"] == 1 and doc["cropped"] is True
    assert np.allclose(doc["landmarks"], ref["landmarks"][3].numpy(), atol=1e-3)
    assert doc["visibility"] == ref["visibility"][3].tolist()
    assert np.allclose(doc["pose"], ref["pose"][3].numpy(), atol=1e-3)
    assert np.allclose(doc["theta"], ref["theta"][3].numpy(), atol=1e-6)
    manifest = json.loads((out / "synthetic.json").read_text())
    assert manifest["items"] == 4 and manifest["seed"] == 1
    from stn3dmm.training.data.readers import LandmarkFolder

    folder = LandmarkFolder(out, size=64)
    assert len(folder) == 4 and folder.landmark_set == "ibug68"
    for k in range(4):
        s = folder[k]
        assert torch.allclose(s["image"], ref["image"][k], atol=0.5 / 255 + 1e-6)
        assert torch.allclose(s["landmarks"], ref["landmarks"][k], atol=1e-3)
        assert torch.allclose(s["theta"], ref["theta"][k], atol=1e-5)
        assert int(s["identity"]) == int(ref["identity"][k])
    again = export_synthetic(out, model, 2, 2, size=64, seed=1, landmark_set="ibug68", progress=False,
                             photo_textures=False)
    assert again["written"] == 0 and again["skipped"] == 4


def test_renderer_is_device_and_dtype_consistent(model):
    rend = GridRenderer(model, 48)
    theta = torch.zeros(2, rend.n_params)
    theta[:, 3:5] = 23.5
    theta[:, 5] = math.log(48 / 224)
    tex = torch.rand(2, 3, model.res, model.res)
    out = rend(theta, tex)
    assert out["image"].shape == (2, 3, 48, 48) and out["alpha"].shape == (2, 1, 48, 48)
    assert float(out["alpha"][:, :, 20:28, 20:28].min()) == 1.0 and float(out["alpha"][:, :, 0, 0].max()) == 0.0
    out64 = rend.double()(theta.double(), tex.double())
    assert out64["image"].dtype == torch.float64
    assert float((out64["image"].float() - out["image"]).abs().mean()) < 1e-3


def _halves(res: int, dark: float, bright: float, alpha_hole: bool = False) -> np.ndarray:
    """(res, res, 4) uint8 RGBA: left half ``dark``, right half ``bright`` grey; optionally a hole."""
    img = np.full((res, res, 4), 255, np.uint8)
    img[:, : res // 2, :3] = int(255 * dark)
    img[:, res // 2:, :3] = int(255 * bright)
    if alpha_hole:
        img[: res // 4, :, 3] = 0                       # not visible: inpainted from below
        img[: res // 4, :, :3] = 0
    return img


def test_textures_from_a_folder_of_flatten_outputs_at_any_resolution(model, tmp_path):
    from PIL import Image

    from stn3dmm.training.data.photo_assets import folder_photo_assets

    r = int(model.res)
    d = tmp_path / "faces"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(_halves(56, 0.2, 0.8, alpha_hole=True)).save(d / "a_face0_completed.png")    # R / 2
    Image.fromarray(_halves(56, 0.9, 0.9)).save(d / "a_face0_texture.png")     # the completion wins
    Image.fromarray(_halves(56, 0.5, 0.5)).save(d / "a_face0_overlay.png")     # flatten's by-products:
    Image.fromarray(_halves(56, 0.5, 0.5)).save(d / "a_face0.png")             # not photos
    (d / "a_face0.obj").write_text("# mesh\n")
    Image.fromarray(_halves(224, 0.8, 0.2)).save(d / "sub" / "b_face0_texture.png")             # 2 R
    a = folder_photo_assets(model, d)
    assert [Path(x).name for x in a["sources"]] == ["a_face0_completed.png", "b_face0_texture.png"]
    assert a["problems"] == [] and len(a["skins"]) == 2
    ta, tb = a["textures"]
    # a photo beside them is flattened with the photo pipeline; an image without a face is reported
    import shutil

    from stn3dmm.photos.samples import sample_photo_paths

    mixed = tmp_path / "mixed"
    shutil.copytree(d, mixed)
    shutil.copy(sample_photo_paths()[0], mixed / "person.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(mixed / "noise.png")
    if not _detector_works(model):
        pytest.skip("no face detector here: photos cannot be flattened")
    with pytest.warns(UserWarning, match="noise.png"):
        m = folder_photo_assets(model, mixed)
    assert [Path(x).name for x in m["sources"]] == ["a_face0_completed.png", "b_face0_texture.png", "person.jpg"]
    assert m["textures"][2].shape == (3, r, r) and torch.isfinite(m["textures"][2]).all()
    assert ta.shape == tb.shape == (3, r, r)
    # constant halves survive the resampling; the hole (top quarter) is filled from below
    q = r // 8
    assert torch.allclose(ta[:, :, :q], torch.tensor(51 / 255), atol=2e-3)
    assert torch.allclose(ta[:, :, -q:], torch.tensor(204 / 255), atol=2e-3)
    assert torch.allclose(tb[:, :, :q], torch.tensor(204 / 255), atol=2e-3)
    # every identity uses one of them (photo_fraction=1): the face keeps the 1:4 (or 4:1 mirrored) contrast
    ds = SyntheticFaces(model, 12, 1, size=64, seed=0, textures=str(d), photo_fraction=1.0)
    face = torch.from_numpy(ds.bank.layout["face"]) > 0.99
    left, right = face.clone(), face.clone()
    left[:, r // 2 - 2:], right[:, : r // 2 + 2] = False, False
    used = set()
    for i in range(12):
        p = ds.identity_params(i)["texture"]
        assert p["photo"] in (0, 1)
        used.add(p["photo"])
        t = ds.texture(i)
        ratio = float(t[:, right].mean() / t[:, left].mean())
        bright_right = (p["photo"] == 0) != p["photo_mirror"]
        assert (ratio > 2.5) if bright_right else (ratio < 1 / 2.5), (i, p["photo"], p["photo_mirror"], ratio)
    assert used == {0, 1}
    # the default share of photo identities stays 0.3; procedural identities have ratio ~ 1
    assert SyntheticFaces(model, 2, 1, size=64, textures=str(d)).bank.photo_fraction == 0.3


def test_texture_folder_errors_name_the_folder(model, tmp_path):
    from stn3dmm.training.data.photo_assets import folder_photo_assets

    with pytest.raises(ValueError, match="nowhere.*no such folder"):
        folder_photo_assets(model, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no usable texture"):
        SyntheticFaces(model, 2, 1, size=64, textures=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="photo_fraction"):
        SyntheticFaces(model, 2, 1, size=64, photo_fraction=1.5)


def test_synthetic_command_takes_a_texture_folder(model, default_grid, tmp_path):
    from PIL import Image

    from stn3dmm.cli import main

    d = tmp_path / "tex"
    d.mkdir()
    Image.fromarray(_halves(112, 0.3, 0.7)).save(d / "x_face0_completed.png")
    out = tmp_path / "out"
    assert main(["synthetic", "--out", str(out), "--identities", "2", "--views", "1", "--size", "48",
                 "--textures", str(d), "--photo-fraction", "1", "--quiet", "--model", str(default_grid[2])]) == 0
    cfg = json.loads((out / "synthetic.json").read_text())["config"]
    assert cfg["textures"] == str(d) and cfg["photo_fraction"] == 1.0
    assert len(list(out.glob("synth_*.png"))) == 2
    assert main(["synthetic", "--out", str(out), "--photo-fraction", "2", "--quiet"]) == 2


def _detector_works(model) -> bool:
    from stn3dmm.training.data.photo_assets import sample_photo_assets

    return bool(sample_photo_assets(model)["textures"])


def test_prerender_shared_by_processes_equals_one_process(model):
    # DDP: process r renders the aligned chunks r, r + W, ...; gathered, the store is bit-identical
    full = SyntheticFaces(model, 5, 3, size=48, seed=2, batch_size=4, **PLAIN).prerender()._store
    got = {}

    def keep(mine):
        got.update(mine)
        return mine

    with pytest.raises(RuntimeError, match="2 of 4 chunks"):      # alone, process 1 has half of them
        SyntheticFaces(model, 5, 3, size=48, seed=2, batch_size=4, **PLAIN).prerender(part=(1, 2), gather=keep)
    assert sorted(got) == [4, 12]                                   # chunks 1 and 3 of 0, 4, 8, 12
    ds = SyntheticFaces(model, 5, 3, size=48, seed=2, batch_size=4, **PLAIN)
    ds.prerender(part=(0, 2), gather=lambda mine: {**mine, **got})
    assert all(torch.equal(ds._store[k], full[k]) for k in full)
