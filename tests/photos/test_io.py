"""Reading the corpus of good and bad files, listing folders, and writing PNGs atomically."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
from PIL import Image, ImageFile

from stn3dmm.photos import io as pio
from stn3dmm.photos.io import Photo, PhotoError, iter_photos, read_photo, write_png_atomic
from testkit import photo_corpus as kit


BAD, GOOD, PATTERN, STORED, block_centres, pattern = kit.BAD, kit.GOOD, kit.PATTERN, kit.STORED, kit.block_centres, \
    kit.pattern


def _u8(photo: Photo) -> np.ndarray:
    return photo.as_uint8().astype(int)


def test_pillow_refuses_truncated_images_by_default():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("name", GOOD)
def test_good_files_decode_to_rgb_float(corpus, name):
    ph = read_photo(corpus / name)
    assert ph.image.dtype == np.float32 and ph.image.ndim == 3 and ph.image.shape[2] == 3
    assert 0.0 <= ph.image.min() and ph.image.max() <= 1.0
    assert max(ph.image.shape[:2]) <= pio.DEFAULT_MAX_SIDE
    assert ph.path == corpus / name


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_photo_error_naming_file_and_problem(corpus, name):
    with pytest.raises(PhotoError) as e:
        read_photo(corpus / name)
    assert isinstance(e.value, ValueError)
    assert str(corpus / name) in str(e.value)
    assert BAD[name] in str(e.value)


def test_png_pixels_exact(corpus):
    ph = read_photo(corpus / "rgb.png")
    np.testing.assert_array_equal(ph.as_uint8(), pattern())
    assert ph.original_size == (120, 90) and ph.scale == 1.0 and ph.orientation == 1 and ph.format == "PNG"


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_rotated_pattern_comes_back_upright(corpus, orientation):
    ph = read_photo(corpus / f"exif{orientation}.jpg")
    assert ph.orientation == orientation
    assert ph.image.shape == (90, 120, 3) and ph.original_size == (120, 90)
    # JPEG is lossy: compare block centres closely and the whole picture loosely
    np.testing.assert_allclose(block_centres(_u8(ph)), PATTERN, atol=12)
    assert np.abs(_u8(ph) - pattern().astype(int)).mean() < 4
    assert any("EXIF orientation" in n for n in ph.notes)


def test_exif_unrotated_file_differs_from_pattern(corpus):
    """The stored (not upright) pixels really are turned: the test above can fail."""
    with Image.open(corpus / "exif6.jpg") as im:
        assert im.size == (90, 120)


def test_cmyk_converted_to_rgb(corpus):
    ph = read_photo(corpus / "cmyk.jpg")
    cols = ph.as_uint8()[15, 15::30].astype(int)
    expected = [(255, 255, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    np.testing.assert_allclose(cols, expected, atol=10)
    assert ph.mode == "CMYK"


def test_embedded_icc_profiles(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pattern()).save(tmp_path / "srgb.png", icc_profile=srgb)
    ph = read_photo(tmp_path / "srgb.png")
    assert "ICC profile converted to sRGB" in ph.notes
    np.testing.assert_allclose(block_centres(_u8(ph)), PATTERN, atol=3)  # sRGB -> sRGB changes nothing
    Image.fromarray(pattern()).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    ph = read_photo(tmp_path / "broken.png")  # a broken profile is ignored, not fatal
    assert any("ICC profile ignored" in n for n in ph.notes)
    np.testing.assert_array_equal(ph.as_uint8(), pattern())


def test_grey_becomes_three_equal_channels(corpus):
    ph = read_photo(corpus / "grey.png")
    assert np.array_equal(ph.image[..., 0], ph.image[..., 1]) and np.array_equal(ph.image[..., 0], ph.image[..., 2])
    np.testing.assert_allclose(ph.image[0, :, 0], np.linspace(0, 255, 64).round() / 255, atol=1e-6)


@pytest.mark.parametrize("name", ["grey16.png", "grey16.tif"])
def test_16_bit_scaled_from_full_range_not_clipped(corpus, name):
    ph = read_photo(corpus / name)
    assert ph.mode.startswith("I;16")
    want = np.linspace(0, 65535, 64).round() / 65535
    np.testing.assert_allclose(ph.image[0, :, 0], want, atol=1e-6)
    # a clipping conversion would turn every value above 255 into white
    assert (ph.image[0, :, 0] < 0.5).sum() == 32


def test_float_and_int32_grey(corpus):
    f = read_photo(corpus / "float.tif")
    np.testing.assert_allclose(f.image[0, :, 1], np.linspace(0, 1, 64), atol=1e-6)
    i = read_photo(corpus / "int32.tif")
    np.testing.assert_allclose(i.image[0, :, 2], np.linspace(0, 4000, 64).round() / 65535, atol=1e-6)


def test_rgba_composited_over_grey_and_alpha_kept(corpus):
    ph = read_photo(corpus / "rgba.png")
    a = 128 / 255
    np.testing.assert_allclose(ph.image[5, 5], [a + (1 - a) * 0.5, (1 - a) * 0.5, (1 - a) * 0.5], atol=1e-6)
    np.testing.assert_allclose(ph.image[5, 30], [0.5, 0.5, 0.5], atol=1e-6)  # transparent green is gone
    np.testing.assert_allclose(ph.alpha[5, [5, 30]], [a, 0.0], atol=1e-6)


def test_palette_transparency_and_grey_alpha(corpus):
    ph = read_photo(corpus / "palette_transparent.png")
    np.testing.assert_allclose(ph.image[5, 5], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(ph.image[5, 35], [0.5, 0.5, 0.5], atol=1e-6)  # index 3 is transparent
    assert ph.alpha is not None and ph.alpha[5, 35] == 0
    la = read_photo(corpus / "grey_alpha.png")
    np.testing.assert_allclose(la.image[3, :8], 0.5, atol=1e-6)
    assert read_photo(corpus / "rgb.png").alpha is None


def test_48_bit_png_keeps_the_high_bytes(corpus):
    ph = read_photo(corpus / "rgb48.png")
    np.testing.assert_array_equal(ph.as_uint8()[0, 0], [128, 255, 1])


def test_tiny_images(corpus):
    ph = read_photo(corpus / "one_pixel.png")
    assert ph.image.shape == (1, 1, 3)
    np.testing.assert_allclose(ph.image[0, 0] * 255, [10, 200, 30], atol=1e-4)
    b = read_photo(corpus / "bitonal.png")
    assert b.image[0, 0, 0] == 1.0 and b.image[0, 1, 0] == 0.0


def test_huge_jpeg_downscaled_first(corpus):
    ph = read_photo(corpus / "huge.jpg")
    assert ph.original_size == (10000, 8000)
    assert ph.image.shape == (1638, 2048, 3)
    assert ph.scale == pytest.approx(2048 / 10000)
    np.testing.assert_allclose(block_centres(_u8(ph)), PATTERN, atol=12)
    assert any("downscaled" in n for n in ph.notes)
    # coordinates: the centre of the top-left block in the original maps to the small image and back
    p = np.array([1250.0, 1333.0])
    q = ph.from_original(p)
    np.testing.assert_allclose(ph.to_original(q), p)
    np.testing.assert_allclose(q, (p + 0.5) * [2048 / 10000, 1638 / 8000] - 0.5)


def test_large_jpeg_uses_the_decoders_own_scaling(tmp_path):
    """4000 x 3000 stored, EXIF 8 (upright 3000 x 4000): decoded at 1/2 scale, no resampling."""
    upright = np.asarray(Image.fromarray(PATTERN).resize((3000, 4000), Image.Resampling.NEAREST))
    e = Image.Exif()
    e[0x0112] = 8
    Image.fromarray(np.ascontiguousarray(STORED[8](upright))).save(tmp_path / "cam.jpg", quality=85, exif=e)
    ph = read_photo(tmp_path / "cam.jpg")
    assert ph.original_size == (3000, 4000) and ph.image.shape == (2000, 1500, 3) and ph.scale == 0.5
    np.testing.assert_allclose(block_centres(_u8(ph)), PATTERN, atol=12)
    np.testing.assert_allclose(ph.to_original([[0.0, 0.0], [1499.0, 1999.0]]), [[0.5, 0.5], [2998.5, 3998.5]])
    # within 20 % below the limit: the 1/4 scale is the result; else resampled to exactly max_side
    assert read_photo(tmp_path / "cam.jpg", max_side=1200).image.shape == (1000, 750, 3)
    assert read_photo(tmp_path / "cam.jpg", max_side=1500).image.shape == (1500, 1125, 3)


def test_max_side_none_and_smaller_max_side(corpus):
    assert read_photo(corpus / "rgb.png", max_side=None).image.shape == (90, 120, 3)
    small = read_photo(corpus / "rgb.png", max_side=40)
    assert small.image.shape == (30, 40, 3) and small.scale == pytest.approx(1 / 3)
    np.testing.assert_allclose(block_centres(_u8(small)), PATTERN, atol=20)


def test_pixel_limit_is_configurable(corpus):
    with pytest.raises(PhotoError, match="decompression-bomb"):
        read_photo(corpus / "rgb.png", max_pixels=1000)
    assert read_photo(corpus / "rgb.png", max_pixels=120 * 90).image.shape == (90, 120, 3)


def test_unreadable_file_reports_permission(corpus, monkeypatch):
    # tests may run as root, for whom chmod 000 does not stop reading: simulate the OS refusing
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pio.os, "open", refuse)
    with pytest.raises(PhotoError, match="permission denied") as e:
        read_photo(corpus / "rgb.png")
    assert "rgb.png" in str(e.value)


def test_reads_from_an_open_file(corpus):
    with open(corpus / "rgb.png", "rb") as f:
        ph = read_photo(f)
    np.testing.assert_array_equal(ph.as_uint8(), pattern())


def test_iter_photos_lists_sorted_and_reports_non_images(tmp_path, corpus):
    (tmp_path / "b.png").write_bytes((corpus / "rgb.png").read_bytes())
    (tmp_path / "a.JPG").write_bytes((corpus / "rgb.jpg").read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jpg").write_bytes((corpus / "rgb.jpg").read_bytes())
    skipped = []
    got = list(iter_photos([tmp_path], on_skip=lambda p, why: skipped.append((p.name, why))))
    assert [p.name for p in got] == ["a.JPG", "b.png"]
    assert skipped == [("notes.txt", "not an image file (extension)")]
    got = list(iter_photos([tmp_path, tmp_path / "b.png", tmp_path / "nope.jpg", tmp_path / "notes.txt"],
                           recursive=True, on_skip=lambda p, why: skipped.append((p.name, why))))
    # an explicitly named file is yielded whatever its extension (read_photo judges it); each path once
    assert [p.name for p in got] == ["a.JPG", "b.png", "c.jpg", "notes.txt"]
    assert ("nope.jpg", "does not exist") in skipped
    with pytest.warns(UserWarning, match="notes.txt"):
        list(iter_photos(str(tmp_path)))


def test_corpus_batch_never_crashes(corpus):
    """What the flatten command does: list everything, read what can be read, report the rest."""
    ok, bad, skipped = [], [], []
    for p in iter_photos([corpus], on_skip=lambda p, why: skipped.append(p)):
        try:
            ok.append(read_photo(p).path.name)
        except PhotoError as e:
            bad.append(e.path.name)
    assert set(ok) == set(GOOD)
    assert set(bad) == set(BAD) - {"missing.jpg", "folder.jpg"}
    assert skipped == []


@pytest.mark.parametrize("channels", [3, 4])
def test_write_png_atomic_round_trip(tmp_path, channels):
    rng = np.random.default_rng(0)
    img = rng.random((17, 23, channels)).astype(np.float32)
    out = write_png_atomic(tmp_path / "sub" / "x.png", img)
    assert out == tmp_path / "sub" / "x.png"
    with Image.open(out) as im:
        assert im.mode == ("RGB" if channels == 3 else "RGBA")
        np.testing.assert_array_equal(np.asarray(im), np.rint(img * 255).astype(np.uint8))
    assert sorted(os.listdir(tmp_path / "sub")) == ["x.png"]  # no temporary file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def test_write_png_atomic_overwrite_and_failures(tmp_path):
    p = tmp_path / "y.png"
    write_png_atomic(p, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileExistsError):
        write_png_atomic(p, np.ones((4, 4, 3), np.uint8), overwrite=False)
    assert np.asarray(Image.open(p)).max() == 0
    write_png_atomic(p, np.full((4, 4), 1.5))  # grey, clipped to white
    assert np.asarray(Image.open(p)).min() == 255
    with pytest.raises(ValueError):
        write_png_atomic(tmp_path / "z.png", np.zeros((4, 4, 5)))
    assert sorted(os.listdir(tmp_path)) == ["y.png"]


def test_write_png_accepts_torch(tmp_path):
    import torch

    p = write_png_atomic(tmp_path / "t.png", torch.full((3, 5, 3), 0.5))
    assert np.asarray(Image.open(p))[0, 0, 0] == 128


def test_a_jpeg_over_the_pixel_limit_is_decoded_reduced_not_refused(tmp_path, monkeypatch):
    """Like a 12000 x 9000 photo against Pillow's 89.5 M limit (1.2 times it), scaled down to
    keep the test small: 1600 x 1200 (1.9 M) against a 1 M limit. The JPEG decodes at 1/2
    (800 x 450) and is read; a PNG of the same size cannot be decoded reduced and is refused,
    as is the JPEG when asked for full size."""
    big = Image.fromarray(PATTERN).resize((1600, 1200), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.jpg", quality=85)
    big.save(tmp_path / "big.png", compress_level=1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    ph = read_photo(tmp_path / "big.jpg", max_side=512)
    assert ph.original_size == (1600, 1200) and ph.image.shape == (384, 512, 3)
    assert any("800 x 600" in n for n in ph.notes)
    np.testing.assert_allclose(block_centres(_u8(ph)), PATTERN, atol=12)
    with pytest.raises(PhotoError, match="big.png: too large"):
        read_photo(tmp_path / "big.png", max_side=512)
    with pytest.raises(PhotoError, match="1600 x 1200 = 1920000 pixels exceeds the limit of 1000000"):
        read_photo(tmp_path / "big.jpg", max_side=None)
    # an explicit limit applies to the decoded size too
    with pytest.raises(PhotoError, match="exceeds the limit of 1500000"):
        read_photo(tmp_path / "big.jpg", max_side=None, max_pixels=1_500_000)


def test_a_jpeg_declaring_far_more_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    """The declared size counts too (issue 11): up to twice the limit for a single-scan JPEG
    (decoded reduced), the limit itself for a progressive one (libjpeg holds all its
    coefficients). Over Pillow's own open-time ceiling, an explicit larger limit still reads it."""
    big = Image.fromarray(PATTERN).resize((2400, 1800), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.jpg", quality=85)
    big.resize((1600, 1200)).save(tmp_path / "prog.jpg", quality=85, progressive=True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(PhotoError, match=r"2400 x 1800 = 4320000 pixels declared exceeds 2000000 \(twice"):
        read_photo(tmp_path / "big.jpg", max_side=512)
    with pytest.raises(PhotoError, match="1920000 pixels declared exceeds 1000000 .a progressive"):
        read_photo(tmp_path / "prog.jpg", max_side=512)
    ph = read_photo(tmp_path / "big.jpg", max_side=512, max_pixels=2_500_000)   # Pillow's open refuses 4.3 M
    assert ph.original_size == (2400, 1800) and any("600 x 450" in n for n in ph.notes)


def _jpeg_with_size(data: bytes, w: int, h: int) -> bytes:
    """``data`` (a baseline JPEG) with its frame header claiming w x h pixels."""
    d = bytearray(data)
    i = d.find(b"\xff\xc0")
    d[i + 5:i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(d)


def test_a_small_jpeg_claiming_65000_pixels_a_side_is_refused_at_once(tmp_path, corpus):
    (tmp_path / "claim.jpg").write_bytes(_jpeg_with_size((corpus / "rgb.jpg").read_bytes(), 65000, 65000))
    t = time.perf_counter()
    with pytest.raises(PhotoError, match="65000 x 65000 = 4225000000 pixels declared exceeds"):
        read_photo(tmp_path / "claim.jpg")
    assert time.perf_counter() - t < 0.5                    # refused before decoding


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "cmyk", "draft"])
def test_a_jpeg_cut_short_but_closed_with_an_end_marker_is_refused(grace, tmp_path, kind):
    """Pillow decodes such a file without complaint, its missing half grey (issue 11)."""
    im = Image.fromarray(grace.as_uint8())
    im = {"grey": im.convert("L"), "cmyk": im.convert("CMYK"), "draft": im.resize((2400, 2800))}.get(kind, im)
    im.save(tmp_path / "whole.jpg", quality=90, progressive=kind == "progressive")
    data = (tmp_path / "whole.jpg").read_bytes()
    assert read_photo(tmp_path / "whole.jpg", max_side=1024).image.size > 0
    # a progressive file cut inside its last scan (which only refines detail) is not detected
    for cut in (len(data) // 2,) + (() if kind == "progressive" else (len(data) - 40,)):
        (tmp_path / "cut.jpg").write_bytes(data[:cut] + b"\xff\xd9")
        with pytest.raises(PhotoError, match="truncated or corrupt image data") as e:
            read_photo(tmp_path / "cut.jpg", max_side=1024)
        assert "cut.jpg" in str(e.value)


def test_jpeg_checks_leave_complete_files_alone(grace, tmp_path):
    """A complete photo whose last pixel is exactly mid grey (the value of a lost block) is read,
    pixel for pixel as Pillow decodes it."""
    a = grace.as_uint8().copy()
    a[-40:, -40:] = 128
    Image.fromarray(a).save(tmp_path / "grey_corner.jpg", quality=95)
    ph = read_photo(tmp_path / "grey_corner.jpg", max_side=None)
    assert (ph.as_uint8()[-1, -1] == 128).all()
    np.testing.assert_array_equal(ph.as_uint8(), np.asarray(Image.open(tmp_path / "grey_corner.jpg").convert("RGB")))


def test_fifo_and_symlink_loop_are_refused_without_blocking(tmp_path, corpus):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(PhotoError, match="not a regular file .a named pipe"):
        read_photo(tmp_path / "pipe.jpg")
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    with pytest.raises(PhotoError, match="symbolic link loop"):
        read_photo(tmp_path / "loop.jpg")
    (tmp_path / "dangling.jpg").symlink_to("nowhere.jpg")
    with pytest.raises(PhotoError, match="broken symbolic link"):
        read_photo(tmp_path / "dangling.jpg")


def test_walk_photos_recurses_and_reports_bad_entries_without_opening_them(tmp_path, corpus):
    """Issue 11: a symlink loop or a FIFO among the photos must neither crash nor hang the listing."""
    from stn3dmm.photos.io import NOT_AN_IMAGE, walk_photos

    d = tmp_path / "in"
    (d / "Ann" / "deeper").mkdir(parents=True)
    (d / "Bob").mkdir()
    (d / "Empty").mkdir()
    for f in ("top.jpg", "Ann/a1.jpg", "Ann/deeper/a2.png", "Bob/b1.jpg"):
        (d / f).write_bytes((corpus / "rgb.jpg").read_bytes())
    (d / "Bob" / "b1.mat").write_bytes(b"sidecar")
    (d / "loop.jpg").symlink_to("loop.jpg")
    (d / "dangling.jpg").symlink_to("gone.jpg")
    os.mkfifo(d / "pipe.jpg")
    (d / "Ann" / "up").symlink_to("..")                       # a folder loop
    (d / "Bob" / "same.jpg").symlink_to(d / "Bob" / "b1.jpg")  # the same file twice
    skipped = []
    got = list(walk_photos([d], on_skip=lambda p, why: skipped.append((p.name, why))))
    assert [(x.path.relative_to(d).as_posix(), x.folder) for x in got] == [
        ("top.jpg", ()), ("Ann/a1.jpg", ("Ann",)), ("Ann/deeper/a2.png", ("Ann", "deeper")), ("Bob/b1.jpg", ("Bob",))]
    why = dict(skipped)
    assert why["loop.jpg"].startswith("symbolic link loop") and why["dangling.jpg"] == "broken symbolic link"
    assert why["pipe.jpg"] == "not a regular file (a named pipe)" and why["b1.mat"] == NOT_AN_IMAGE
    assert why["up"].startswith("folder already listed")
    # an excluded sub-folder (the output folder inside the input) is not entered
    assert [x.path.name for x in walk_photos([d], on_skip=lambda p, w: None, exclude=[d / "Ann"])] == [
        "top.jpg", "b1.jpg"]
    # named explicitly: a FIFO or a loop is reported, not opened
    skipped.clear()
    assert list(walk_photos([d / "pipe.jpg", d / "loop.jpg"], on_skip=lambda p, w: skipped.append(w))) == []
    assert skipped == ["not a regular file (a named pipe)", "symbolic link loop (the link points back to itself)"]
