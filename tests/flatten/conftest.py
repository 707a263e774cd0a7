"""Fixtures of the flatten tests: matplotlib's sample photo, a corpus of good and bad files
the tests make from it, a Flattener of the default model, and a cache of their own."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """Keep the landmark-map cache these runs write out of the user's stn3dmm cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STN3DMM_CACHE", str(tmp_path_factory.mktemp("stn3dmm-cache")))
        yield


@pytest.fixture(scope="module")
def source():
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


@pytest.fixture(scope="module")
def flattener(default_grid):
    from stn3dmm.flatten.pipeline import Flattener

    return Flattener(default_grid[0])


@pytest.fixture(scope="module")
def corpus(source, tmp_path_factory):
    """Good photos in many encodings, and bad files; name -> expected ('ok' or a reason word)."""
    d = tmp_path_factory.mktemp("flatten-corpus")
    src = np.asarray(source)
    exp = {}
    source.save(d / "plain.jpg", quality=92)
    exp["plain"] = "ok"
    source.convert("L").save(d / "grey.png")
    exp["grey"] = "ok"
    source.convert("CMYK").save(d / "cmyk.jpg", quality=92)
    exp["cmyk"] = "ok"
    Image.fromarray(np.concatenate([src, np.full(src.shape[:2] + (1,), 255, np.uint8)], -1)).save(d / "rgba.png")
    exp["rgba"] = "ok"
    Image.fromarray((src[..., 0].astype(np.uint16) * 257)).save(d / "grey16.png")
    exp["grey16"] = "ok"
    ex = Image.Exif()
    ex[0x0112] = 6                                   # stored turned; the tag says rotate 90 degrees
    source.transpose(Image.Transpose.ROTATE_90).save(d / "exif_rotated.jpg", exif=ex, quality=92)
    exp["exif_rotated"] = "ok"
    source.resize((source.width * 8, source.height * 8), Image.Resampling.BILINEAR).save(d / "huge.jpg", quality=70)
    exp["huge"] = "ok"
    source.resize((52, 61)).save(d / "tiny.png")
    exp["tiny"] = "face too small"
    canvas = Image.new("RGB", (900, 700), (128, 128, 128))     # a 26 px face the main pass misses
    canvas.paste(source.resize((51, 60)), (300, 300))
    canvas.save(d / "smallface.png")
    exp["smallface"] = "face too small ("
    Image.fromarray((np.indices((300, 400)).sum(0) % 50 * 5).astype(np.uint8)).save(d / "noface.png")
    exp["noface"] = "no face"
    data = (d / "plain.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    exp["truncated"] = "unreadable"
    (d / "notes.jpg").write_text("not a photo")
    exp["notes"] = "unreadable"
    return d, exp
