"""Tests of the pictures in stn3dmm.viz."""

from stn3dmm.viz import visibility_comparison_figure


def test_comparison_figure(face_model, tmp_path):
    path = tmp_path / "vis.png"
    fig = visibility_comparison_figure(face_model, yaws=(0, 60), path=path)
    assert path.stat().st_size > 10_000
    assert len(fig.axes) == 8
    assert "hidden" in fig.axes[1].get_title()


def test_nme_by_yaw_figure_splits_faces_by_found(tmp_path, monkeypatch):
    """The AFLW2000-3D figure: faces found by the method as dots, the others as crosses."""
    import matplotlib.axes

    from stn3dmm.evaluation.aflw2000 import PUBLISHED
    from stn3dmm.viz import nme_by_yaw_figure

    recs = [{"abs_yaw": y, "nme": 3.0 + y / 30, "found": y < 60, "how": "detected" if y < 60 else "mean face"}
            for y in (5.0, 40.0, 70.0, 95.0)]
    buckets = {"0-30": 3.2, "30-60": 4.3, "60-90": 6.0, "bucket_mean": 4.5}
    seen = []
    real = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", lambda self, x, y, **k: seen.append(len(x)) or real(self, x, y, **k))
    out = nme_by_yaw_figure({"images": recs, "methods": {"m": {"nme": buckets}}}, PUBLISHED, "m", tmp_path / "f.png")
    assert out.stat().st_size > 10_000 and seen == [2, 2]


def test_flatten_comparison_figure_pairs_faces_by_name(tmp_path):
    from PIL import Image

    from stn3dmm.viz import flatten_comparison_figure

    for run in ("a", "b"):
        (tmp_path / run / "Ann").mkdir(parents=True)
        Image.new("RGB", (50, 10), (200, 0, 0)).save(tmp_path / run / "Ann" / "x_face0_overlay.png")
    Image.new("RGB", (50, 10)).save(tmp_path / "a" / "only_in_a_face0_overlay.png")
    out = flatten_comparison_figure({"A": tmp_path / "a", "B": tmp_path / "b"}, tmp_path / "cmp.png")
    assert out.is_file() and out.stat().st_size > 1000
    import pytest

    with pytest.raises(ValueError, match="no face was flattened in every one"):
        flatten_comparison_figure({"A": tmp_path / "a", "C": tmp_path / "a" / "Ann"}, tmp_path / "none.png")
