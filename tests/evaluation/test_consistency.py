"""The held-out consistency measure: who is scored, and within / between on textures with a
known answer (a fake flattener whose textures are each person's colour plus photo noise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from stn3dmm.evaluation.consistency import consistency_people, format_consistency, texture_consistency


def make_people(root, n_people=25, n_photos=7):
    for i in range(n_people):
        d = root / f"p{i:02d}"
        d.mkdir()
        for k in range(n_photos if i != 10 else 3):           # p10 has too few photos
            Image.new("RGB", (8, 8), (i, k, 0)).save(d / f"p{i:02d}_{k:04d}.png")


def test_people_are_the_held_out_ones_with_enough_photos(tmp_path):
    make_people(tmp_path)
    people = consistency_people(tmp_path, people=30, photos=6)
    assert [n for n, _ in people] == ["p00", "p20"]            # every 10th name; p10 has 3 photos
    assert all(len(f) == 6 and f == sorted(f) for _, f in people)
    with pytest.raises(ValueError, match="fewer than 2 held-out people"):
        consistency_people(tmp_path, photos=8)
    with pytest.raises(ValueError, match="no such folder"):
        consistency_people(tmp_path / "nope")


@dataclass
class Flat:
    flattened: np.ndarray
    mask: np.ndarray


class FakeFlattener:
    """Person i's texture is grey level 0.2 + 0.4 i / 25 plus noise 0.02 per photo; half visible."""

    needs_mesh = False

    def detect(self, image):
        return []


def test_within_and_between_known_answer(tmp_path, monkeypatch):
    make_people(tmp_path)
    people = consistency_people(tmp_path, people=30, photos=6)
    rng = np.random.default_rng(0)

    def fake_largest(flattener, image):
        person = float(image[0, 0, 0]) * 255
        tex = np.full((16, 16, 3), 0.2 + 0.4 * person / 25) + rng.normal(0, 0.02, (16, 16, 3))
        mask = np.zeros((16, 16))
        mask[:, :8] = 1
        return Flat(tex, mask)

    monkeypatch.setattr("stn3dmm.flatten.pipeline.flatten_main_face", fake_largest)
    r = texture_consistency(FakeFlattener(), people, progress=False)
    # within: |N(0, .02) - N(0, .02)| has mean 2 * .02 / sqrt(pi) = 0.0226 -> 5.76 on 0-255
    assert r["within"] == pytest.approx(255 * 2 * 0.02 / np.sqrt(np.pi), rel=0.05)
    # between p00 and p20: grey levels 0.2 and 0.52 -> 0.32 * 255 = 81.6 (noise averages out)
    assert r["between"] == pytest.approx(255 * 0.32, rel=0.02)
    assert r["ratio"] == pytest.approx(r["within"] / r["between"]) and r["photos"] == 12
    assert "within" in format_consistency({"fake": r})
