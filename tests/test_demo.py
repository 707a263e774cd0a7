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
    assert "Levenberg-Marquardt, 5+5" in err and "gradient descent (original)" in err and "iterations" in err
    from matplotlib.image import imread

    for k in range(1, 7):
        png = imread(tmp_path / f"demo_{k}.png")
        assert png.shape[:2] == (324, 1440)                    # 16 x 3.6 in at 90 dpi: five panels
        assert png[..., :3].std() > 0.1                        # not blank
    assert imread(tmp_path / "convergence.png")[..., :3].std() > 0.05


def test_demo_figure_content(default_grid, shared_dir):
    """Each panel shows what it says: the photo with its labels and the fitted landmarks, the
    projected wireframe, the flattened face, a mask, and the masked face (zero where masked)."""
    data = shared_dir / "data" / "demodata.mat"
    if not data.exists():
        pytest.skip(f"{data} not present (the shared data folder is not shipped with stn3dmm)")
    from stn3dmm.demo import DemoRun, demo_figure, demo_outputs
    from stn3dmm.training.data.demo_photos import read_demodata
    from stn3dmm.fitting.landmarks import fit_landmarks
    from stn3dmm.viz import plt

    model = default_grid[0]
    images, labels = read_demodata(data)
    r = fit_landmarks(model, labels, image_size=(224, 224))
    run = DemoRun("lm", r.error.numpy(), 0.0, r.iterations.numpy(), r.history.numpy(), r.theta, r.n_id, r.n_exp,
                  r.scale)
    out = demo_outputs(model, images, run)
    res = model.res
    for k in range(6):
        fig = demo_figure(images, labels, out, run, k, res)
        ax = fig.axes
        assert len(ax) == 5
        photo = ax[0].images[0].get_array()
        assert photo.shape == (224, 224, 3) and np.allclose(photo, images[k].permute(1, 2, 0).numpy())
        lab, fit = ax[0].lines[0].get_xydata(), ax[0].lines[1].get_xydata()
        assert np.allclose(lab, labels[k].numpy())
        assert np.linalg.norm(fit - lab, axis=1).mean() == pytest.approx(float(r.error[k]), rel=1e-6)
        assert float(r.error[k]) < 3.1                          # the fit (+) lands on the labels (o)
        wire = np.concatenate([ln.get_xydata() for ln in ax[1].lines])
        assert len(ax[1].lines) == 2 * len(range(0, res, 4))
        assert ((wire > 0) & (wire < 223)).all()              # the mesh lies on the photo
        flat, mask, masked = (a.images[0].get_array() for a in ax[2:])
        assert flat.shape == masked.shape == (res, res, 3) and mask.shape == (res, res)
        assert set(np.unique(mask)) <= {0.0, 1.0} and 0.5 < mask.mean() < 0.98
        centre = np.s_[res // 3:2 * res // 3, res // 3:2 * res // 3]
        # the face centre is visible (measured 0.95-0.99: nostrils and the mouth's inside hidden) ...
        assert mask[centre].mean() > 0.9
        assert masked[centre][mask[centre] > 0].mean() > 0.1   # ... and shows the photo there
        assert (masked[mask == 0] == 0).all()                  # zero where the mask is 0
        assert np.allclose(masked[mask == 1], flat[mask == 1])
        plt.close(fig)


def test_original_gradient_descent_on_the_demo_photos(default_grid, demo_inputs):
    """fit_landmarks(method="gd") runs the original demo's loop on its six photos: the batch-total
    rule stops all six together, after the step of the first pass whose total changed by < 1.

    Measured on the default model, float64, alpha from a generator seeded 0: 980 passes, mean
    error 3.63 px (seeds 0-29: 926-984 passes, 3.51-3.63 px; the issue's run of the original
    gave about 950-973 and 3.4-3.5). The bounds leave room for rounding differences between
    machines and torch versions, which over ~1000 steps can move the stopping pass a little;
    a change of the loop (the per-image rule, a prior) moves the result far outside them
    (per-image rule with the prior: 189-757 passes, 4.27 px)."""
    import torch

    from stn3dmm.fitting.landmarks import fit_landmarks

    images, labels = demo_inputs
    r = fit_landmarks(default_grid[0], labels, method="gd", n_id=5, n_exp=5, image_size=(224, 224),
                      generator=torch.Generator().manual_seed(0))
    n = int(r.iterations[0])
    print(f"\noriginal gradient descent on the demo photos: {n} passes, mean error {float(r.error.mean()):.3f} px")
    assert (r.iterations == n).all() and r.converged.all()
    assert 930 <= n <= 1030
    assert 3.45 <= float(r.error.mean()) <= 3.8
    tot = r.history.sum(1).double()
    change = (tot[1:n] - tot[:n - 1]).abs()
    assert change[-1] < 1 and (change[:-1] >= 1).all()
    lm = fit_landmarks(default_grid[0], labels, method="lm", n_id=5, n_exp=5)
    assert float(lm.error.mean()) < float(r.error.mean()) - 1.0


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
