"""Output names made safe and unique, the record that a photo is done, and the cleanup of what a
killed run leaves (the runner's building blocks, on files the tests make)."""

import os

import pytest

from stn3dmm.flatten.outputs import (done_record, output_folders, output_names, remove_face_files,
                                     remove_stale_temporaries, safe_name, unique_stems)


@pytest.mark.parametrize("name, safe", [
    ("grace_hopper", "grace_hopper"), ("Aaron_Peirsol_0001", "Aaron_Peirsol_0001"), ("a-2.b", "a-2.b"),
    ("my photo", "my_photo"), ("a\nmtllib evil", "a_mtllib_evil"), ("José Ñúñez", "Jose_Nunez"),
    ("tab\there  too", "tab_here_too"), (".hidden", "hidden"), ("-rf", "rf"), ("名前", "_"), ("...", "photo"),
    ('quo"te\'s/back\\slash', "quo_te_s_back_slash"),
])
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def test_long_names_are_cut():
    assert len(safe_name("x" * 400)) == 150


def test_unique_stems_after_making_names_safe():
    assert unique_stems(["d/my photo.jpg", "d/my_photo.jpg", "e/my\tphoto.png"]) == ["my_photo", "my_photo-2",
                                                                                      "my_photo-3"]


def test_output_folders_mirror_the_tree_safely_without_merging():
    got = output_folders([("Ann",), ("a b", "x"), ("a_b", "x"), ("A B",), ("Ann", "deep\n")])
    assert got[("Ann",)] == ("Ann",) and got[("Ann", "deep\n")] == ("Ann", "deep_")
    assert got[("a b", "x")] == ("a_b", "x") and got[("a_b", "x")] == ("a_b-2", "x") and got[("A B",)] == ("A_B-3",)
    assert got[()] == ()


def _touch_face(folder, stem, k, json=True):
    for key, name in output_names(stem, k).items():
        if key != "json" or json:
            (folder / name).write_text("{\n \"photo\": \"/in/" + stem + ".jpg\",\n \"x\": 1\n}\n" if key == "json"
                                       else key)


def test_done_record_and_removing_a_photos_files(tmp_path):
    _touch_face(tmp_path, "a", 0)
    _touch_face(tmp_path, "a", 1)
    _touch_face(tmp_path, "b", 0, json=False)                # what a killed run leaves
    _touch_face(tmp_path, "a_face1", 0)                      # another photo whose stem starts like a's faces
    assert done_record(tmp_path, "a") == "/in/a.jpg" and done_record(tmp_path, "b") is None
    assert remove_face_files(tmp_path, "b") == 5 and not list(tmp_path.glob("b_*"))
    assert remove_face_files(tmp_path, "a") == 12 and done_record(tmp_path, "a") is None
    assert len(list(tmp_path.glob("a_face1_face0*"))) == 6   # untouched


def test_stale_temporaries_of_our_outputs_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "Ann").mkdir()
    ours = [tmp_path / ".a_face0_texture.png.k2j_x8ab.tmp", tmp_path / "Ann" / ".b_face1.json.abcd1234.tmp"]
    theirs = [tmp_path / ".notes.txt.abcd1234.tmp", tmp_path / "a_face0.json.abc.tmp", tmp_path / "a_face0.json"]
    for p in ours + theirs:
        p.write_text("x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


def test_a_second_claim_on_an_output_folder_is_refused(tmp_path):
    from stn3dmm.flatten.state import LOCK_NAME, OutputInUse, claim_output

    with claim_output(tmp_path / "out"):
        with pytest.raises(OutputInUse, match=f"pid {os.getpid()}. is writing into this folder"):
            with claim_output(tmp_path / "out"):
                pass
    with claim_output(tmp_path / "out"):                     # released: free again
        pass
    assert (tmp_path / "out" / LOCK_NAME).exists()
