"""Tests of MorphableSTN: the output contract, known answers, gradients, dtype/device, bad input."""

import dataclasses
import math

import pytest
import torch

from stn3dmm.stn import MorphableSTN, STNOutput
from stn3dmm.stn import layers as L
from testkit import synthetic_models as syn


H = W = 224


def _theta(stn, b=2, seed=0, yaw_deg=30.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    th = torch.zeros(b, stn.n_params, dtype=torch.float64)
    yaw = torch.linspace(-yaw_deg, yaw_deg, b, dtype=torch.float64) if b > 1 else torch.tensor([yaw_deg])
    th[:, :3] = syn.euler_to_axis_angle(torch.deg2rad(yaw).numpy(), 0.1, -0.05)
    th[:, 3:5] = 111.5 + 5 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    th[:, 5] = math.log(0.9)
    th[:, 6:] = 0.5 * torch.randn(b, stn.n_params - 6, generator=g, dtype=torch.float64)
    return th.to(dtype)


def test_output_contract(face_model):
    stn = MorphableSTN(face_model)
    imgs = torch.rand(3, 3, H, W)
    out = stn(imgs, _theta(stn, 3))
    r, n = face_model.res, face_model.n_vertices
    shapes = {"points": (3, n, 2), "landmarks": (3, 21, 2), "grid": (3, r, r, 2), "flattened": (3, 3, r, r),
              "mask": (3, 1, r, r), "masked": (3, 3, r, r), "visibility": (3, n), "posed": (3, n, 3)}
    for k, s in shapes.items():
        assert tuple(out[k].shape) == s, k
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out["masked"], out["flattened"] * out["mask"])
    assert stn.n_params == 6 + face_model.n_id + face_model.n_exp
    assert "MorphableSTN(res=32" in repr(stn)
    assert MorphableSTN(face_model, landmarks="ibug68")(imgs, _theta(stn, 3))["landmarks"].shape == (3, 68, 2)


def test_identity_pose_known_answer(face_model):
    """r = 0, logs = 0, t = c: points = (X_x + c_x, -X_y + c_y); landmarks = points at the indices."""
    stn = MorphableSTN(face_model, visibility="none").double()
    th = torch.zeros(1, stn.n_params, dtype=torch.float64)
    th[0, 3:5] = torch.tensor([100.0, 120.0])
    out = stn(torch.zeros(1, 3, H, W, dtype=torch.float64), th)
    mean = torch.as_tensor(face_model.mean, dtype=torch.float64)
    assert torch.allclose(out["points"][0, :, 0], mean[:, 0] + 100.0)
    assert torch.allclose(out["points"][0, :, 1], -mean[:, 1] + 120.0)
    idx = torch.as_tensor(face_model.landmarks["aflw21"])
    assert torch.equal(out["landmarks"][0], out["points"][0, idx])
    # row 0 of the output grid is the top of the face: smallest image y
    assert out["grid"][0, 0, :, 1].max() < out["grid"][0, -1, :, 1].min()


def test_flattened_samples_a_linear_image_at_the_projected_points(face_model):
    """On a linear image bilinear sampling is exact, so flattened = ramp(points) wherever inside."""
    stn = MorphableSTN(face_model, visibility="none").double()
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = torch.stack([xs, ys, 0.3 * xs - 0.2 * ys + 7])[None].expand(2, -1, -1, -1)
    out = stn(img, _theta(stn, 2, dtype=torch.float64))
    p = out["points"].view(2, face_model.res, face_model.res, 2)
    assert out["mask"].all()
    assert (out["flattened"][:, 0] - p[..., 0]).abs().max() < 1e-9
    assert (out["flattened"][:, 1] - p[..., 1]).abs().max() < 1e-9
    assert (out["flattened"][:, 2] - (0.3 * p[..., 0] - 0.2 * p[..., 1] + 7)).abs().max() < 1e-9


def test_original_grid_convention_samples_where_the_original_did(face_model):
    """grid_convention="original" reads column (x + 1)(W - 1)/W and row y (H - 1)/H for a point
    at (x, y) (worked out in tests/stn/test_layers.py): on the ramp image the flattened x and y
    channels are those positions."""
    stn = MorphableSTN(face_model, visibility="none", grid_convention="original").double()
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = torch.stack([xs, ys, xs * 0])[None].expand(2, -1, -1, -1)
    out = stn(img, _theta(stn, 2, dtype=torch.float64))
    p = out["points"].view(2, face_model.res, face_model.res, 2)
    assert (out["flattened"][:, 0] - (p[..., 0] + 1) * (W - 1) / W).abs().max() < 1e-9
    assert (out["flattened"][:, 1] - p[..., 1] * (H - 1) / H).abs().max() < 1e-9
    with pytest.raises(ValueError, match="grid_convention"):
        MorphableSTN(face_model, grid_convention="matlab")


def test_out_of_image_pixels_are_zero_and_masked(face_model):
    stn = MorphableSTN(face_model, visibility="none")
    th = _theta(stn, 1, yaw_deg=0.0)
    th[0, 3] = 10.0  # face centre near the left border: its left half falls outside
    out = stn(torch.ones(1, 3, H, W), th)
    px = out["points"][0, :, 0].view(face_model.res, face_model.res)
    outside = px < 0
    assert outside.sum() > 50
    assert (out["mask"][0, 0][outside] == 0).all() and (out["masked"][0][:, outside] == 0).all()
    assert (out["mask"][0, 0][px > 1] == 1).all()


def test_visibility_modes_and_mask(face_model):
    imgs = torch.rand(2, 3, H, W)
    th = _theta(MorphableSTN(face_model), 2, yaw_deg=60.0)
    outs = {v: MorphableSTN(face_model, visibility=v)(imgs, th) for v in ("none", "backface", "depth")}
    assert outs["none"]["mask"].all()
    back, depth = outs["backface"]["mask"], outs["depth"]["mask"]
    assert (depth <= back).all() and depth.sum() < back.sum() < back.numel()
    assert torch.equal(outs["depth"]["visibility"].view(2, 1, 32, 32).float(), depth)
    with pytest.raises(ValueError, match="visibility"):
        MorphableSTN(face_model, visibility="zbuffer")


def test_output_is_typed_with_attribute_and_key_access(face_model):
    stn = MorphableSTN(face_model, visibility="none")
    out = stn(torch.rand(2, 3, H, W), _theta(stn, 2))
    assert isinstance(out, STNOutput)
    names = [f.name for f in dataclasses.fields(out)]
    assert names == ["points", "landmarks", "grid", "flattened", "mask", "masked", "visibility", "shape", "posed",
                     "rotation", "scale"]
    for k in names:
        assert isinstance(getattr(out, k), torch.Tensor), k
        assert out[k] is getattr(out, k), k  # key access is the attribute, not a copy
    assert out.flattened.shape == (2, 3, face_model.res, face_model.res)
    assert out.visibility.dtype == torch.bool and out.visibility.all()  # "none": every vertex
    for key in ("raster", "__class__", "keys"):  # only the fields are keys
        with pytest.raises(KeyError):
            out[key]


def test_theta_is_checked_once_per_forward_with_the_same_errors(face_model, monkeypatch):
    from stn3dmm.stn import module

    calls = []
    real = module.check_theta
    monkeypatch.setattr(module, "check_theta", lambda *a, **k: calls.append(a) or real(*a, **k))
    stn = MorphableSTN(face_model)
    imgs, th = torch.rand(2, 3, H, W), _theta(stn, 2)
    stn(imgs, th)
    assert len(calls) == 1
    stn.geometry(th)
    assert len(calls) == 2
    # the module's advice on the column count comes first, whatever else is wrong
    with pytest.raises(ValueError, match="columns .* n_id=..., n_exp=..."):
        stn(imgs, th[:, :-1].long())
    with pytest.raises(ValueError, match="floating-point"):
        stn(imgs, th.long())


def test_out_res_resamples_the_grid_exactly_at_shared_points(face_model):
    stn = MorphableSTN(face_model).double()
    big = MorphableSTN(face_model, out_res=2 * face_model.res - 1).double()
    small = MorphableSTN(face_model, out_res=20).double()
    imgs = torch.rand(2, 3, H, W, dtype=torch.float64)
    th = _theta(stn, 2, dtype=torch.float64)
    a, b, c = stn(imgs, th), big(imgs, th), small(imgs, th)
    assert torch.allclose(b["grid"][:, ::2, ::2], a["grid"], atol=1e-12)
    assert torch.allclose(b["flattened"][:, :, ::2, ::2], a["flattened"], atol=1e-10)
    assert c["flattened"].shape == (2, 3, 20, 20) and c["mask"].shape == (2, 1, 20, 20)
    assert (b["mask"][:, :, ::2, ::2] == a["mask"]).float().mean() > 0.99
    assert torch.allclose(c["grid"][:, [0, -1]][:, :, [0, -1]], a["grid"][:, [0, -1]][:, :, [0, -1]], atol=1e-12)


def test_fewer_coefficients_use_the_leading_components(face_model):
    full = MorphableSTN(face_model, visibility="none").double()
    part = MorphableSTN(face_model, visibility="none", n_id=2, n_exp=1).double()
    assert part.n_params == 9 and part.basis_id.shape[0] == 2
    th = _theta(part, 2, dtype=torch.float64)
    padded = torch.zeros(2, full.n_params, dtype=torch.float64)
    padded[:, :8] = th[:, :8]
    padded[:, 6 + face_model.n_id] = th[:, 8]
    imgs = torch.rand(2, 3, H, W, dtype=torch.float64)
    assert torch.allclose(part(imgs, th)["points"], full(imgs, padded)["points"])
    with pytest.raises(ValueError, match="n_id=..., n_exp=..."):
        part(imgs, padded)
    with pytest.raises(ValueError):
        MorphableSTN(face_model, n_id=face_model.n_id + 1)


def test_bad_input_raises_clear_errors(face_model):
    stn = MorphableSTN(face_model)
    imgs = torch.rand(2, 3, H, W)
    th = _theta(stn, 2)
    bad = th.clone()
    bad[0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        stn(imgs, bad)
    with pytest.raises(ValueError, match="columns"):
        stn(imgs, th[:, :-1])
    with pytest.raises(ValueError, match="theta must have shape"):
        stn(imgs, th[0])
    with pytest.raises(ValueError, match="batch"):
        stn(imgs, th[:1])
    with pytest.raises(ValueError, match="floating"):
        stn((imgs * 255).to(torch.uint8), th)
    with pytest.raises(ValueError, match="dtype"):
        stn(imgs.double(), th.double())
    with pytest.raises(ValueError, match="dtype"):
        stn(imgs, th.double())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        stn(imgs[0], th)
    far = th.clone()
    far[1, 3] = 2000.0  # a theta in the wrong convention or a diverged localiser
    with pytest.raises(ValueError, match="outside"):
        stn(imgs, far)
    huge = th.clone()
    huge[0, 5] = 500.0  # exp(500) overflows to inf
    with pytest.raises(ValueError, match="outside"):
        stn(imgs, huge)
    MorphableSTN(face_model, max_outside=None)(imgs, far)  # check disabled
    with pytest.raises(ValueError, match="grid model"):
        MorphableSTN(face_model.__class__(face_model.mean, face_model.basis_id, face_model.basis_exp,
                                          face_model.faces, face_model.landmarks, face_model.mirror))
    with pytest.raises(ValueError, match="landmark set"):
        MorphableSTN(face_model, landmarks="mpie")


def test_channels_and_non_finite_images(face_model):
    """Grey (1) and RGB (3) images are sampled alike; other channel counts raise unless allowed;
    NaN pixels where the face is sampled raise (naming the image), NaN elsewhere is harmless."""
    stn = MorphableSTN(face_model)
    th = _theta(stn, 2)
    rgb = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    out3 = stn(rgb, th)
    out1 = stn(rgb[:, 1:2], th)                       # the green channel alone
    assert out1["flattened"].shape == (2, 1, face_model.res, face_model.res)
    assert torch.equal(out1["flattened"], out3["flattened"][:, 1:2])
    assert torch.equal(out1["masked"], out3["masked"][:, 1:2]) and torch.equal(out1["mask"], out3["mask"])
    for c in (2, 4, 5):
        with pytest.raises(ValueError, match=f"images have {c} channels; this MorphableSTN takes 1 or 3"):
            stn(torch.rand(2, c, H, W), th)
    assert MorphableSTN(face_model, channels=None)(torch.rand(2, 5, H, W), th)["flattened"].shape[1] == 5
    with pytest.raises(ValueError, match="takes 4"):
        MorphableSTN(face_model, channels=4)(rgb, th)
    nan = rgb.clone()
    pts = out3["points"][1].round().long()
    nan[1, 0, pts[:, 1].clamp(0, H - 1), pts[:, 0].clamp(0, W - 1)] = float("nan")   # under the face
    with pytest.raises(ValueError, match=r"image\(s\) \[1\] have NaN or infinite pixels"):
        stn(nan, th)
    assert torch.isnan(MorphableSTN(face_model, check_finite=False)(nan, th)["flattened"][1]).any()
    corner = rgb.clone()
    corner[:, :, 0, 0] = float("nan")                 # not sampled by these poses: no effect
    assert (out3["points"][..., 1] > 2).all() and (out3["points"][..., 0] > 2).all()
    assert torch.equal(stn(corner, th)["flattened"], out3["flattened"])


def test_gradcheck_through_the_whole_module(small_model):
    """Finite-difference check of d(outputs)/d(theta) in float64 (landmarks and sampled pixels)."""
    stn = MorphableSTN(small_model, visibility="backface", landmarks=[0, 40, 80]).double()
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 24, 24, generator=g, dtype=torch.float64)
    th = torch.zeros(2, stn.n_params, dtype=torch.float64)
    th[:, :3] = torch.tensor([[0.1, 0.3, -0.05], [1e-9, 0.0, 0.0]])
    th[:, 3:5] = 11.7
    th[:, 5] = math.log(0.09)
    th[:, 6:] = torch.randn(2, stn.n_params - 6, generator=g, dtype=torch.float64)
    th.requires_grad_(True)

    def f(t):
        out = stn(imgs, t)
        return out["landmarks"], out["masked"]

    assert stn(imgs, th)["mask"].mean() > 0.7  # the sampler path is exercised
    assert torch.autograd.gradcheck(lambda t: stn(imgs, t)["landmarks"], (th,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(f, (th,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_module_moves_and_converts_like_smplx(face_model):
    stn = MorphableSTN(face_model)
    assert stn.mean.dtype == torch.float32 and stn.faces.dtype == torch.long
    d = MorphableSTN(face_model).double()
    assert d.mean.dtype == torch.float64 and d.basis_exp.dtype == torch.float64 and d.faces.dtype == torch.long
    assert len(stn.state_dict()) == 0  # the model is not part of checkpoints
    names = {n for n, _ in stn.named_buffers()}
    assert {"mean", "basis_id", "basis_exp", "faces", "landmark_index", "mirror"} <= names
    # .to(...) moves every buffer and converts only the floating ones (checked on the CPU with
    # the "meta" device, which has storage-free tensors: no GPU needed)
    m = MorphableSTN(face_model).to("meta")
    assert all(t.device.type == "meta" for t in m.buffers())
    assert m.mean.dtype == torch.float32 and m.faces.dtype == torch.long and m.landmark_index.dtype == torch.long
    h = MorphableSTN(face_model).to(torch.float16)
    assert h.basis_id.dtype == torch.float16 and h.mirror.dtype == torch.long
    with pytest.raises(ValueError, match="images are on meta but the module is on cpu"):
        stn(torch.rand(2, 3, H, W, device="meta"), _theta(stn, 2))
    # outputs follow the module's dtype, and the converted buffers are the same numbers
    th = _theta(stn, 2, dtype=torch.float64)
    imgs = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out64, out32 = d(imgs, th), stn(imgs.float(), th.float())
    for k in ("points", "landmarks", "grid", "flattened", "mask", "masked", "shape", "posed", "rotation", "scale"):
        assert out64[k].dtype == torch.float64 and out32[k].dtype == torch.float32, k
    assert out64["visibility"].dtype == torch.bool
    assert torch.equal(d.mean, torch.as_tensor(face_model.mean, dtype=torch.float32).double())
    assert (out64["points"] - out32["points"].double()).abs().max() < 1e-3
    if torch.cuda.is_available():  # pragma: no cover - no GPU on the CI machine
        c = MorphableSTN(face_model).cuda()
        out = c(torch.rand(2, 3, H, W, device="cuda"), _theta(c, 2).cuda())
        assert out["masked"].is_cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_agree(face_model, dtype):
    stn = MorphableSTN(face_model).to(dtype)
    imgs = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    th = _theta(stn, 2, dtype=torch.float64)
    out = stn(imgs.to(dtype), th.to(dtype))
    ref = MorphableSTN(face_model).double()(imgs, th)
    assert out["flattened"].dtype == dtype
    assert (out["points"].double() - ref["points"]).abs().max() < 1e-3
    assert (out["flattened"].double() - ref["flattened"]).abs().max() < 1e-3
    assert (out["mask"].double() == ref["mask"]).float().mean() > 0.995


def test_from_file_roundtrip(face_model, tmp_path):
    from stn3dmm.model import save_model

    p = save_model(face_model, tmp_path / "m.npz")
    stn = MorphableSTN.from_file(p, visibility="backface")
    assert torch.equal(stn.mean, torch.as_tensor(face_model.mean))


def test_geometry_matches_functional_layers(face_model):
    stn = MorphableSTN(face_model, scale="original").double()
    th = _theta(stn, 2, dtype=torch.float64)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    ref = L.grid_generator(th, t(face_model.mean), t(face_model.basis_id), t(face_model.basis_exp),
                           face_model.n_id, face_model.n_exp, "original")
    assert torch.equal(stn.geometry(th).points, ref.points)
    assert torch.allclose(ref.scale, 0.99 ** th[:, 5])


def test_odd_and_tiny_resolutions_and_non_square_images_work():
    for res in (9, 33):
        m = syn.make_face_model(res)
        stn = MorphableSTN(m)
        th = torch.zeros(1, stn.n_params)
        th[0, 1] = 0.3                      # some yaw
        th[0, 3:5] = torch.tensor([23.5, 31.5])  # centre of a 64 x 48 image
        th[0, 5] = math.log(0.25)           # 140 x 180 mm -> 35 x 45 px
        out = stn(torch.rand(1, 3, 64, 48), th)
        assert out["masked"].shape == (1, 3, res, res) and out["mask"].mean() > 0.8
