"""Tests of the pictures in stn3dmm.viz."""

from stn3dmm.viz import visibility_comparison_figure


def test_comparison_figure(face_model, tmp_path):
    path = tmp_path / "vis.png"
    fig = visibility_comparison_figure(face_model, yaws=(0, 60), path=path)
    assert path.stat().st_size > 10_000
    assert len(fig.axes) == 8
    assert "hidden" in fig.axes[1].get_title()
