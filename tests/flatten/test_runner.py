"""stn3dmm flatten end to end (the batch runner behind it): a corpus of good and bad files the
tests make from matplotlib's sample photo, the outputs, their names, and what is refused."""

import json
import os

import numpy as np
from PIL import Image

from stn3dmm.cli import main
from stn3dmm.flatten.export import read_obj


def test_flatten_a_batch_of_good_and_bad_files(corpus, default_grid, tmp_path, capsys):
    d, expected = corpus
    out = tmp_path / "out"
    rc = main(["flatten", str(d), "--out", str(out), "--model", str(default_grid[2])])
    err = capsys.readouterr().err
    assert rc == 0, err
    ok = {k for k, v in expected.items() if v == "ok"}
    # the progress bar's last state agrees with the summary (counted after the last batch)
    last = [seg for seg in err.replace("\r", "\n").splitlines() if "faces=" in seg][-1]
    assert f"faces={len(ok)}, failed={len(expected) - len(ok)}" in last, last
    for stem in ok:
        for suffix in ("_texture.png", "_completed.png", "_overlay.png", ".json", ".obj", ".mtl"):
            assert (out / f"{stem}_face0{suffix}").exists(), (stem, suffix, err)
        assert not (out / f"{stem}_face0.png").exists()    # the mesh's texture is the completed PNG
    for stem, why in expected.items():
        if why != "ok":
            assert not list(out.glob(f"{stem}_*")), stem
            line = next((ln for ln in err.splitlines() if f"{stem}." in ln and ":" in ln), "")
            assert why in line, (stem, line)
    assert f"{len(ok)} of {len(expected)} photos flattened" in err
    assert not list(out.glob("*.tmp*"))
    # the outputs: RGBA texture with alpha = visibility, JSON, a mesh that parses
    tex = np.asarray(Image.open(out / "plain_face0_texture.png"))
    R = default_grid[0].res
    assert tex.shape == (R, R, 4) and set(np.unique(tex[..., 3])) <= {0, 255} and 0.5 < (tex[..., 3] > 0).mean() < 1
    info = json.loads((out / "plain_face0.json").read_text())
    assert len(info["theta"]) == 26 and info["fit_error_px"] < 3.0
    obj = read_obj(out / "plain_face0.obj")
    assert obj["v"].shape == (R * R, 3) and obj["f_v"].shape == (2 * (R - 1) ** 2, 3)
    assert 0 <= obj["vt"].min() and obj["vt"].max() <= 1 and obj["mtllib"] == "plain_face0.mtl"
    assert "map_Kd plain_face0_completed.png" in (out / "plain_face0.mtl").read_text()
    # the EXIF-rotated copy was turned upright: its texture matches the plain one
    a = np.asarray(Image.open(out / "plain_face0_texture.png")).astype(float)
    b = np.asarray(Image.open(out / "exif_rotated_face0_texture.png")).astype(float)
    both = (a[..., 3] > 0) & (b[..., 3] > 0)
    assert np.abs(a[both, :3] - b[both, :3]).mean() < 12


def test_existing_outputs_are_kept_without_overwrite(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    one = tmp_path / "one"
    one.mkdir()
    (one / "plain.jpg").write_bytes((d / "plain.jpg").read_bytes())
    out = tmp_path / "out"
    args = ["flatten", str(one), "--out", str(out), "--model", str(default_grid[2]), "--quiet", "--no-mesh"]
    assert main(args) == 0
    f = out / "plain_face0_texture.png"
    os.utime(f, (1, 1))
    capsys.readouterr()
    assert main(args) == 0                        # a rerun: the photo is done already, not a problem
    err = capsys.readouterr().err
    assert "already done: 1 photo(s)" in err and "problem" not in err and f.stat().st_mtime == 1
    assert main(args + ["--overwrite"]) == 0 and f.stat().st_mtime > 1


def _run(args, capsys):
    rc = main(args)
    return rc, capsys.readouterr().err


def test_a_done_faces_files_are_kept_and_an_unfinished_ones_replaced(corpus, default_grid, tmp_path, capsys):
    """A face whose .json exists is done: its files (say, an .mtl the user edited) are kept. An
    .mtl alone is what a killed run leaves: the face is done again."""
    d, _ = corpus
    out = tmp_path / "out"
    args = ["flatten", str(d / "plain.jpg"), "--out", str(out), "--model", str(default_grid[2]), "--quiet"]
    assert _run(args, capsys)[0] == 0
    (out / "plain_face0.mtl").write_text("mine")
    rc, err = _run(args, capsys)
    assert rc == 0 and "already done: 1" in err and (out / "plain_face0.mtl").read_text() == "mine"
    (out / "plain_face0.json").unlink()
    rc, err = _run(args, capsys)
    assert rc == 0 and "1 of 1 photos flattened" in err and "finished 1 photo(s) that an earlier run left" in err
    assert "map_Kd plain_face0_completed.png" in (out / "plain_face0.mtl").read_text()


def _copies_of_plain(corpus_dir, folder, names):
    """A folder holding the corpus's plain photo under each of ``names``."""
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes((corpus_dir / "plain.jpg").read_bytes())
    return folder


def test_output_names_are_unique_per_run(corpus, default_grid, tmp_path, capsys):
    from stn3dmm.flatten.outputs import unique_stems

    assert unique_stems(["x/a-2.jpg", "x/a.jpg", "x/a.png", "y/a.jpg", "x/A.JPG"]) == ["a-2", "a", "a-3", "a-4", "A-5"]
    d, _ = corpus
    photos = _copies_of_plain(d, tmp_path / "photos", ("a-2.jpg", "a.jpg", "a.png"))
    out = tmp_path / "out"
    rc, err = _run(["flatten", str(photos), "--out", str(out), "--model", str(default_grid[2]), "--quiet",
                    "--no-mesh"], capsys)
    assert rc == 0 and "3 of 3 photos flattened" in err
    made = {json.loads(p.read_text())["photo"] for p in out.glob("*.json")}
    assert made == {str(photos / n) for n in ("a-2.jpg", "a.jpg", "a.png")}
    assert sorted(p.name for p in out.glob("*_texture.png")) == [
        "a-2_face0_texture.png", "a-3_face0_texture.png", "a_face0_texture.png"]


def test_a_failed_write_is_one_photos_failure(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    photos = _copies_of_plain(d, tmp_path / "photos", ("a.jpg", "b.jpg", "c.jpg"))
    out = tmp_path / "out"
    (out / "b_face0_overlay.png").mkdir(parents=True)       # a folder where b's overlay goes
    rc, err = _run(["flatten", str(photos), "--out", str(out), "--model", str(default_grid[2]), "--quiet",
                    "--overwrite", "--no-mesh"], capsys)
    assert rc == 0 and "2 of 3 photos flattened (2 faces)" in err, err
    line = next(ln for ln in err.splitlines() if "b.jpg:" in ln)
    assert "write failed" in line and "b_face0_overlay.png" in line
    assert {p.name for p in out.iterdir() if p.name.startswith("b_")} == {"b_face0_overlay.png"}  # no partial set
    for stem in ("a", "c"):
        assert (out / f"{stem}_face0_texture.png").exists() and (out / f"{stem}_face0.json").exists()


def test_outputs_in_the_input_folder_are_not_flattened_again(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    both = tmp_path / "both"
    both.mkdir()
    (both / "plain.jpg").write_bytes((d / "plain.jpg").read_bytes())
    args = ["flatten", str(both), "--out", str(both), "--model", str(default_grid[2]), "--quiet"]
    assert _run(args, capsys)[0] == 0
    rc, err = _run(args + ["--overwrite"], capsys)
    assert rc == 0 and "1 of 1 photos flattened" in err and "ignored 6 file(s)" in err and "problem" not in err


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    for opt, want in ((["--size", "0"], "--size must be at least 32"), (["--res", "8"], "--res must be at least 16"),
                      (["--max-faces", "0"], "--max-faces must be at least 1"),
                      (["--size", "40000"], "--size must be at most 2048"),
                      (["--res", "30000"], "--res must be at most 1024")):
        rc, err = _run(["flatten", str(tmp_path / "nothing.jpg"), "--out", str(tmp_path / "o"),
                        "--model", str(tmp_path / "no-model.npz")] + opt, capsys)
        assert rc == 2 and want in err, (opt, err)
        assert not (tmp_path / "o").exists()


def test_any_texture_side(corpus, default_grid, tmp_path, capsys):
    """--res 64 with the R = 112 model: 64 x 64 textures; the OBJ keeps the 112 x 112 mesh and
    its UVs, textured with the 64 x 64 completed PNG."""
    d, _ = corpus
    out = tmp_path / "out"
    rc, err = _run(["flatten", str(d / "plain.jpg"), "--out", str(out), "--model", str(default_grid[2]), "--quiet",
                    "--res", "64"], capsys)
    assert rc == 0, err
    R = default_grid[0].res
    for name in ("texture", "completed"):
        assert np.asarray(Image.open(out / f"plain_face0_{name}.png")).shape == (64, 64, 4)
    obj = read_obj(out / "plain_face0.obj")
    assert obj["v"].shape == (R * R, 3) and obj["vt"].shape == (R * R, 2)
    assert obj["vt"].min() == 0 and obj["vt"].max() == 1
    assert "map_Kd plain_face0_completed.png" in (out / "plain_face0.mtl").read_text()
    info = json.loads((out / "plain_face0.json").read_text())
    assert info["res"] == 64 and info["mesh_res"] == R


def test_nothing_usable_exits_non_zero(corpus, default_grid, tmp_path, capsys):
    d, _ = corpus
    rc = main(["flatten", str(d / "noface.png"), str(d / "notes.jpg"), "--out", str(tmp_path / "o"),
               "--model", str(default_grid[2]), "--quiet"])
    assert rc == 1 and "0 of 2 photos flattened" in capsys.readouterr().err


def test_several_faces_largest_first(source, default_grid, tmp_path):
    big = source
    small = source.resize((source.width * 2 // 3, source.height * 2 // 3))
    canvas = Image.new("RGB", (big.width + small.width + 40, big.height), (128, 128, 128))
    canvas.paste(small, (0, 60))
    canvas.paste(big, (small.width + 40, 0))
    canvas.save(tmp_path / "two.png")
    out = tmp_path / "out"
    assert main(["flatten", str(tmp_path / "two.png"), "--out", str(out), "--model", str(default_grid[2]),
                 "--quiet", "--no-mesh"]) == 0
    f0, f1 = (json.loads((out / f"two_face{k}.json").read_text()) for k in (0, 1))
    w = lambda f: f["detection"]["bbox"][2] - f["detection"]["bbox"][0]  # noqa: E731
    assert w(f0) > w(f1) and f0["detection"]["bbox"][0] > f1["detection"]["bbox"][0]


def test_a_tree_of_people_is_mirrored_and_sidecars_are_counted_not_failed(corpus, default_grid, tmp_path, capsys):
    """Issue 9: people/Name/photo.jpg (LFW's layout) and AFLW2000's .mat sidecars beside the photos."""
    d, _ = corpus
    people = tmp_path / "people"
    for rel in ("Ann/Ann_0001.jpg", "Bob/Bob_0001.jpg", "top.jpg"):
        (people / rel).parent.mkdir(parents=True, exist_ok=True)
        (people / rel).write_bytes((d / "plain.jpg").read_bytes())
    (people / "Ann" / "Ann_0001.mat").write_bytes(b"sidecar")
    (people / "Bob" / "notes.txt").write_text("x")
    (people / "Nobody").mkdir()
    out = tmp_path / "out"
    rc, err = _run(["flatten", str(people), "--out", str(out), "--model", str(default_grid[2]), "--quiet",
                    "--no-mesh"], capsys)
    assert rc == 0 and "3 of 3 photos flattened" in err and "skipped 2 non-image file(s)" in err, err
    assert "problem" not in err
    for rel in ("Ann/Ann_0001_face0", "Bob/Bob_0001_face0", "top_face0"):
        assert (out / f"{rel}_texture.png").exists() and (out / f"{rel}.json").exists(), rel
    info = json.loads((out / "Ann" / "Ann_0001_face0.json").read_text())
    assert info["photo"] == str(people / "Ann" / "Ann_0001.jpg")


def test_a_folder_without_photos_says_so(tmp_path, capsys, default_grid):
    (tmp_path / "empty").mkdir()
    (tmp_path / "sidecars" / "sub").mkdir(parents=True)
    (tmp_path / "sidecars" / "sub" / "a.mat").write_bytes(b"x")
    for folder, want in (("empty", "empty: no photos in this folder or its sub-folders"),
                         ("sidecars", "sidecars: no photos in this folder or its sub-folders (1 non-image file(s))")):
        rc, err = _run(["flatten", str(tmp_path / folder), "--out", str(tmp_path / "o"), "--model",
                        str(default_grid[2]), "--quiet"], capsys)
        assert rc == 2 and "nothing to flatten" in err and want in err, err
        assert not (tmp_path / "o").exists()


class _SlowFitter:
    """A flattener whose first batch waits (up to 10 s) for the detection of the photo after it to
    begin, then fails every fit; it records whether that detection had begun."""

    needs_mesh, detector, model = False, None, None

    def __init__(self, chunk):
        import threading

        self.chunk, self.calls, self.started, self.overlapped = chunk, 0, threading.Event(), None

    def detect(self, photo):
        from types import SimpleNamespace

        self.calls += 1
        if self.calls > self.chunk:
            self.started.set()
        return [SimpleNamespace(tiny=False, points=None)]

    def flatten_many(self, items):
        if self.overlapped is None:
            self.overlapped = self.started.wait(10.0)
        raise ValueError("no fit in this test")


def test_the_next_photos_are_read_and_detected_while_a_batch_is_fitted(tmp_path):
    """Reading and detection run on a reader thread ahead of the fitting: the detection of the
    first photo after a batch begins while that batch is being fitted (one by one, it could not
    begin before the fit returned). Every photo's failure is still reported, in order."""
    from stn3dmm.flatten.runner import flatten_paths

    for k in range(12):
        Image.fromarray(np.full((64, 64, 3), 40 * (k % 6), np.uint8)).save(tmp_path / f"p{k:02d}.png")
    fitter = _SlowFitter(chunk=4)
    rep = flatten_paths([tmp_path], tmp_path / "out", fitter, progress=False, log=lambda *a: None, chunk=4)
    assert fitter.overlapped is True
    assert [os.path.basename(p) for p, _ in rep.failures] == [f"p{k:02d}.png" for k in range(12)]
    assert all(why == "fit failed: no fit in this test" for _, why in rep.failures)


class _BatchRecordingFlattener:
    """Detects one face per photo, each photo after the first taking ``delay`` seconds; notes the
    size of every batch it is asked to fit, then fails it."""

    needs_mesh, detector, model = False, None, None

    def __init__(self, delay):
        self.delay, self.calls, self.batches = delay, 0, []

    def detect(self, photo):
        import time
        from types import SimpleNamespace

        self.calls += 1
        if self.calls > 1:
            time.sleep(self.delay)
        return [SimpleNamespace(tiny=False, points=None)]

    def flatten_many(self, items):
        self.batches.append(len(items))
        raise ValueError("no fit in this test")


def test_the_fitting_does_not_wait_for_a_full_batch(tmp_path):
    """Where the reader is behind (a slow detector), the photos already detected are fitted at once
    rather than after a whole batch has been read: the first photo alone, then the next ones.
    Every photo is fitted once, in order."""
    from stn3dmm.flatten.runner import flatten_paths

    for k in range(5):
        Image.fromarray(np.full((64, 64, 3), 40 * k, np.uint8)).save(tmp_path / f"p{k}.png")
    fl = _BatchRecordingFlattener(delay=0.3)
    rep = flatten_paths([tmp_path], tmp_path / "out", fl, progress=False, log=lambda *a: None, chunk=4)
    assert fl.batches[0] == 1 and sum(fl.batches) == 5, fl.batches
    assert [os.path.basename(p) for p, _ in rep.failures] == [f"p{k}.png" for k in range(5)]


class _ThreadRecordingFlattener:
    """No faces anywhere; notes the thread of every detector call (detection and the search for
    small faces that tells "too small" from "none")."""

    needs_mesh, model = False, None

    def __init__(self):
        from types import SimpleNamespace

        self.threads = set()
        self.detector = SimpleNamespace(min_face=32.0, small_faces=self._small_faces)

    def _small_faces(self, photo):
        import threading

        self.threads.add(threading.current_thread().name)
        return []

    def detect(self, photo):
        import threading

        self.threads.add(threading.current_thread().name)
        return []


def test_the_detector_runs_on_one_thread_only(tmp_path):
    """mediapipe's graphs fail when two threads run them at once, so every detector call, the search
    for small faces of a photo without one included, is made on the reader thread."""
    import threading

    from stn3dmm.flatten.runner import flatten_paths

    for k in range(6):
        Image.fromarray(np.full((64, 64, 3), 30 * k, np.uint8)).save(tmp_path / f"p{k}.png")
    fl = _ThreadRecordingFlattener()
    rep = flatten_paths([tmp_path], tmp_path / "out", fl, progress=False, log=lambda *a: None, chunk=2)
    assert [why for _, why in rep.failures] == ["no face found"] * 6
    assert len(fl.threads) == 1 and threading.current_thread().name not in fl.threads
